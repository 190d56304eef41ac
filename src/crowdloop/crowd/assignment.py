"""The assignment engine: which item a worker gets next, under a lease.

Guarantees, on SQLite and PostgreSQL, under any concurrency:
- never more answers (submitted plus leased) on an item than its max overlap: the
  reservation is one conditional ``UPDATE ... WHERE answer_count + reserved < max``;
- never the same item twice to one worker: a unique (item, worker) constraint;
- leases expire and return the item to the pool.

Choosing is an index range scan over (project, done, gold, priority, id), newest first
among equal priorities, starting from the worker's cursor, so it costs the same at 10k
and 1M items and does not slow down as a worker answers more. On PostgreSQL the candidate row is locked with
``FOR NO KEY UPDATE SKIP LOCKED`` so concurrent workers take different items instead of
queueing on the same one; SQLite serialises writers (``BEGIN IMMEDIATE``).

The hot path is a handful of Core statements, not ORM loads: one reads everything the checks
need (project, the worker's standing, an open lease, whether any lease expired), one reserves
an item and returns its data (``UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING``), one
inserts the lease and one moves the worker's cursor. Round trips and ORM bookkeeping, not the
database's work, were what a request cost.

The statements are built once (per role, variant or dialect) with bound parameters and run on
the session's connection: building a statement like the reservation took longer than the
database took to run it, and the ORM's execution path again as long.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Executable,
    Float,
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    exists,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from crowdloop.crowd.projects import access_granted, open_leases, visible_projects
from crowdloop.crowd.schemas import TaskOut
from crowdloop.crowd.standing import standing_row
from crowdloop.errors import ConflictError, NotFoundError, PermissionDeniedError
from crowdloop.storage.db import param, run
from crowdloop.storage.models import (
    Assignment,
    Item,
    Project,
    ProjectWorker,
    User,
    UTCDateTime,
    utcnow,
)

SYNC_OFF = {"synchronize_session": False}
"""Counters move in SQL; no ORM object of these rows is loaded in the request to keep in step."""


@dataclass(frozen=True)
class Queue:
    """What choosing and leasing an item needs to know of a project."""

    project_id: int
    max_overlap: int
    lease_seconds: int


@dataclass(frozen=True)
class Lease:
    """A lease just taken (or found open), with the item's data for the task."""

    assignment_id: int
    item_id: int
    data: dict[str, Any]
    expires_at: datetime


def next_task(session: Session, worker: User, project_id: int) -> TaskOut | None:
    """Lease the next item for ``worker``; ``None`` when there is nothing left for them."""
    context = _context(session, worker, project_id)
    if worker.role not in ("worker", "admin"):
        raise PermissionDeniedError("only workers take tasks.")
    if context.status != "active":
        return None  # paused or finished: nothing to hand out
    if context.answers is None:
        _enrol(session, project_id, worker.id)
    _check_may_work(context)
    if context.expired:
        expire_leases(session, project_id)
    if context.open_lease is not None:
        return task_out(context, _open_lease(session, context.open_lease))
    if not _budget_fits(session, project_id, context.budget_micros, context.spent_micros, context.price_micros):
        return None
    queue = Queue(project_id, context.max_overlap, context.lease_seconds)
    gold = _gold_due(context.gold_share, context.gold_answers or 0, context.answers or 0, _test_length(context.rules))
    cursor = None if context.cursor_item is None else (context.cursor_priority, context.cursor_item)
    lease = take(session, queue, worker.id, cursor, gold=gold, held_back=bool(context.held_back))
    return None if lease is None else task_out(context, lease)


_CONTEXT = (
    Project.id, Project.status, Project.rules, Project.labels, Project.instructions, Project.max_overlap,
    Project.lease_seconds, Project.gold_share, Project.budget_micros, Project.spent_micros, Project.price_micros,
    ProjectWorker.answers, ProjectWorker.gold_answers, ProjectWorker.skips_in_row, ProjectWorker.banned,
    ProjectWorker.cursor_priority, ProjectWorker.cursor_item, ProjectWorker.held_back,
)  # fmt: skip


