"""The requester's dashboard numbers and review queue of a project."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from crowdloop.api.deps import ApiDep
from crowdloop.crowd import dashboard, review
from crowdloop.crowd.schemas import StorableStr

router = APIRouter(tags=["review"])


class DecisionIn(BaseModel):
    label: StorableStr = Field(min_length=1)
    explanation: StorableStr | None = Field(None, description="Shown to workers who miss it; null keeps, '' clears")


@router.get("/projects/{project_id}/dashboard")
def project_dashboard(project_id: int, api: ApiDep) -> dict[str, Any]:
    """Progress, pace, money, confidence histogram, agreement and the worker table, in one call."""
    return api.run(lambda session, user: dashboard.project_dashboard(session, user, project_id))


@router.get("/projects/{project_id}/review")
def review_queue(project_id: int, api: ApiDep, limit: int = Query(20, ge=1, le=200)) -> list[dict[str, Any]]:
    """The most doubtful answered items, each with every answer."""
    return api.run(lambda session, user: review.review_queue(session, user, project_id, limit))


@router.get("/projects/{project_id}/gold")
def gold_report(project_id: int, api: ApiDep, limit: int = Query(20, ge=1, le=200)) -> list[dict[str, Any]]:
    """The answered gold items the crowd misses most, each with its votes: where to look for a
    wrong gold label."""
    return api.run(lambda session, user: review.gold_report(session, user, project_id, limit))


@router.put("/projects/{project_id}/items/{item_id}/gold")
def correct_gold(project_id: int, item_id: int, body: DecisionIn, api: ApiDep, request: Request) -> dict[str, Any]:
    """Correct a gold item's label: the gold answers it judged are judged again (see the result's
    ``workers``), and the project is aggregated again, since gold anchors every worker's estimate."""
    result = api.run(
        lambda session, user: review.correct_gold(session, user, project_id, item_id, body.label, body.explanation)
    )
    if result["label"] != result["previous_label"]:
        request.app.state.aggregations.submit(project_id)  # in a process of its own
    return result


@router.delete("/projects/{project_id}/items/{item_id}/gold")
def remove_gold(project_id: int, item_id: int, api: ApiDep, request: Request) -> dict[str, Any]:
    """Make a gold item a regular one again (an ambiguous item no label is fair to judge by): its
    gold answers leave the workers' gold tallies (see the result's ``workers``), and the project is
    aggregated again."""
    result = api.run(lambda session, user: review.remove_gold(session, user, project_id, item_id))
    request.app.state.aggregations.submit(project_id)  # in a process of its own
    return result


@router.post("/projects/{project_id}/review/{item_id}")
def decide(project_id: int, item_id: int, body: DecisionIn, api: ApiDep) -> dict[str, Any]:
    """The requester's label: the item's gold label and final label from now on."""
    return api.run(
        lambda session, user: review.decide(session, user, project_id, item_id, body.label, body.explanation)
    )
