"""The crowd's state as Prometheus metrics, read from the database at scrape time.

Each function is a :data:`~crowdloop.monitoring.metrics.MetricSource`: one or two grouped
``SELECT``s (each served by an index: ``ix_items_queue``, ``ix_assignments_lease``, the
``project_id`` indexes), no state kept between scrapes, the same answer from every process.

=========================================  =======  ==================================================
metric                                     type     labels
=========================================  =======  ==================================================
``crowdloop_build_info``                   gauge    ``version`` (always 1)
``crowdloop_projects``                     gauge    ``status``
``crowdloop_answers_total``                counter  ``project``
``crowdloop_items``                        gauge    ``project``, ``state``: ``queued`` (still needs
                                                    answers: the queue depth), ``done``, ``gold``,
                                                    ``closed`` (open, in a finished project)
``crowdloop_labels``                       gauge    ``project``: items with an aggregated label
``crowdloop_open_leases``                  gauge    ``project``: assignments leased and not expired
``crowdloop_aggregation_runs_total``       counter  ``project``, ``status`` (``done``, ``failed``, or
                                                    ``superseded``: a newer run had stored its labels)
``crowdloop_aggregation_runs_in_progress`` gauge    ``project``: automatic runs started in the last
                                                    hour and not finished
=========================================  =======  ==================================================

``crowdloop_answers_total`` is the project's running answer count; undoing an answer lowers it,
which Prometheus reads as a counter reset (a rare, one-scrape blip in ``rate()``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import case, func, select

from crowdloop import __version__
from crowdloop.monitoring.labels import OTHER
from crowdloop.monitoring.metrics import MetricSource, Scrape
from crowdloop.storage.models import AggregationRun, Assignment, Item, ItemLabel, Project, utcnow

FINISHED_RUN_STATUSES = ("done", "failed", "superseded")
RUN_GIVEN_UP = timedelta(hours=1)
"""A run still marked running after this long was cut off (its process killed) and is not counted."""


def _per_project(family: GaugeMetricFamily | CounterMetricFamily, totals: dict[str, float]) -> Metric:
    for project, value in sorted(totals.items()):
        family.add_metric([project], value)
    return family


def build_info(scrape: Scrape) -> Iterator[Metric]:
    info = GaugeMetricFamily("crowdloop_build_info", "The crowdloop version serving, always 1.", labels=["version"])
    info.add_metric([__version__], 1.0)
    yield info


def projects(scrape: Scrape) -> Iterator[Metric]:
    family = GaugeMetricFamily("crowdloop_projects", "Projects by status.", labels=["status"])
    for status, count in scrape.session.execute(select(Project.status, func.count()).group_by(Project.status)):
        family.add_metric([status], float(count))
    yield family


def answers(scrape: Scrape) -> Iterator[Metric]:
    rows: Iterable[Any] = scrape.session.execute(select(Project.id, Project.answers_total))
    family = CounterMetricFamily("crowdloop_answers", "Answers submitted, per project.", labels=["project"])
    yield _per_project(family, scrape.projects.counters(rows))


def _item_state(is_gold: bool, done: bool, project_status: str) -> str:
    """An open item of a finished project is ``closed``: nobody will be given it, so it is not
    queue depth (a draft's or a paused project's will be)."""
    if is_gold:
        return "gold"
    if done:
        return "done"
    return "closed" if project_status == "finished" else "queued"


def items(scrape: Scrape) -> Iterator[Metric]:
    query = (
        select(Item.project_id, Project.status, Item.is_gold, Item.done, func.count())
        .join(Project, Project.id == Item.project_id)
        .group_by(Item.project_id, Project.status, Item.is_gold, Item.done)
    )
    totals: dict[tuple[str, str], float] = {}
    for project_id, status, is_gold, done, count in scrape.session.execute(query):
        key = (scrape.projects.label(project_id), _item_state(bool(is_gold), bool(done), status))
        totals[key] = totals.get(key, 0.0) + float(count)
    family = GaugeMetricFamily(
        "crowdloop_items", "Items per project by state; state=queued is the queue depth.", labels=["project", "state"]
    )
    for (project, state), count in sorted(totals.items()):
        family.add_metric([project, state], count)
    yield family


def labels(scrape: Scrape) -> Iterator[Metric]:
    rows: Iterable[Any] = scrape.session.execute(
        select(ItemLabel.project_id, func.count()).group_by(ItemLabel.project_id)
    )
    family = GaugeMetricFamily("crowdloop_labels", "Items with an aggregated label.", labels=["project"])
    yield _per_project(family, scrape.projects.sum_by_label(rows))


def open_leases(scrape: Scrape) -> Iterator[Metric]:
    query = (
        select(Assignment.project_id, func.count())
        .where(Assignment.status == "leased", Assignment.expires_at > utcnow())
        .group_by(Assignment.project_id)
    )
    rows: Iterable[Any] = scrape.session.execute(query)
    family = GaugeMetricFamily("crowdloop_open_leases", "Assignments leased and not expired.", labels=["project"])
    yield _per_project(family, scrape.projects.sum_by_label(rows))


def aggregation_runs(scrape: Scrape) -> Iterator[Metric]:
    recent = func.sum(case((AggregationRun.started_at > utcnow() - RUN_GIVEN_UP, 1), else_=0))
    query = select(AggregationRun.project_id, AggregationRun.status, func.count(), recent).group_by(
        AggregationRun.project_id, AggregationRun.status
    )
    finished: dict[tuple[str, str], float] = {}
    running: list[tuple[int, float]] = []
    for project_id, status, count, recent_count in scrape.session.execute(query):
        if status not in FINISHED_RUN_STATUSES:
            running.append((project_id, float(recent_count or 0)))
        elif (label := scrape.projects.label(project_id)) != OTHER:  # counters: no "other"
            finished[(label, status)] = finished.get((label, status), 0.0) + float(count)
    total = CounterMetricFamily(
        "crowdloop_aggregation_runs", "Finished truth-inference runs.", labels=["project", "status"]
    )
    for (project, status), count in sorted(finished.items()):
        total.add_metric([project, status], count)
    yield total
    progress = GaugeMetricFamily(
        "crowdloop_aggregation_runs_in_progress", "Runs started, not finished.", labels=["project"]
    )
    yield _per_project(progress, scrape.projects.sum_by_label(running))


CROWD_SOURCES: tuple[MetricSource, ...] = (build_info, projects, answers, items, labels, open_leases, aggregation_runs)
"""The platform's own state metrics, registered by ``create_app``."""
