"""The ``project`` label of state metrics, with a bound on how many values it takes.

A Prometheus series per project is fine for tens or hundreds of projects and a problem for tens
of thousands (each series costs memory in Prometheus for as long as it is retained). So at most
``limit`` projects get their own value, their id; the rest share ``project="other"``. Active and
paused projects come first (they are what a dashboard watches), then the newest: a project
leaves the named set only when it finishes and ``limit`` others rank above it, so series churn
little. Gauges of the projects beyond the limit are summed into ``other``; counters are not
(:meth:`ProjectLabels.counters`): when a project moved from ``other`` to its own series, the
``other`` counter went down, which ``rate()`` reads as a reset and counted the rest again as new
answers nobody gave. A counter of a project beyond the limit is simply not exposed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from crowdloop.storage.models import Project

OTHER = "other"
LIVE_STATUSES = ("active", "paused")


@dataclass(frozen=True)
class ProjectLabels:
    """Maps a project id to its label value: its id for the named projects, ``"other"`` for the rest."""

    named: frozenset[int]

    @classmethod
    def load(cls, session: Session, limit: int) -> ProjectLabels:
        live_first = case((Project.status.in_(LIVE_STATUSES), 0), else_=1)
        ids = session.scalars(select(Project.id).order_by(live_first, Project.id.desc()).limit(limit))
        return cls(frozenset(ids))

    def label(self, project_id: int) -> str:
        return str(project_id) if project_id in self.named else OTHER

    def sum_by_label(self, rows: Iterable[tuple[int, float]]) -> dict[str, float]:
        """Adds ``(project_id, value)`` rows up per label value (only ``other`` ever gets more than one).

        Every named project gets a series, 0 when it has no rows: a dashboard shows "0 open
        leases", not a gap.
        """
        totals: dict[str, float] = defaultdict(float, {str(project_id): 0.0 for project_id in self.named})
        for project_id, value in rows:
            totals[self.label(project_id)] += float(value)
        return dict(totals)

    def counters(self, rows: Iterable[tuple[int, float]]) -> dict[str, float]:
        """:meth:`sum_by_label` without ``other``: a counter summed over a changing set of projects
        is not a counter (see the module's docstring)."""
        totals = self.sum_by_label(rows)
        totals.pop(OTHER, None)
        return totals