def _context(session: Session, worker: User, project_id: int) -> Row[Any]:
    """Everything ``next_task`` checks, in one round trip; the project must be visible to ``worker``."""
    params = {"project_id": project_id, "worker_id": worker.id, "now": utcnow()}
    row = run(session, _context_query(worker.role), params).first()
    if row is None:
        raise NotFoundError(f"no project {project_id}.")
    return row


@cache
def _context_query(role: str) -> Select[Any]:
    """Built once per role, with the visibility rule of :func:`visible_projects` for that role."""
    project_id, worker_id = param("project_id", type_=Integer), param("worker_id", type_=Integer)
    now = param("now", type_=UTCDateTime())
    leased = Assignment.project_id == project_id, Assignment.status == "leased"
    open_lease = (
        select(Assignment.id)
        .where(*leased, Assignment.worker_id == worker_id, Assignment.expires_at > now)
        .order_by(Assignment.id)
        .limit(1)
    )
    expired = exists().where(*leased, Assignment.expires_at <= now)
    standing = and_(ProjectWorker.project_id == Project.id, ProjectWorker.worker_id == worker_id)
    query: Select[Any] = (
        visible_projects(User(id=worker_id, role=role))  # the caller's id as a parameter
        .with_only_columns(*_CONTEXT, open_lease.scalar_subquery().label("open_lease"), expired.label("expired"))
        .outerjoin(ProjectWorker, standing)
        .where(Project.id == project_id)
    )
    return query


def _enrol(session: Session, project_id: int, worker_id: int) -> None:
    """Create the worker's standing row on their first task; safe when two requests race."""
    run(session, _enrol_statement(session.get_bind().dialect.name), {"project_id": project_id, "worker_id": worker_id})


@cache
def _enrol_statement(dialect: str) -> Executable:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values: dict[str, Any] = {"project_id": param("project_id"), "worker_id": param("worker_id")}
    return insert(ProjectWorker).values(values).on_conflict_do_nothing(index_elements=["project_id", "worker_id"])


def _check_may_work(context: Row[Any]) -> None:
    if context.banned:
        raise PermissionDeniedError("you are banned from this project.")
    rules = context.rules
    cap = rules.get("max_answers_per_worker")
    if cap is not None and (context.answers or 0) >= cap:
        raise ConflictError(f"you have reached this project's cap of {cap} answers.")
    skips = rules.get("max_skips_in_row")
    if skips is not None and (context.skips_in_row or 0) >= skips:
        raise ConflictError(f"you skipped {context.skips_in_row} tasks in a row; this project allows {skips}.")


def _budget_fits(session: Session, project_id: int, budget: int | None, spent: int, price: int) -> bool:
    """Whether one more lease fits the budget once every open lease is paid for too."""
    if budget is None:
        return True
    return spent + (open_leases(session, project_id) + 1) * price <= budget


def _budget_allows(session: Session, project: Project) -> bool:
    """:func:`_budget_fits` for a loaded project (prefetching leases ahead)."""
    return _budget_fits(session, project.id, project.budget_micros, project.spent_micros, project.price_micros)


GOLD_BEHIND = 2.0
"""A worker this many gold tasks short of the project's rate gets gold next, whatever the draw."""
GOLD_AHEAD = 1.0
"""A worker this many gold tasks past the rate gets none until the rate catches up."""
_DRAWS = random.SystemRandom()


def _test_length(rules: dict[str, Any]) -> int:
    """The project's qualification test: how many gold tasks each worker gets first (0: none)."""
    return int(rules.get("qualification_gold") or 0)


