"""Projects: create, list, read, change, status, access, aggregate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from crowdloop.api.deps import ApiDep
from crowdloop.crowd import aggregation, projects
from crowdloop.crowd.schemas import ProjectCreate, ProjectOut, ProjectUpdate

router = APIRouter(tags=["projects"])


class AccessIn(BaseModel):
    worker_id: int


def _out(project: Any, user: Any) -> ProjectOut:
    return projects.project_out(project, full=user.role in ("admin", "requester"))


@router.post("/projects", status_code=201)
def create_project(body: ProjectCreate, api: ApiDep) -> ProjectOut:
    method = api.settings.default_method
    return api.run(lambda session, user: _out(projects.create_project(session, user, body, method), user))


@router.get("/projects")
def list_projects(api: ApiDep) -> list[ProjectOut]:
    return api.run(lambda session, user: [_out(p, user) for p in projects.list_projects(session, user)])


@router.get("/projects/{project_id}")
def get_project(project_id: int, api: ApiDep) -> ProjectOut:
    return api.run(lambda session, user: _out(projects.get_project(session, user, project_id), user))


@router.patch("/projects/{project_id}")
def update_project(project_id: int, body: ProjectUpdate, api: ApiDep) -> ProjectOut:
    return api.run(lambda session, user: _out(projects.update_project(session, user, project_id, body), user))


@router.get("/projects/{project_id}/status")
def project_status(project_id: int, api: ApiDep) -> dict[str, Any]:
    return api.run(lambda session, user: projects.project_status(session, user, project_id))


@router.post("/projects/{project_id}/access", status_code=204)
def grant_access(project_id: int, body: AccessIn, api: ApiDep) -> None:
    api.run(lambda session, user: projects.grant_access(session, user, project_id, body.worker_id))


@router.post("/projects/{project_id}/aggregate")
def aggregate(project_id: int, api: ApiDep) -> dict[str, Any]:
    limit = api.settings.max_memory_mb
    return api.run(lambda session, user: aggregation.aggregate_project(session, user, project_id, limit))
