"""Models: train, list, read, download, promote, their events, and active-learning priorities.

Requesters (their projects) and admins do everything here; a device may read the
metadata and download the artifact of a project's production or candidate model when the
project is open to it; workers get 403. Training and prioritizing open two short units of
work and run the model with none open (see :mod:`crowdloop.learning.service`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from crowdloop.api.deps import ApiDep
from crowdloop.crowd.schemas import StorableStr
from crowdloop.learning import priorities, registry, service
from crowdloop.learning.models import MAX_SEED

router = APIRouter(tags=["models"])


class TrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    family: StorableStr | None = Field(
        None,
        description="logreg (the default), linear_svm, gboost, naive_bayes, torch_mlp (PyTorch installed), or auto "
        "(a search over the scikit-learn families); trials or timeout without a family search those families too",
    )
    trials: int = Field(0, ge=0, le=1000, description="Optuna trials (0: no search unless family is auto)")
    timeout: float | None = Field(None, gt=0, le=24 * 3600, description="search time budget in seconds")
    random_state: int = Field(0, ge=0, le=MAX_SEED, description="seed of the folds, the search and the model")
    targets: StorableStr = Field(
        "labels", description="labels (the aggregated labels) or crowd (learn from the raw answers)"
    )


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: StorableStr = Field(min_length=1, max_length=500)


class PrioritiesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: StorableStr = Field("activelab", description="random, least_confidence, margin, entropy or activelab")
    batch_size: int = Field(50, ge=1, le=100_000)
    random_state: int = Field(0, ge=0, le=MAX_SEED, description="seed of the random strategy and of ties")


@router.post("/projects/{project_id}/models/train")
def train(project_id: int, body: TrainIn, api: ApiDep) -> dict[str, Any]:
    options = service.TrainOptions(body.family, body.trials, body.timeout, body.random_state, body.targets)
    with api.training_slot():
        return service.train_project(api.run, project_id, service.models_root(api.settings), options)


@router.get("/projects/{project_id}/models")
def list_models(project_id: int, api: ApiDep) -> list[dict[str, Any]]:
    return api.run(lambda session, user: service.list_models(session, user, project_id))


@router.get("/projects/{project_id}/models/events")
def model_events(
    project_id: int,
    api: ApiDep,
    limit: int = Query(200, ge=1, le=10_000, description="the latest this many events, oldest first"),
    before: int | None = Query(None, ge=1, description="only events before this event id (the page before)"),
) -> list[dict[str, Any]]:
    return api.run(lambda session, user: service.model_events(session, user, project_id, limit, before))


@router.get("/projects/{project_id}/models/{ref}")
def get_model(project_id: int, ref: str, api: ApiDep) -> dict[str, Any]:
    return api.run(lambda session, user: service.get_model(session, user, project_id, ref))


ARTIFACT: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/gzip": {}},
        "description": "the version's files as a tar.gz, with its "
        "X-Crowdloop-Version and X-Crowdloop-Digest (SHA-256 over the extracted folder) headers",
    }
}


@router.get("/projects/{project_id}/models/{ref}/artifact", response_class=StreamingResponse, responses=ARTIFACT)
def model_artifact(project_id: int, ref: str, api: ApiDep) -> StreamingResponse:
    root = service.models_root(api.settings)
    folder, meta = api.run(lambda session, user: service.model_artifact(session, user, project_id, ref, root))
    headers = {
        "Content-Disposition": f'attachment; filename="model-{project_id}-v{meta["version"]}.tar.gz"',
        "X-Crowdloop-Version": str(meta["version"]),
        "X-Crowdloop-Digest": meta["digest"],
    }
    return StreamingResponse(registry.tar_gz_chunks(folder), media_type="application/gzip", headers=headers)


@router.post("/projects/{project_id}/models/{ref}/promote")
def promote(project_id: int, ref: str, body: PromoteIn, api: ApiDep) -> dict[str, Any]:
    root = service.models_root(api.settings)
    return api.run(lambda session, user: service.promote(session, user, project_id, ref, body.reason, root))


@router.post("/projects/{project_id}/priorities")
def set_priorities(project_id: int, body: PrioritiesIn, api: ApiDep) -> dict[str, Any]:
    root = service.models_root(api.settings)
    return priorities.prioritize_project(api.run, project_id, root, body.strategy, body.batch_size, body.random_state)