def _gold_due(gold_share: float, gold_tasks: int, tasks: int, test: int = 0) -> bool:
    """Whether a worker who has had ``tasks`` tasks, ``gold_tasks`` of them gold, gets gold next.

    A worker's first ``test`` tasks are gold (the qualification test); they count towards the
    rate, so the regular checks resume once the rate has caught up with them. Without a test
    the first task is gold: a newcomer is checked at once. After that each task is gold with
    probability ``gold_share``, kept within :data:`GOLD_BEHIND` and :data:`GOLD_AHEAD` of the
    rate. A fixed schedule (the tenth, twentieth ... task at a share of 0.1) told a worker who
    counts which answers are checked, so the checks measured their care on those alone. The
    draws come from the system's randomness, which a worker cannot predict from what they see.
    """
    if max(tasks, gold_tasks) < test:  # a skipped gold task counts as gold, not as a task answered
        return True
    if gold_share <= 0:
        return False
    if tasks == 0 and gold_tasks == 0:
        return True
    expected = gold_share * (tasks + 1)
    if gold_tasks + GOLD_BEHIND <= expected:
        return True
    if gold_tasks >= expected + GOLD_AHEAD:
        return False
    return _DRAWS.random() < gold_share


def _wants_gold(session: Session, project: Project, worker: User, held: list[Assignment]) -> bool:
    """:func:`_gold_due` for a worker who also holds the open leases ``held`` (leased ahead by the web page)."""
    standing = standing_row(session, project.id, worker.id)
    items = [lease.item_id for lease in held]
    gold_held = session.scalar(select(func.count()).where(Item.id.in_(items), Item.is_gold.is_(True))) if items else 0
    return _gold_due(
        project.gold_share,
        standing.gold_answers + (gold_held or 0),
        standing.answers + len(held),
        _test_length(project.rules),
    )


def _lease(session: Session, project: Project, worker: User, *, gold: bool) -> Assignment | None:
    """:func:`take` for a loaded project, as an ORM row (prefetching leases ahead)."""
    standing = standing_row(session, project.id, worker.id)
    cursor = None if standing.cursor_item is None else (standing.cursor_priority, standing.cursor_item)
    queue = Queue(project.id, project.max_overlap, project.lease_seconds)
    lease = take(session, queue, worker.id, cursor, gold=gold, held_back=standing.held_back)
    if lease is None:
        return None
    session.expire(standing)  # its cursor moved in SQL
    return session.get(Assignment, lease.assignment_id)


def take(
    session: Session,
    queue: Queue,
    worker_id: int,
    cursor: tuple[float | None, int] | None,
    *,
    gold: bool,
    held_back: bool = False,
) -> Lease | None:
    """Reserve an item and lease it to the worker; gold falls back to a regular item.

    A worker the stop rule holds back (:mod:`crowdloop.crowd.stop_rule`) gets gold as usual, and
    otherwise only an orphan: an open item that no other worker can still take.
    """
    for _ in range(3):
        found = _reserve(session, queue, worker_id, cursor, gold=True) if gold else None
        if found is None and held_back:
            found = _reserve_orphan(session, queue, worker_id)
        elif found is None:
            found = _reserve(session, queue, worker_id, cursor, gold=False)
            if found is not None:
                cursor = (float(found.priority), int(found.id))
                _move_cursor(session, queue.project_id, worker_id, cursor)
        if found is None:
            return None
        lease = _insert_assignment(session, queue, worker_id, found)
        if lease is not None:
            return lease
        _release(session, int(found.id))  # the same worker raced for the same item in another request
    return None


def _reserve(
    session: Session, queue: Queue, worker_id: int, cursor: tuple[float | None, int] | None, *, gold: bool
) -> Row[Any] | None:
    """Take one reservation on the best available item: (priority, id, data), or None.

    Regular items are searched from the worker's cursor onwards first: the items behind
    it are mostly ones they already answered, and skipping those one by one would make
    a busy worker's request slower with every answer. Only when nothing is ahead does
    the search wrap around to the front of the queue.
    """
    if gold:
        return _reserve_from(session, queue, worker_id, gold=True, after=None)
    found = None
    if cursor is not None and cursor[0] is not None:
        found = _reserve_from(session, queue, worker_id, gold=False, after=(cursor[0], cursor[1]))
    return found if found is not None else _reserve_from(session, queue, worker_id, gold=False, after=None)


