"""The assignment engine: which item a worker gets next, under a lease.

Guarantees, on SQLite and PostgreSQL, under any concurrency:
- never more answers (submitted plus leased) on an item than its max overlap: the
  reservation is one conditional ``UPDATE ... WHERE answer_count + reserved < max``;
- never the same item twice to one worker: a unique (item, worker) constraint;
- leases expire and return the item to the pool.

Choosing is an index range scan over (project, done, gold, priority, id), newest first
among equal priorities, starting from the worker's cursor, so it costs the same at 10k
and 1M items and does not slow down as a worker answers more. On PostgreSQL the candidate rows are locked with
``FOR UPDATE SKIP LOCKED`` so concurrent workers take different items instead of
queueing on the same one; SQLite serialises writers (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import and_, exists, func, literal, select, tuple_, update
from sqlalchemy.orm import Session

from crowdloop.crowd.projects import get_project
from crowdloop.crowd.schemas import TaskOut
from crowdloop.crowd.standing import standing_row
from crowdloop.errors import ConflictError, NotFoundError, PermissionDeniedError
from crowdloop.storage.db import dialect_insert
from crowdloop.storage.models import Assignment, Item, Project, ProjectWorker, User, utcnow

CANDIDATES = 8


def next_task(session: Session, worker: User, project_id: int) -> TaskOut | None:
    """Lease the next item for ``worker``; ``None`` when there is nothing left for them."""
    project = get_project(session, worker, project_id)
    if worker.role not in ("worker", "admin"):
        raise PermissionDeniedError("only workers take tasks.")
    if project.status != "active":
        return None  # paused or finished: nothing to hand out
    _check_may_work(session, project, worker)
    expire_leases(session, project.id)
    current = _open_lease(session, project.id, worker.id)
    if current is not None:
        return _task_out(session, project, current)
    if not _budget_allows(session, project):
        return None
    assignment = _lease(session, project, worker, gold=_wants_gold(session, project, worker))
    return None if assignment is None else _task_out(session, project, assignment)


def _check_may_work(session: Session, project: Project, worker: User) -> None:
    standing = standing_row(session, project.id, worker.id)
    if standing.banned:
        raise PermissionDeniedError("you are banned from this project.")
    rules = project.rules
    cap = rules.get("max_answers_per_worker")
    if cap is not None and standing.answers >= cap:
        raise ConflictError(f"you have reached this project's cap of {cap} answers.")
    skips = rules.get("max_skips_in_row")
    if skips is not None and standing.skips_in_row >= skips:
        raise ConflictError(f"you skipped {standing.skips_in_row} tasks in a row; this project allows {skips}.")


def _budget_allows(session: Session, project: Project) -> bool:
    """Whether one more lease fits the budget once every open lease is paid for too."""
    if project.budget_micros is None:
        return True
    leased = session.scalar(
        select(func.count()).where(Assignment.project_id == project.id, Assignment.status == "leased")
    )
    return project.spent_micros + (int(leased or 0) + 1) * project.price_micros <= project.budget_micros


def _wants_gold(session: Session, project: Project, worker: User) -> bool:
    """Gold at the project's rate, deterministically: when the worker is below their share."""
    if project.gold_share <= 0:
        return False
    standing = standing_row(session, project.id, worker.id)
    return standing.gold_answers < project.gold_share * (standing.answers + 1)


def _lease(session: Session, project: Project, worker: User, *, gold: bool) -> Assignment | None:
    standing = standing_row(session, project.id, worker.id)
    for _ in range(3):
        item_id = _reserve(session, project, standing, gold=gold)
        if item_id is None and gold:
            item_id = _reserve(session, project, standing, gold=False)
        if item_id is None:
            return None
        assignment = _insert_assignment(session, project, worker.id, item_id)
        if assignment is not None:
            return assignment
        _release(session, item_id)  # the same worker raced for the same item in another request
    return None


def _insert_assignment(session: Session, project: Project, worker_id: int, item_id: int) -> Assignment | None:
    """Insert the lease unless (item, worker) exists already; the unique key decides races."""
    values = {
        "project_id": project.id,
        "item_id": item_id,
        "worker_id": worker_id,
        "status": "leased",
        "issued_at": utcnow(),
        "expires_at": utcnow() + timedelta(seconds=project.lease_seconds),
    }
    statement = (
        dialect_insert(session, Assignment)
        .values(values)
        .on_conflict_do_nothing(index_elements=["item_id", "worker_id"])
    )
    return session.scalars(statement.returning(Assignment)).first()


