"""The ``project`` label of state metrics, with a bound on how many values it takes.

A Prometheus series per project is fine for tens or hundreds of projects and a problem for tens
of thousands (each series costs memory in Prometheus for as long as it is retained). So at most
``limit`` projects get their own value, their id; the rest share ``project="other"``. Active and
paused projects come first (they are what a dashboard watches), then the newest: a project
leaves the named set only when it finishes and ``limit`` others rank above it, so series churn
little. When it does move, its counts move into ``other`` and a ``rate()`` over the sum of both
series stays right.
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
