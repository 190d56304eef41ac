"""Drift of deployed models: ``POST .../models/{ref}/drift`` runs a check of one version now
(its telemetry since the last check against its training data), ``GET .../drift`` lists the
latest check of each version. The project's requester and admins (see
:mod:`crowdloop.monitoring.drift_service`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from crowdloop.api.deps import ApiDep
from crowdloop.learning.service import models_root
from crowdloop.monitoring import drift_service

router = APIRouter(tags=["models"])


@router.post("/projects/{project_id}/models/{ref}/drift")
def check_drift(project_id: int, ref: str, api: ApiDep) -> dict[str, Any]:
    root = models_root(api.settings)
    return api.run(lambda session, user: drift_service.check_version(session, user, project_id, ref, root))


@router.get("/projects/{project_id}/drift")
def latest_drift(project_id: int, api: ApiDep) -> list[dict[str, Any]]:
    return api.run(lambda session, user: drift_service.latest_reports(session, user, project_id))
