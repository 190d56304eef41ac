"""Edge devices report back: ``POST .../edge/feedback`` (inputs the model was unsure about, or
audit samples, which become crowd items) and ``POST .../edge/telemetry`` (per-version
prediction summaries). Device tokens of projects open to them (and admins); idempotent on
the device's ids, so the edge may retry any delivery."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from crowdloop.api.deps import ApiDep
from crowdloop.deploy import service
from crowdloop.deploy.service import FeedbackIn, TelemetryIn
from crowdloop.learning.service import models_root

router = APIRouter(tags=["edge"])


@router.post("/projects/{project_id}/edge/feedback")
def edge_feedback(project_id: int, entries: list[FeedbackIn], api: ApiDep) -> dict[str, Any]:
    return api.run(lambda session, user: service.receive_feedback(session, user, project_id, entries))


@router.post("/projects/{project_id}/edge/telemetry")
def edge_telemetry(project_id: int, batches: list[TelemetryIn], api: ApiDep) -> dict[str, Any]:
    registry_dir = models_root(api.settings)
    return api.run(lambda session, user: service.receive_telemetry(session, user, project_id, batches, registry_dir))
