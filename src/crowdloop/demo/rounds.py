"""Per-round measurements of the demo: what one round bought, scored, served and fed back."""

from __future__ import annotations

import io
from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd

from crowdloop.monitoring.drift import DriftSample, drift_report


@dataclass
class RoundMetrics:
    """One row of the demo's table (and one point of each plot in the report)."""

    round: int
    labels_bought: int
    new_answers: int
    skips: int
    spent: float
    labeled_items: int
    label_accuracy: float
    model_version: int
    promoted: bool
    model_accuracy: float
    model_macro_f1: float
    streamed: int
    served_versions: list[int]
    fed_back: int
    edge_alone: float
    edge_accuracy: float
    feedback_labeled: int
    feedback_total: int
    drift_psi: float
    drifted: bool
    drift_source: str
    seconds: float
    confidences: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_jsonl(data: bytes) -> pd.DataFrame:
    """An export in JSON Lines as a frame (empty when there is nothing)."""
    if not data.strip():
        return pd.DataFrame()
    return pd.read_json(io.BytesIO(data), lines=True, dtype=False)


def label_accuracy(labels: pd.DataFrame, task_of: dict[int, Hashable | None], truth: pd.Series) -> tuple[int, float]:
    """Labeled regular items and the share of them whose label equals the true one."""
    if labels.empty:
        return 0, float("nan")
    tasks = [task_of.get(int(item)) for item in labels["item_id"]]
    known = [(str(label), truth.get(task)) for label, task in zip(labels["label"], tasks, strict=True)]
    scored = [(label, true) for label, true in known if true is not None]
    if not scored:
        return len(labels), float("nan")
    return len(labels), float(np.mean([label == str(true) for label, true in scored]))


def stream_accuracy(predictions: list[dict[str, Any]], tasks: list[Hashable], truth: pd.Series) -> float:
    """The edge's own accuracy on the stream it served (the truth it never saw)."""
    right = [str(p["label"]) == str(truth.get(task)) for p, task in zip(predictions, tasks, strict=True)]
    return float(np.mean(right)) if right else float("nan")


def local_drift(
    reference: list[float], reference_classes: dict[str, int], observed: list[float], observed_classes: dict[str, int]
) -> tuple[float, bool]:
    """PSI of the observed confidences against the reference ones, and whether any test alarms."""
    report = drift_report(
        DriftSample(confidence=reference, classes=reference_classes, classes_sampled=True),
        DriftSample(confidence=observed, classes=observed_classes),
    )
    psi = next(s.statistic for s in report.statistics if s.test == "psi" and s.signal == "confidence")
    return float(psi), report.drifted


def server_drift(url: str, token: str, project_id: int, version: int) -> tuple[float, bool] | None:
    """The server's drift check of ``version`` (its edge telemetry since the last check against its
    training data): the PSI of the confidences and whether any test alarmed. ``None`` when the server
    has no drift service or the window is too small to check."""
    route = f"{url}/api/v1/projects/{project_id}/models/{version}/drift"
    response = httpx.post(route, headers={"Authorization": f"Bearer {token}"}, timeout=None)
    if response.status_code == 404 or response.is_error:
        return None
    body = response.json()
    if body.get("status") not in ("stable", "drifted") or not body.get("report"):
        return None
    statistics = body["report"].get("statistics", [])
    psi = [s["statistic"] for s in statistics if s.get("test") == "psi" and s.get("signal") == "confidence"]
    return (float(psi[0]) if psi else float("nan")), body["status"] == "drifted"