def _reserve(session: Session, project: Project, standing: ProjectWorker, *, gold: bool) -> int | None:
    """Take one reservation on the best available item; its id, or None.

    Regular items are searched from the worker's cursor onwards first: the items behind
    it are mostly ones they already answered, and skipping those one by one would make
    a busy worker's request slower with every answer. Only when nothing is ahead does
    the search wrap around to the front of the queue.
    """
    if gold:
        found = _reserve_from(session, project, standing.worker_id, gold=True, after=None)
        return None if found is None else found[1]
    item = None
    if standing.cursor_priority is not None and standing.cursor_item is not None:
        cursor = (standing.cursor_priority, standing.cursor_item)
        item = _reserve_from(session, project, standing.worker_id, gold=False, after=cursor)
    if item is None:
        item = _reserve_from(session, project, standing.worker_id, gold=False, after=None)
    if item is not None:
        standing.cursor_priority, standing.cursor_item = item
        return item[1]
    return None


def _reserve_from(
    session: Session, project: Project, worker_id: int, *, gold: bool, after: tuple[float, int] | None
) -> tuple[float, int] | None:
    seen = exists().where(Assignment.item_id == Item.id, Assignment.worker_id == worker_id)
    room = Item.answer_count + Item.reserved < project.max_overlap
    query = (
        select(Item.priority, Item.id)
        .where(Item.project_id == project.id, Item.done.is_(False), Item.is_gold.is_(gold), ~seen)
        .order_by(Item.priority.desc(), Item.id.desc())
        .limit(CANDIDATES)
    )
    if not gold:
        query = query.where(room)
    if after is not None:
        query = query.where(tuple_(Item.priority, Item.id) < tuple_(literal(after[0]), literal(after[1])))
    if session.get_bind().dialect.name == "postgresql":
        # lock only the one candidate taken (SKIP LOCKED moves past the others' rows)
        query = query.limit(1).with_for_update(skip_locked=True, of=Item, key_share=True)
    for priority, item_id in session.execute(query).all():
        guard = Item.id == item_id if gold else and_(Item.id == item_id, room)
        taken = session.execute(update(Item).where(guard).values(reserved=Item.reserved + 1))
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return float(priority), int(item_id)
    return None


def _release(session: Session, item_id: int) -> None:
    session.execute(update(Item).where(Item.id == item_id).values(reserved=Item.reserved - 1))


def _open_lease(session: Session, project_id: int, worker_id: int) -> Assignment | None:
    """A worker asking again before answering gets the same task back (idempotent next)."""
    query = select(Assignment).where(
        Assignment.project_id == project_id,
        Assignment.worker_id == worker_id,
        Assignment.status == "leased",
        Assignment.expires_at > utcnow(),
    )
    return session.scalars(query.limit(1)).first()


def expire_leases(session: Session, project_id: int) -> int:
    """Return the items of expired leases to the pool."""
    # Concurrent requests take disjoint sets of expired leases (SKIP LOCKED), and the conditional
    # UPDATE leaves alone a lease answered or skipped meanwhile: each lease is settled once.
    due = session.scalars(
        select(Assignment.id)
        .where(Assignment.project_id == project_id, Assignment.status == "leased", Assignment.expires_at <= utcnow())
        .order_by(Assignment.id)
        .limit(1000)
        .with_for_update(skip_locked=True, key_share=True)
    ).all()
    if not due:
        return 0
    items = session.scalars(
        update(Assignment)
        .where(Assignment.id.in_(due), Assignment.status == "leased")
        .values(status="expired")
        .returning(Assignment.item_id)
        .execution_options(synchronize_session=False)
    ).all()
    # items in id order: two requests releasing leases of the same items must not lock them crosswise
    for item_id, count in sorted(Counter(items).items()):
        session.execute(update(Item).where(Item.id == item_id).values(reserved=Item.reserved - count))
    return len(items)


def skip_task(session: Session, worker: User, assignment_id: int) -> None:
    """Give a leased item back; counts towards the skips-in-a-row rule."""
    assignment = own_assignment(session, worker, assignment_id)
    if assignment.status != "leased":
        raise ConflictError(f"assignment {assignment_id} is {assignment.status}, not leased.")
    assignment.status = "skipped"
    _release(session, assignment.item_id)
    standing_row(session, assignment.project_id, worker.id).skips_in_row += 1


def own_assignment(session: Session, worker: User, assignment_id: int) -> Assignment:
    """The worker's own assignment; anybody else's is 'not found'."""
    assignment = session.get(Assignment, assignment_id, with_for_update={"key_share": True})
    if assignment is None or assignment.worker_id != worker.id:
        raise NotFoundError(f"no assignment {assignment_id}.")
    return assignment


def _task_out(session: Session, project: Project, assignment: Assignment) -> TaskOut:
    item = session.get(Item, assignment.item_id)
    if item is None:
        raise NotFoundError(f"no item {assignment.item_id}.")
    return TaskOut(
        assignment_id=assignment.id,
        project_id=project.id,
        item_id=item.id,
        data=item.data,
        labels=project.labels,
        instructions=project.instructions,
        expires_at=assignment.expires_at,
    )
