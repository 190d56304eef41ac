"""Drift per model version, from what the edges report: the service behind ``.../drift``.

:func:`check_drift` compares a version's *window* — the edge telemetry batches of that version
stored since its last check — with its reference (:mod:`.drift_reference`) using
:func:`~crowdloop.monitoring.drift.drift_report`:

* **confidence**: PSI and Kolmogorov–Smirnov of the batches' confidence samples, pooled;
* **classes**: χ² of the summed predicted-class counts against the reference's class mix;
* **inputs**: an edge reports each field's *mean* length and empty share per batch, not one
  value per item, so these are compared as batch means: the observed values are the batches'
  means, the reference values the means of batches of the same sizes drawn (seeded) from the
  training items. This needs :data:`MIN_INPUT_BATCHES` batches in the window, and the PSI uses
  one bin per 20 batches (2 to 10): with few observations, fine bins alarm by chance.

Each check records a model event: ``drift`` (and a signed ``drift.detected`` webhook, in the
same transaction) when any statistic is over its threshold, else ``drift_check``. A window with
fewer than ``min_predictions`` predictions is not checked (``status: "insufficient"``) and stays
open, so the next check covers it. Functions take a session and never commit.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crowdloop.crowd import webhooks
from crowdloop.crowd.projects import get_owned_project
from crowdloop.errors import EmptyInputError, NotFoundError
from crowdloop.learning import registry
from crowdloop.monitoring.drift import (
    DriftReport,
    DriftSample,
    DriftStatistic,
    DriftThresholds,
    continuous_statistics,
    drift_report,
    family_wise,
)
from crowdloop.monitoring.drift_reference import reference_for
from crowdloop.storage.models import EdgeTelemetry, ModelEvent, ModelVersion, Project, User

CHECK_KINDS = ("drift", "drift_check")
WEBHOOK_EVENT = "drift.detected"
MIN_PREDICTIONS = 200
MIN_INPUT_BATCHES = 40
REFERENCE_MEANS = 2000
INPUT_STATS = ("mean_length", "empty_share")


@dataclass(frozen=True)
class Window:
    """The telemetry batches of one version since its last check."""

    batches: list[EdgeTelemetry]

    @property
    def predictions(self) -> int:
        return sum(batch.predictions for batch in self.batches)

    def to_dict(self) -> dict[str, Any]:
        ids = [batch.id for batch in self.batches]
        return {"batches": len(ids), "predictions": self.predictions, "first_telemetry_id": min(ids, default=None),
                "last_telemetry_id": max(ids, default=None)}  # fmt: skip


# --- reading --------------------------------------------------------------------------------------


def last_check(session: Session, version: ModelVersion) -> ModelEvent | None:
    query = (
        select(ModelEvent)
        .where(ModelEvent.version_id == version.id, ModelEvent.kind.in_(CHECK_KINDS))
        .order_by(ModelEvent.id.desc())
        .limit(1)
    )
    return session.scalar(query)


def window_since_last_check(session: Session, version: ModelVersion) -> Window:
    previous = last_check(session, version)
    after = int((previous.detail.get("window") or {}).get("last_telemetry_id") or 0) if previous else 0
    query = select(EdgeTelemetry).where(
        EdgeTelemetry.project_id == version.project_id,
        EdgeTelemetry.model_version == version.version,
        EdgeTelemetry.id > after,
    )
    return Window(list(session.scalars(query.order_by(EdgeTelemetry.id))))


# --- the statistics -------------------------------------------------------------------------------


def observed_sample(window: Window) -> DriftSample:
    """Pooled confidence samples and summed class counts of the window's batches.

    Each batch's sample is thinned to its share of the predictions: every batch keeps up to 256
    values whether it covers 5 predictions or 10,000, so pooled whole, a quiet device counted as
    much as a busy one. The batch with the most predictions per value keeps all of its values.
    """
    samples = [
        (batch.predictions, [float(v) for v in (batch.summary or {}).get("confidence_sample") or []
                             if isinstance(v, int | float) and 0.0 <= v <= 1.0])  # NaN fails both: never blocks checks
        for batch in window.batches
    ]  # fmt: skip
    samples = [(predictions, values) for predictions, values in samples if values and predictions > 0]
    rate = max((predictions / len(values) for predictions, values in samples), default=1.0)
    rng = np.random.default_rng(0)
    confidence = [
        float(value)
        for predictions, values in samples
        for value in rng.permutation(values)[: max(1, round(predictions / rate))]
    ]
    classes: Counter[str] = Counter()
    for batch in window.batches:
        classes.update({str(k): int(v) for k, v in ((batch.summary or {}).get("class_counts") or {}).items()})
    return DriftSample(confidence=confidence or None, classes=dict(classes))


def reference_sample(reference: dict[str, Any]) -> DriftSample:
    classes = reference.get("classes") or {}
    return DriftSample(confidence=reference.get("confidence") or None, classes=classes, classes_sampled=True)


def batch_means(values: np.ndarray, sizes: list[int], seed: int) -> np.ndarray:
    """Means of reference batches drawn with replacement, as many of each observed size as fit in
    :data:`REFERENCE_MEANS`."""
    rng = np.random.default_rng(seed)
    per_size = math.ceil(REFERENCE_MEANS / len(sizes))
    return np.concatenate([rng.choice(values, size=(per_size, min(size, 10_000))).mean(axis=1) for size in sizes])


def _input_rows(window: Window, name: str, stat: str) -> tuple[list[int], list[float]]:
    sizes, values = [], []
    for batch in window.batches:
        stats = ((batch.summary or {}).get("input_stats") or {}).get(name)
        value = stats.get(stat) if isinstance(stats, dict) else None
        if isinstance(value, int | float) and math.isfinite(value):
            sizes.append(batch.predictions)
            values.append(float(value))
    return sizes, values


def input_statistics(
    reference: dict[str, Any], window: Window, limits: DriftThresholds, seed: int
) -> list[DriftStatistic]:
    """PSI and KS of each field's per-batch mean length and empty share (see the module docstring)."""
    found: list[DriftStatistic] = []
    for name, sample in sorted((reference.get("inputs") or {}).items()):
        for stat, key in zip(INPUT_STATS, ("lengths", "empty"), strict=True):
            sizes, observed = _input_rows(window, name, stat)
            if len(observed) < MIN_INPUT_BATCHES or not sample.get(key):
                continue
            expected = batch_means(np.asarray(sample[key], dtype=np.float64), sizes, seed)
            bins = min(10, max(2, len(observed) // 20))
            found.extend(continuous_statistics(f"input:{name}.{stat}", expected, observed, limits, bins=bins))
    return found


def compare(reference: dict[str, Any], window: Window, limits: DriftThresholds, seed: int) -> DriftReport:
    """One report over every signal the reference and the window share, its tests decided
    together (:func:`~crowdloop.monitoring.drift.family_wise`: the check's false-alarm rate is
    the thresholds' whatever the number of signals)."""
    inputs = input_statistics(reference, window, limits, seed)
    try:
        base = drift_report(reference_sample(reference), observed_sample(window), limits).statistics
    except EmptyInputError:
        if not inputs:
            raise
        base = ()
    return family_wise((*base, *inputs), limits)


# --- the check ------------------------------------------------------------------------------------


def check_drift(
    session: Session,
    project: Project,
    version: ModelVersion,
    registry_dir: Path,
    *,
    thresholds: DriftThresholds | None = None,
    min_predictions: int = MIN_PREDICTIONS,
) -> dict[str, Any]:
    """Compare the version's telemetry since its last check with its reference; record the outcome."""
    window = window_since_last_check(session, version)
    result: dict[str, Any] = {"project_id": project.id, "version": version.version, "window": window.to_dict()}
    if window.predictions < max(min_predictions, 1):
        return {**result, "status": "insufficient", "report": None, "event_id": None}
    reference = reference_for(session, project, version, registry_dir)
    try:
        report = compare(reference, window, thresholds or DriftThresholds(), seed=version.id)
    except EmptyInputError:  # batches without a confidence sample, class counts or input statistics
        return {**result, "status": "insufficient", "report": None, "event_id": None}
    event = _record(session, version, window, report)
    return {**result, "status": "drifted" if report.drifted else "stable", "report": report.to_dict(),
            "event_id": event.id}  # fmt: skip


def _record(session: Session, version: ModelVersion, window: Window, report: DriftReport) -> ModelEvent:
    detail = {"version": version.version, "window": window.to_dict(), "psi": max_psi(report), **report.to_dict()}
    kind = "drift" if report.drifted else "drift_check"
    event = registry.record_event(session, version.project_id, version.id, kind, detail)
    session.flush()
    if report.drifted:
        exceeded = [asdict(item) for item in report.exceeded]
        payload = {"model_version": version.version, "event_id": event.id, "window": detail["window"]}
        payload["exceeded"] = exceeded
        webhooks.enqueue(session, version.project_id, WEBHOOK_EVENT, payload)
    return event


def max_psi(report: DriftReport) -> float | None:
    values = [item.statistic for item in report.statistics if item.test == "psi"]
    return max(values) if values else None


# --- for the routes and the telemetry hook --------------------------------------------------------


def check_version(session: Session, actor: User, project_id: int, ref: str, registry_dir: Path) -> dict[str, Any]:
    """``POST .../models/{ref}/drift``: the project's owner (or an admin) runs a check now."""
    project = get_owned_project(session, actor, project_id, lock=True)
    return check_drift(session, project, registry.resolve_version(session, project_id, ref), registry_dir)


def check_due(
    session: Session, project_id: int, versions: set[int], registry_dir: Path, every: int = 1000
) -> list[dict[str, Any]]:
    """For the telemetry route: check each reported version whose window holds ``every`` predictions.

    Versions the registry does not know are skipped (a device may report a version since deleted).
    """
    project = session.get(Project, project_id)
    results = []
    for number in sorted(versions):
        try:
            version = registry.resolve_version(session, project_id, number)
        except NotFoundError:
            continue
        if project is not None:
            results.append(check_drift(session, project, version, registry_dir, min_predictions=every))
    return results


def latest_reports(session: Session, actor: User, project_id: int) -> list[dict[str, Any]]:
    """``GET .../drift``: the latest check of each version of the project, by version number."""
    get_owned_project(session, actor, project_id)
    return [report_out(event, number) for event, number in latest_checks(session, project_id)]


def latest_checks(session: Session, project_id: int | None = None) -> list[tuple[ModelEvent, int]]:
    """The newest ``drift``/``drift_check`` event of each version (of one project, or all), with its version number."""
    newest = select(func.max(ModelEvent.id)).where(ModelEvent.kind.in_(CHECK_KINDS)).group_by(ModelEvent.version_id)
    if project_id is not None:
        newest = newest.where(ModelEvent.project_id == project_id)
    query = (
        select(ModelEvent, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == ModelEvent.version_id)
        .where(ModelEvent.id.in_(newest))
        .order_by(ModelEvent.project_id, ModelVersion.version)
    )
    return [(event, int(number)) for event, number in session.execute(query)]


def report_out(event: ModelEvent, number: int) -> dict[str, Any]:
    detail = event.detail or {}
    return {
        "version": number,
        "event_id": event.id,
        "status": "drifted" if event.kind == "drift" else "stable",
        "checked_at": event.created_at.isoformat(),
        "window": detail.get("window"),
        "psi": detail.get("psi"),
        "report": {"drifted": detail.get("drifted"), "statistics": detail.get("statistics", [])},
    }