def _reserve_from(
    session: Session, queue: Queue, worker_id: int, *, gold: bool, after: tuple[float, int] | None
) -> Row[Any] | None:
    """One statement: pick the first free candidate (locked, others' locks skipped) and reserve it."""
    params: dict[str, Any] = {"project_id": queue.project_id, "worker_id": worker_id, "max_overlap": queue.max_overlap}
    if after is not None:
        params |= {"after_priority": after[0], "after_id": after[1]}
    return run(session, _reserve_statement(gold, after is not None), params).first()


@cache
def _reserve_statement(gold: bool, after: bool) -> Executable:
    """``UPDATE items ... WHERE id = (the first candidate) RETURNING priority, id, data``."""
    candidate = aliased(Item, name="candidate")
    worker_id, max_overlap = param("worker_id", type_=Integer), param("max_overlap", type_=Integer)
    seen = exists().where(Assignment.item_id == candidate.id, Assignment.worker_id == worker_id)
    wanted = [
        candidate.project_id == param("project_id"),
        candidate.done.is_(False),
        candidate.is_gold.is_(gold),
        ~seen,
    ]
    if not gold:
        wanted.append(candidate.answer_count + candidate.reserved < max_overlap)
    if after:
        bound = tuple_(param("after_priority", type_=Float), param("after_id", type_=BigInteger))
        wanted.append(tuple_(candidate.priority, candidate.id) < bound)
    pick = (
        select(candidate.id)
        .where(*wanted)
        .order_by(candidate.priority.desc(), candidate.id.desc())
        .limit(1)
        .with_for_update(skip_locked=True, of=candidate, key_share=True)  # not rendered on SQLite
    )
    guard = [Item.id == pick.scalar_subquery()]
    if not gold:  # checked again on the row as locked: another request may have filled it meanwhile
        guard.append(Item.answer_count + Item.reserved < max_overlap)
    return update(Item).where(*guard).values(reserved=Item.reserved + 1).returning(Item.priority, Item.id, Item.data)


ORPHAN_WINDOW = 1000
"""How many open items, in queue order, a held-back worker's request looks through for an orphan.

An orphan is rare (in a live crowd any trusted worker can take any item), and checking an item
probes the other workers' assignments; the window keeps a held-back worker's request as cheap
at 1M items as at 1k."""


def _reserve_orphan(session: Session, queue: Queue, worker_id: int) -> Row[Any] | None:
    """Reserve an open item no other worker can still take: every enrolled worker who is
    neither held back nor banned has answered, skipped or leased it. Such an item would
    otherwise stay on too few answers, or none, and never reach the confidence target."""
    params = {"project_id": queue.project_id, "worker_id": worker_id, "max_overlap": queue.max_overlap,
              "window": ORPHAN_WINDOW}  # fmt: skip
    return run(session, _orphan_statement(), params).first()


@cache
def _orphan_statement() -> Executable:
    candidate = aliased(Item, name="candidate")
    worker_id, max_overlap = param("worker_id", type_=Integer), param("max_overlap", type_=Integer)
    window = (
        select(candidate.id, candidate.priority)
        .where(
            candidate.project_id == param("project_id"),
            candidate.done.is_(False),
            candidate.is_gold.is_(False),
            candidate.answer_count + candidate.reserved < max_overlap,
            ~exists().where(Assignment.item_id == candidate.id, Assignment.worker_id == worker_id),
        )
        .order_by(candidate.priority.desc(), candidate.id.desc())
        .limit(param("window", type_=Integer))
        .subquery("window")
    )
    other = aliased(ProjectWorker, name="other")
    someone_can = exists().where(
        other.project_id == param("project_id"),
        other.worker_id != worker_id,
        other.held_back.is_(False),
        other.banned.is_(False),
        ~exists().where(Assignment.item_id == window.c.id, Assignment.worker_id == other.worker_id),
    )
    pick = select(window.c.id).where(~someone_can).order_by(window.c.priority.desc(), window.c.id.desc()).limit(1)
    guard = [Item.id == pick.scalar_subquery(), Item.answer_count + Item.reserved < max_overlap]
    return update(Item).where(*guard).values(reserved=Item.reserved + 1).returning(Item.priority, Item.id, Item.data)


