"""The requester's crowd management: worker table, bans, bonuses, payouts."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from crowdloop.api.deps import ApiDep
from crowdloop.crowd import workers
from crowdloop.crowd.formats import stream_csv
from crowdloop.crowd.schemas import StorableStr

router = APIRouter(tags=["workers"])


class ReasonIn(BaseModel):
    reason: StorableStr = Field(min_length=1)


class BonusIn(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)  # an Infinity bonus overflowed into a 500
    worker_id: int
    amount: float = Field(gt=0)
    reason: StorableStr = ""


@router.get("/projects/{project_id}/workers")
def worker_table(project_id: int, api: ApiDep) -> list[dict[str, Any]]:
    return api.run(lambda session, user: workers.worker_table(session, user, project_id))


@router.post("/projects/{project_id}/workers/{worker_id}/ban")
def ban(project_id: int, worker_id: int, body: ReasonIn, api: ApiDep) -> dict[str, Any]:
    return api.run(lambda s, user: workers.ban_worker(s, user, project_id, worker_id, body.reason, banned=True))


@router.post("/projects/{project_id}/workers/{worker_id}/unban")
def unban(project_id: int, worker_id: int, body: ReasonIn, api: ApiDep) -> dict[str, Any]:
    return api.run(lambda s, user: workers.ban_worker(s, user, project_id, worker_id, body.reason, banned=False))


@router.get("/projects/{project_id}/bans")
def bans(project_id: int, api: ApiDep) -> list[dict[str, Any]]:
    return api.run(
        lambda session, user: [
            {"worker_id": e.worker_id, "action": e.action, "reason": e.reason, "by_user_id": e.by_user_id,
             "created_at": e.created_at.isoformat()}
            for e in workers.bans(session, user, project_id)
        ]
    )  # fmt: skip


@router.post("/projects/{project_id}/bonuses", status_code=201)
def bonus(project_id: int, body: BonusIn, api: ApiDep) -> dict[str, Any]:
    created = api.run(
        lambda session, user: workers.add_bonus(session, user, project_id, body.worker_id, body.amount, body.reason)
    )
    return {"id": created.id, "worker_id": created.worker_id, "amount": body.amount}


@router.get("/projects/{project_id}/payouts", response_model=None)
def payouts(
    project_id: int, api: ApiDep, format: Literal["json", "csv"] = "json"
) -> list[dict[str, Any]] | StreamingResponse:
    """What each worker earned (answers and bonuses); ``format=xml`` and the like are a 422, not JSON."""
    rows = api.run(lambda session, user: workers.payouts(session, user, project_id))
    if format == "json":
        return rows
    columns = ["worker_id", "name", "answers", "answer_pay", "bonuses", "total"]
    headers = {"Content-Disposition": f'attachment; filename="payouts-{project_id}.csv"'}
    return StreamingResponse(stream_csv(iter(rows), columns), media_type="text/csv", headers=headers)
