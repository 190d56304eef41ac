"""Webhooks of a project: register (the secret is shown once), list, delete, delivery log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy.orm import Session

from crowdloop.api.deps import ApiDep
from crowdloop.crowd import webhooks
from crowdloop.crowd.projects import get_owned_project
from crowdloop.crowd.schemas import StorableStr
from crowdloop.storage.models import User

router = APIRouter(tags=["webhooks"])


class WebhookIn(BaseModel):
    url: StorableStr
    events: list[StorableStr] | None = None


def _out(hook: Any) -> dict[str, Any]:
    """A webhook as its requester sees it; ``failures`` and ``retry_at`` say its receiver is failing
    and when its deliveries are tried again (see :mod:`crowdloop.crowd.webhooks`)."""

    def moment(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {"id": hook.id, "url": hook.url, "events": hook.events, "active": hook.active,
            "failures": hook.failures or 0, "retry_at": moment(hook.retry_at),
            "failing_since": moment(hook.failing_since)}  # fmt: skip


@router.post("/projects/{project_id}/webhooks", status_code=201)
def register(project_id: int, body: WebhookIn, api: ApiDep) -> dict[str, Any]:
    def work(session: Session, user: User) -> dict[str, Any]:
        get_owned_project(session, user, project_id)
        hook = webhooks.register_webhook(session, project_id, body.url, body.events, api.settings.webhook_networks)
        return {**_out(hook), "secret": hook.secret}

    return api.run(work)


@router.get("/projects/{project_id}/webhooks")
def list_hooks(project_id: int, api: ApiDep) -> list[dict[str, Any]]:
    def work(session: Session, user: User) -> list[dict[str, Any]]:
        get_owned_project(session, user, project_id)
        return [_out(hook) for hook in webhooks.list_webhooks(session, project_id)]

    return api.run(work)


@router.delete("/projects/{project_id}/webhooks/{webhook_id}", status_code=204)
def delete_hook(project_id: int, webhook_id: int, api: ApiDep) -> None:
    def work(session: Session, user: User) -> None:
        get_owned_project(session, user, project_id)
        webhooks.delete_webhook(session, project_id, webhook_id)

    api.run(work)


@router.get("/projects/{project_id}/webhooks/deliveries")
def deliveries(project_id: int, api: ApiDep) -> list[dict[str, Any]]:
    def work(session: Session, user: User) -> list[dict[str, Any]]:
        get_owned_project(session, user, project_id)
        return [
            {"id": d.id, "webhook_id": d.webhook_id, "event": d.event, "status": d.status, "attempts": d.attempts,
             "last_status_code": d.last_status_code, "last_error": d.last_error,
             "created_at": d.created_at.isoformat()}
            for d in webhooks.delivery_log(session, project_id)
        ]  # fmt: skip

    return api.run(work)