def _insert_assignment(session: Session, queue: Queue, worker_id: int, found: Row[Any]) -> Lease | None:
    """Insert the lease unless (item, worker) exists already; the unique key decides races."""
    now = utcnow()
    expires = now + timedelta(seconds=queue.lease_seconds)
    params = {"project_id": queue.project_id, "item_id": int(found.id), "worker_id": worker_id,
              "issued_at": now, "expires_at": expires}  # fmt: skip
    assignment_id = run(session, _LEASE, params).scalar()
    return None if assignment_id is None else Lease(int(assignment_id), int(found.id), found.data, expires)


_LEASE = (
    text(
        "INSERT INTO assignments (project_id, item_id, worker_id, status, issued_at, expires_at) "
        "VALUES (:p_project_id, :p_item_id, :p_worker_id, 'leased', :p_issued_at, :p_expires_at) "
        "ON CONFLICT (item_id, worker_id) DO NOTHING RETURNING id"
    )
    .bindparams(bindparam("p_issued_at", type_=UTCDateTime()), bindparam("p_expires_at", type_=UTCDateTime()))
    .columns(id=BigInteger)
)
"""The lease, written as text on purpose: SQLAlchemy gives the dialects' ``insert().on_conflict_do_nothing()``
no cache key, so that form was compiled afresh on every request (0.5 ms of the cycle's 4.2 ms
CPU). ``ON CONFLICT ... DO NOTHING RETURNING`` reads the same on PostgreSQL and SQLite (3.35+)."""


_MOVE_CURSOR = (
    update(ProjectWorker)
    .where(ProjectWorker.project_id == param("project_id"), ProjectWorker.worker_id == param("worker_id"))
    .values(cursor_priority=param("priority"), cursor_item=param("item_id"))
)
_RELEASE = update(Item).where(Item.id == param("item_id")).values(reserved=Item.reserved - 1)


def _move_cursor(session: Session, project_id: int, worker_id: int, cursor: tuple[float, int]) -> None:
    params = {"project_id": project_id, "worker_id": worker_id, "priority": cursor[0], "item_id": cursor[1]}
    run(session, _MOVE_CURSOR, params)


def _release(session: Session, item_id: int) -> None:
    run(session, _RELEASE, {"item_id": item_id})


_OPEN_LEASE = (
    select(Assignment.item_id, Assignment.expires_at, Item.data)
    .join(Item, Item.id == Assignment.item_id)
    .where(Assignment.id == param("assignment_id"))
)


def _open_lease(session: Session, assignment_id: int) -> Lease:
    """A worker asking again before answering gets the same task back (idempotent next)."""
    row = run(session, _OPEN_LEASE, {"assignment_id": assignment_id}).one()
    return Lease(assignment_id, int(row.item_id), row.data, row.expires_at)


EXPIRY_BATCH = 1000
"""Leases settled per statement: expiry settles one batch per request that notices some are due."""


def expire_leases(session: Session, project_id: int) -> int:
    """Return the items of expired leases to the pool."""
    return _expire(session, Assignment.project_id == project_id, Assignment.expires_at <= utcnow())


