"""A worker's standing on a project, and bans with their recorded reasons."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from crowdloop.crowd.schemas import WorkerStanding, from_micros
from crowdloop.storage.db import dialect_insert
from crowdloop.storage.models import BanEvent, ProjectWorker


def standing_row(session: Session, project_id: int, worker_id: int) -> ProjectWorker:
    """The (project, worker) row, created on first use."""
    row = session.get(ProjectWorker, (project_id, worker_id))
    if row is None:  # insert-if-absent, safe when two requests of one worker race
        session.execute(
            dialect_insert(session, ProjectWorker)
            .values(project_id=project_id, worker_id=worker_id)
            .on_conflict_do_nothing(index_elements=["project_id", "worker_id"])
        )
        row = session.get(ProjectWorker, (project_id, worker_id))
    if row is None:
        raise RuntimeError("project_workers row vanished right after insert")
    return row


def set_ban(
    session: Session, project_id: int, worker_id: int, *, banned: bool, reason: str, by_user_id: int | None
) -> ProjectWorker:
    """Ban or unban, recording who did it and why (an automatic rule has no user).

    An unban is a fresh start for the quality rules: the counters they judge (gold answers,
    fast answers, skips in a row) start again from zero, or the very next answer would ban
    the worker again on the record that banned them.
    """
    row = standing_row(session, project_id, worker_id)
    if row.banned and not banned:
        row.gold_answers = row.gold_correct = row.fast_answers = row.skips_in_row = 0
    row.banned = banned
    session.add(
        BanEvent(
            project_id=project_id,
            worker_id=worker_id,
            action="ban" if banned else "unban",
            reason=reason,
            by_user_id=by_user_id,
        )
    )
    return row


def ban_history(session: Session, project_id: int, worker_id: int | None = None) -> list[BanEvent]:
    query = select(BanEvent).where(BanEvent.project_id == project_id).order_by(BanEvent.id)
    if worker_id is not None:
        query = query.where(BanEvent.worker_id == worker_id)
    return list(session.scalars(query))


def standing_out(row: ProjectWorker | None, project_id: int, *, show_gold: bool) -> WorkerStanding:
    """A worker's standing as they may see it (``row`` is None before their first answer)."""
    if row is None:
        return WorkerStanding(project_id=project_id, answers=0, gold_answers=None, gold_accuracy=None, earned=0.0,
                              banned=False)  # fmt: skip
    accuracy = row.gold_correct / row.gold_answers if row.gold_answers else None
    return WorkerStanding(
        project_id=project_id,
        answers=row.answers,
        gold_answers=row.gold_answers if show_gold else None,
        gold_accuracy=accuracy if show_gold else None,
        earned=from_micros(row.earned_micros) or 0.0,
        banned=row.banned,
    )
