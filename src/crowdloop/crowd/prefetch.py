"""Leasing a few tasks ahead, so the worker's page can show the next item the moment they answer.

``assignment.next_task`` hands a worker one lease at a time (asking again returns the same
one). The web page wants the next item in hand while the worker reads the current one:
:func:`next_tasks` makes sure the worker holds up to ``count`` open leases and returns them,
oldest first. Each extra lease goes through the same engine (the same reservation, the same
overlap and uniqueness guarantees, the budget counting every open lease), and none is taken
past the project's answer cap.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crowdloop.crowd import assignment
from crowdloop.crowd.projects import get_project
from crowdloop.crowd.schemas import TaskOut
from crowdloop.crowd.standing import standing_row
from crowdloop.errors import NotFoundError
from crowdloop.storage.models import Assignment, Item, Project, User, utcnow

MAX_AHEAD = 3
"""At most this many open leases per worker and project (the one shown, and the ones ahead)."""


def next_tasks(session: Session, worker: User, project_id: int, count: int = 2) -> list[TaskOut]:
    """The worker's open leases on the project, leasing more until there are ``count``; [] when none left."""
    first = assignment.next_task(session, worker, project_id)  # every check, expiry, the first lease
    if first is None:
        return []
    project = get_project(session, worker, project_id)
    leases = open_leases(session, project.id, worker.id)
    while len(leases) < min(max(count, 1), MAX_AHEAD) and _may_lease_more(session, project, worker, len(leases)):
        gold = assignment._wants_gold(session, project, worker, leases)
        extra = assignment._lease(session, project, worker, gold=gold)
        if extra is None:
            break
        leases.append(extra)
    return [task_out(session, project, lease) for lease in leases[: max(count, 1)]]


def _may_lease_more(session: Session, project: Project, worker: User, held: int) -> bool:
    """The budget covers one more open lease, and the answer cap is not reached with the ones held."""
    cap = project.rules.get("max_answers_per_worker")
    if cap is not None and standing_row(session, project.id, worker.id).answers + held >= cap:
        return False
    return assignment._budget_allows(session, project)


def open_leases(session: Session, project_id: int, worker_id: int) -> list[Assignment]:
    """The worker's unexpired leases on the project, oldest first."""
    query = (
        select(Assignment)
        .where(
            Assignment.project_id == project_id,
            Assignment.worker_id == worker_id,
            Assignment.status == "leased",
            Assignment.expires_at > utcnow(),
        )
        .order_by(Assignment.id)
    )
    return list(session.scalars(query))


def task_out(session: Session, project: Project, lease: Assignment) -> TaskOut:
    """An open lease (an ORM row) as the worker sees it."""
    item = session.get(Item, lease.item_id)
    if item is None:
        raise NotFoundError(f"the item of assignment {lease.id} is gone.")  # a worker is never told item ids
    return assignment.task_out(project, assignment.Lease(lease.id, item.id, item.data, lease.expires_at))