def revoke_leases(session: Session, project_id: int, *, worker_id: int | None = None) -> int:
    """End the open leases of workers who may no longer work on the project, so their items go
    to someone else now rather than when the leases would have run out: ``worker_id``'s (just
    banned), or without one, those of every worker the project no longer admits (closed to all,
    and not granted access). An answer to a revoked lease is refused (see ``submit_answer``)."""
    if worker_id is not None:
        whose = Assignment.worker_id == worker_id
    else:
        whose = ~access_granted(project_id, Assignment.worker_id)
    ended = 0
    while (batch := _expire(session, Assignment.project_id == project_id, whose)) == EXPIRY_BATCH:
        ended += batch  # every one of them, not a batch per request as expiry does
    return ended + batch


def _expire(session: Session, *which: ColumnElement[bool]) -> int:
    """Mark the open leases matching ``which`` expired and release their items' reservations."""
    # Concurrent requests take disjoint sets of leases (SKIP LOCKED; a lease being answered right
    # now is locked by that answer and left to it), and the conditional UPDATE leaves alone a
    # lease answered or skipped meanwhile: each lease is settled once.
    due = session.scalars(
        select(Assignment.id)
        .where(Assignment.status == "leased", *which)
        .order_by(Assignment.id)
        .limit(EXPIRY_BATCH)
        .with_for_update(skip_locked=True, key_share=True)
    ).all()
    if not due:
        return 0
    items = session.scalars(
        update(Assignment)
        .where(Assignment.id.in_(due), Assignment.status == "leased")
        .values(status="expired")
        .returning(Assignment.item_id)
        .execution_options(**SYNC_OFF)
    ).all()
    # items in id order: two requests releasing leases of the same items must not lock them crosswise
    for item_id, count in sorted(Counter(items).items()):
        statement = update(Item).where(Item.id == item_id).values(reserved=Item.reserved - count)
        session.execute(statement.execution_options(**SYNC_OFF))
    return len(items)


def skip_task(session: Session, worker: User, assignment_id: int) -> ProjectWorker | None:
    """Give a leased item back; counts towards the skips-in-a-row rule. Skipping again is a no-op
    (None), so a client may repeat a skip whose answer it never got. Returns the worker's standing
    for :func:`crowdloop.crowd.answers.skip_task` to apply the project's rules to.

    A lease past its time is refused as an answer to it is (409): the item went back to the pool
    when it ran out, and a late skip counted in the skips in a row, and as a missed gold answer."""
    assignment = own_assignment(session, worker, assignment_id)
    if assignment.status == "skipped":
        return None
    if assignment.status != "leased":
        raise ConflictError(f"assignment {assignment_id} is {assignment.status}, not leased.")
    if assignment.expires_at <= utcnow():  # expiry is settled lazily: the clock decides, not the row
        raise lease_expired(assignment_id)
    assignment.status = "skipped"
    _release(session, assignment.item_id)
    standing = standing_row(session, assignment.project_id, worker.id)
    standing.skips_in_row += 1
    if session.scalar(select(Item.is_gold).where(Item.id == assignment.item_id)):
        standing.gold_answers += 1  # a skipped gold task is a missed one: skipping must not dodge the check
    return standing


def lease_expired(assignment_id: int) -> ConflictError:
    """What an answer or a skip after the lease ran out is told."""
    return ConflictError(f"the lease of assignment {assignment_id} has expired; ask for a new task.")


def own_assignment(session: Session, worker: User, assignment_id: int) -> Assignment:
    """The worker's own assignment; anybody else's is 'not found'."""
    assignment = session.get(Assignment, assignment_id, with_for_update={"key_share": True})
    if assignment is None or assignment.worker_id != worker.id:
        raise NotFoundError(f"no assignment {assignment_id}.")
    return assignment


def task_out(project: Any, lease: Lease) -> TaskOut:
    """A lease as the worker sees it (never whether the item is gold, nor the item's id: see
    :class:`TaskOut`); ``project`` is a :class:`Project` or a row with its ``id``, ``labels`` and
    ``instructions``."""
    return TaskOut(
        assignment_id=lease.assignment_id,
        project_id=project.id,
        data=lease.data,
        labels=project.labels,
        instructions=project.instructions,
        expires_at=lease.expires_at,
    )
