"""The worker's loop: next task, answer, skip, and their standing.

The two hot routes (next task, submit) write their JSON with pydantic's own serialiser into a
plain :class:`Response`: FastAPI's generic path (``jsonable_encoder`` or re-validating the
returned model) cost more per request than reading the token. The documented response models
are unchanged.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from crowdloop.api.deps import ApiDep
from crowdloop.crowd import answers, assignment
from crowdloop.crowd.schemas import SubmitIn, SubmitOut, TaskOut, WorkerStanding

router = APIRouter(tags=["tasks"])


@router.post(
    "/projects/{project_id}/tasks/next",
    response_model=None,
    responses={200: {"model": TaskOut}, 204: {"description": "nothing left for this worker"}},
)
def next_task(project_id: int, api: ApiDep) -> Response:
    """Lease the next item; 204 when there is nothing left for this worker."""
    task = api.run(lambda session, user: assignment.next_task(session, user, project_id))
    if task is None:
        return Response(status_code=204)
    return Response(task.model_dump_json(), media_type="application/json")


@router.post("/assignments/{assignment_id}/answer", response_model=SubmitOut)
def submit(assignment_id: int, body: SubmitIn, api: ApiDep, request: Request) -> Response:
    """Submit an answer; retrying the same submit returns the first answer (``duplicate``)."""
    result = api.run(lambda session, user: answers.submit_answer(session, user, assignment_id, body))
    if result.aggregate_project is not None:
        request.app.state.aggregations.submit(result.aggregate_project)  # in a process of its own
    return Response(result.model_dump_json(), media_type="application/json")


@router.post("/assignments/{assignment_id}/skip", status_code=204)
def skip(assignment_id: int, api: ApiDep) -> None:
    api.run(lambda session, user: answers.skip_task(session, user, assignment_id))


@router.get("/projects/{project_id}/me")
def my_standing(project_id: int, api: ApiDep) -> WorkerStanding:
    return api.run(lambda session, user: answers.my_standing(session, user, project_id))
