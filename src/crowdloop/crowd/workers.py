"""The requester's view of the crowd on a project: worker table, bans, bonuses, payouts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from crowdloop.crowd import assignment, webhooks
from crowdloop.crowd.projects import access_granted, get_owned_project, open_leases
from crowdloop.crowd.schemas import from_micros, to_micros
from crowdloop.crowd.standing import ban_history, set_ban, standing_row
from crowdloop.errors import InvalidInputError, NotFoundError
from crowdloop.storage.models import Answer, Assignment, BanEvent, Bonus, Item, ProjectWorker, User, utcnow


def worker_table(session: Session, actor: User, project_id: int) -> list[dict[str, Any]]:
    """Per worker: answers, gold accuracy, reliability, median seconds, earnings, ban state, and the
    tasks they skipped or let run out (:func:`_lapses`)."""
    get_owned_project(session, actor, project_id)
    rows = _project_workers(session, project_id)
    speed: dict[int, float] = dict(
        session.execute(  # type: ignore[arg-type]
            select(Answer.worker_id, func.avg(Answer.seconds))
            .where(Answer.project_id == project_id)
            .group_by(Answer.worker_id)
        ).all()
    )
    bonuses = _bonus_totals(session, project_id)
    lapses = _lapses(session, project_id)
    return [
        _worker_row(pw, name, speed.get(pw.worker_id), bonuses.get(pw.worker_id, 0))
        | lapses.get(pw.worker_id, NO_LAPSES)
        for pw, name in rows
    ]


NO_LAPSES = {"skipped": 0, "expired": 0, "expired_gold": 0}


def _lapses(session: Session, project_id: int) -> dict[int, dict[str, int]]:
    """Per worker: tasks skipped, tasks whose lease ran out unanswered, and how many of those were gold.

    A skipped gold task counts as a missed gold answer; one left to run out does not (the server
    cannot tell waiting it out from a worker called away; see README), so the requester sees it
    here instead: a worker whose expired tasks are mostly gold, at a gold share of a tenth, is
    waiting the checks out. Leases ended by a ban or by closing the project count as expired too.
    """
    ran_out = or_(
        Assignment.status == "expired", and_(Assignment.status == "leased", Assignment.expires_at <= utcnow())
    )
    rows = session.execute(
        select(
            Assignment.worker_id,
            func.count().filter(Assignment.status == "skipped"),
            func.count().filter(ran_out),
            func.count().filter(and_(ran_out, Item.is_gold.is_(True))),
        )
        .join(Item, Item.id == Assignment.item_id)
        .where(Assignment.project_id == project_id, Assignment.status.in_(("skipped", "expired", "leased")))
        .group_by(Assignment.worker_id)
    ).all()
    return {
        int(worker): {"skipped": int(skipped), "expired": int(expired), "expired_gold": int(gold)}
        for worker, skipped, expired, gold in rows
    }


def _project_workers(session: Session, project_id: int) -> list[Any]:
    """(standing, worker name) of everyone who worked on the project, by worker id."""
    return list(
        session.execute(
            select(ProjectWorker, User.name)
            .join(User, User.id == ProjectWorker.worker_id)
            .where(ProjectWorker.project_id == project_id)
            .order_by(ProjectWorker.worker_id)
        ).all()
    )


def _worker_row(pw: ProjectWorker, name: str, seconds: float | None, bonus_micros: int) -> dict[str, Any]:
    earned = (pw.earned_micros + bonus_micros) / 1_000_000
    hours = (seconds or 0) * pw.answers / 3600
    return {
        "worker_id": pw.worker_id,
        "name": name,
        "answers": pw.answers,
        "gold_answers": pw.gold_answers,
        "gold_accuracy": pw.gold_correct / pw.gold_answers if pw.gold_answers else None,
        "reliability": pw.reliability,
        "mean_seconds": seconds,
        "earned": earned,
        "hourly_pay": earned / hours if hours > 0 else None,
        "banned": pw.banned,
        "held_back": pw.held_back,  # by the stop rule's hold_back_quantile, until a refit rates them higher
    }


def _bonus_totals(session: Session, project_id: int) -> dict[int, int]:
    rows = session.execute(
        select(Bonus.worker_id, func.sum(Bonus.amount_micros))
        .where(Bonus.project_id == project_id)
        .group_by(Bonus.worker_id)
    ).all()
    return {worker: int(total) for worker, total in rows}


def ban_worker(
    session: Session, actor: User, project_id: int, worker_id: int, reason: str, *, banned: bool
) -> dict[str, Any]:
    """Ban or unban by hand; the reason is required and recorded."""
    get_owned_project(session, actor, project_id)
    if not reason.strip():
        raise InvalidInputError("a ban or unban needs a reason.")
    _check_works_here(session, project_id, worker_id)
    if banned:
        row = impose_ban(session, project_id, worker_id, reason, by_user_id=actor.id)
    else:
        row = set_ban(session, project_id, worker_id, banned=False, reason=reason, by_user_id=actor.id)
    return {"worker_id": worker_id, "banned": row.banned}


def impose_ban(
    session: Session, project_id: int, worker_id: int, reason: str, *, by_user_id: int | None
) -> ProjectWorker:
    """Ban by hand or by a quality rule (``by_user_id`` None): recorded with its reason, the worker's
    open leases ended (tasks fetched ahead included) so their items go to others, the webhook queued."""
    row = set_ban(session, project_id, worker_id, banned=True, reason=reason, by_user_id=by_user_id)
    assignment.revoke_leases(session, project_id, worker_id=worker_id)
    webhooks.enqueue(session, project_id, "worker.banned", {"worker_id": worker_id, "reason": reason})
    return row


def bans(session: Session, actor: User, project_id: int) -> list[BanEvent]:
    get_owned_project(session, actor, project_id)
    return ban_history(session, project_id)


def _check_works_here(session: Session, project_id: int, worker_id: int) -> None:
    """Refuse a ban, unban or bonus for anyone but a worker of the project: one who took a task on
    it (every answer has its assignment) or was granted access to it. Any worker id used to do: a
    requester could pay another project's worker out of their budget, or ban them, and then read
    their name in the worker table. Whoever the id is (nobody, a requester, another project's
    worker), the answer is the same 404, so it tells nothing about users elsewhere."""
    worked = exists().where(Assignment.project_id == project_id, Assignment.worker_id == worker_id)
    member = select(User.id).where(
        User.id == worker_id, User.role == "worker", or_(worked, access_granted(project_id, worker_id))
    )
    if session.scalar(member) is None:
        raise NotFoundError(f"worker {worker_id} has not worked on project {project_id}.")


def add_bonus(session: Session, actor: User, project_id: int, worker_id: int, amount: float, reason: str) -> Bonus:
    project = get_owned_project(session, actor, project_id, lock=True)
    _check_works_here(session, project_id, worker_id)
    micros = to_micros(amount) or 0
    if micros <= 0:
        raise InvalidInputError("a bonus must be a positive amount.")
    committed = project.spent_micros + open_leases(session, project_id) * project.price_micros
    if project.budget_micros is not None and committed + micros > project.budget_micros:
        raise InvalidInputError("this bonus would exceed the project's budget (open leases included).")
    project.spent_micros += micros
    standing_row(session, project_id, worker_id)
    bonus = Bonus(project_id=project_id, worker_id=worker_id, amount_micros=micros, reason=reason)
    session.add(bonus)
    session.flush()
    return bonus


def payouts(session: Session, actor: User, project_id: int) -> list[dict[str, Any]]:
    """What each worker is owed on the project: answers, pay for answers, bonuses, total."""
    get_owned_project(session, actor, project_id)
    bonuses = _bonus_totals(session, project_id)
    rows = _project_workers(session, project_id)
    return [
        {
            "worker_id": pw.worker_id,
            "name": name,
            "answers": pw.answers,
            "answer_pay": from_micros(pw.earned_micros),
            "bonuses": from_micros(bonuses.get(pw.worker_id, 0)),
            "total": from_micros(pw.earned_micros + bonuses.get(pw.worker_id, 0)),
        }
        for pw, name in rows
    ]
