"""What the worker's web page needs beyond the basic loop: tasks leased ahead, and undo."""

from __future__ import annotations

from fastapi import APIRouter, Query

from crowdloop.api.deps import ApiDep
from crowdloop.crowd import prefetch, undo
from crowdloop.crowd.schemas import TaskOut

router = APIRouter(tags=["tasks"])


@router.post("/projects/{project_id}/tasks/batch")
def next_tasks(project_id: int, api: ApiDep, count: int = Query(2, ge=1, le=prefetch.MAX_AHEAD)) -> list[TaskOut]:
    """The caller's open leases, leasing more until there are ``count``, oldest first; [] when none is left."""
    return api.run(lambda session, user: prefetch.next_tasks(session, user, project_id, count))


@router.post("/assignments/{assignment_id}/undo")
def undo_answer(assignment_id: int, api: ApiDep) -> TaskOut:
    """Withdraw the answer on one's own assignment while its lease lasts; the task is leased again."""
    return api.run(lambda session, user: undo.undo_answer(session, user, assignment_id))
