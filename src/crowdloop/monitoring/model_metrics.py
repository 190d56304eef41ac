"""Model versions, edge predictions and drift as Prometheus metrics, read at scrape time.

=========================================  =======  ==================================================
metric                                     type     labels
=========================================  =======  ==================================================
``crowdloop_model_versions``               gauge    ``project``: versions in the registry
``crowdloop_model_production_version``     gauge    ``project``: the number ``production`` points at
``crowdloop_edge_predictions_total``       counter  ``project``, ``version``: predictions the edges
                                                    reported in their telemetry
``crowdloop_model_drift_psi``              gauge    ``project``, ``version``: the largest PSI of the
                                                    version's latest drift check
=========================================  =======  ==================================================

Projects beyond ``CROWDLOOP_METRICS_MAX_PROJECTS`` are summed into ``project="other"`` for the
counts; a version number or a PSI cannot be summed, so those gauges leave such projects out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import func, select

from crowdloop.monitoring.drift_service import latest_checks
from crowdloop.monitoring.labels import OTHER
from crowdloop.monitoring.metrics import MetricSource, Scrape
from crowdloop.storage.models import EdgeTelemetry, ModelAlias, ModelVersion


def model_versions(scrape: Scrape) -> Iterator[Metric]:
    rows: Iterable[Any] = scrape.session.execute(
        select(ModelVersion.project_id, func.count()).group_by(ModelVersion.project_id)
    )
    family = GaugeMetricFamily("crowdloop_model_versions", "Model versions in the registry.", labels=["project"])
    for project, value in sorted(scrape.projects.sum_by_label(rows).items()):
        family.add_metric([project], value)
    yield family


def production_version(scrape: Scrape) -> Iterator[Metric]:
    query = (
        select(ModelAlias.project_id, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
        .where(ModelAlias.alias == "production")
    )
    family = GaugeMetricFamily(
        "crowdloop_model_production_version", "The version number production points at.", labels=["project"]
    )
    for project_id, number in sorted(scrape.session.execute(query)):
        if (label := scrape.projects.label(project_id)) != OTHER:
            family.add_metric([label], float(number))
    yield family


def edge_predictions(scrape: Scrape) -> Iterator[Metric]:
    query = select(EdgeTelemetry.project_id, EdgeTelemetry.model_version, func.sum(EdgeTelemetry.predictions)).group_by(
        EdgeTelemetry.project_id, EdgeTelemetry.model_version
    )
    totals: dict[tuple[str, str], float] = {}
    for project_id, version, count in scrape.session.execute(query):
        if (label := scrape.projects.label(project_id)) != OTHER:  # a counter: no "other" (see labels.py)
            totals[(label, str(version))] = totals.get((label, str(version)), 0.0) + float(count or 0)
    family = CounterMetricFamily(
        "crowdloop_edge_predictions", "Predictions reported by edge devices.", labels=["project", "version"]
    )
    for (project, version), count in sorted(totals.items()):
        family.add_metric([project, version], count)
    yield family


def drift_psi(scrape: Scrape) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "crowdloop_model_drift_psi", "Largest PSI of the version's latest drift check.", labels=["project", "version"]
    )
    for event, number in latest_checks(scrape.session):
        psi = (event.detail or {}).get("psi")
        if psi is not None and (label := scrape.projects.label(event.project_id)) != OTHER:
            family.add_metric([label, str(number)], float(psi))
    yield family


MODEL_SOURCES: tuple[MetricSource, ...] = (model_versions, production_version, edge_predictions, drift_psi)
"""Registered by ``create_app`` next to the crowd's sources."""
