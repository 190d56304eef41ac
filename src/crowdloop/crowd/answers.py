"""Submitting answers: idempotent, paid, checked against the quality rules, and the
dynamic-overlap stop rule (:mod:`crowdloop.crowd.stop_rule`) applied to the answered item."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, Row, insert, select, update
from sqlalchemy.orm import Session

from crowdloop.crowd import assignment, webhooks
from crowdloop.crowd.aggregation import due as aggregation_due
from crowdloop.crowd.projects import admitted, get_project
from crowdloop.crowd.schemas import SubmitIn, SubmitOut, WorkerStanding, from_micros
from crowdloop.crowd.standing import standing_out, standing_row
from crowdloop.crowd.stop_rule import finish_if_complete, posterior
from crowdloop.crowd.workers import impose_ban
from crowdloop.errors import ConflictError, NotFoundError, PermissionDeniedError, UnknownLabelError
from crowdloop.storage.db import param, run
from crowdloop.storage.models import Answer, Assignment, Item, Project, ProjectWorker, User, utcnow


def submit_answer(session: Session, worker: User, assignment_id: int, answer: SubmitIn) -> SubmitOut:
    """Record ``worker``'s answer to their leased item; a retried submit returns the first one."""
    lease = _locked_lease(session, assignment_id)
    if lease is None or lease.worker_id != worker.id:
        raise NotFoundError(f"no assignment {assignment_id}.")
    if lease.status == "submitted":
        existing = session.execute(
            select(Answer.id, Answer.reward_micros, Answer.label, Answer.gold).where(
                Answer.assignment_id == assignment_id
            )
        ).first()
        if existing is not None:
            # the first response may have been lost: repeat its training feedback too
            wrong_gold = existing.gold and existing.label != lease.gold_label
            return SubmitOut(
                answer_id=existing.id,
                reward=from_micros(existing.reward_micros) or 0.0,
                duplicate=True,
                label=str(existing.label),
                feedback=_feedback(lease) if wrong_gold else None,
            )
    if lease.banned:
        raise PermissionDeniedError("you are banned from this project; the answer was not recorded.")
    if not lease.admitted:
        raise PermissionDeniedError(
            f"project {lease.project_id} is no longer open to you; the answer was not recorded."
        )
    if lease.status != "leased":
        raise ConflictError(f"assignment {assignment_id} is {lease.status}; ask for a new task.")
    if lease.project_status == "finished":
        raise ConflictError(f"project {lease.project_id} is finished; the answer was not recorded.")
    if lease.expires_at <= utcnow():  # expiry is settled lazily: the clock decides, not the row
        raise assignment.lease_expired(assignment_id)
    if answer.label not in lease.labels:
        raise UnknownLabelError(f"label {answer.label!r} is not one of {lease.labels}.")
    return _record(session, lease, answer)


_LEASE = (
    Assignment.id, Assignment.status, Assignment.worker_id, Assignment.project_id, Assignment.item_id,
    Item.is_gold, Item.gold_label, Item.gold_explanation, Item.external_id, Item.answer_count, Item.done,
    Project.labels, Project.rules, Project.price_micros, Project.min_overlap, Project.max_overlap,
    Project.confidence_target, Project.label_prior, Project.crowd_model,
    select(ProjectWorker.banned).where(ProjectWorker.project_id == Assignment.project_id,
                                       ProjectWorker.worker_id == Assignment.worker_id)
    .scalar_subquery().label("banned"),
    admitted(Assignment.project_id, Assignment.worker_id).label("admitted"),
    Assignment.issued_at, Assignment.expires_at, Project.status.label("project_status"),
)  # fmt: skip


def _locked_lease(session: Session, assignment_id: int) -> Row[Any] | None:
    """The assignment with its item and project, in one round trip.

    The assignment and the item are locked (``FOR NO KEY UPDATE``, in that order, as lease
    expiry does); the project row is not: its counters move in one UPDATE at the very end, so
    concurrent submits on a project hold its row lock only for the final statement.
    """
    return run(session, _LOCKED_LEASE, {"assignment_id": assignment_id}).first()


_LOCKED_LEASE = (
    select(*_LEASE)
    .join(Item, Item.id == Assignment.item_id)
    .join(Project, Project.id == Assignment.project_id)
    .where(Assignment.id == param("assignment_id"))
    .with_for_update(of=[Assignment.__table__, Item.__table__], key_share=True)
)
_INSERT_ANSWER = insert(Answer).values(
    {name: param(name) for name in ("assignment_id", "project_id", "item_id", "worker_id", "label", "seconds",
                                        "reward_micros", "flagged", "gold")}
).returning(Answer.id)  # fmt: skip
_SUBMITTED = update(Assignment).where(Assignment.id == param("assignment_id")).values(status="submitted")


def _record(session: Session, lease: Row[Any], answer: SubmitIn) -> SubmitOut:
    # the speed rule trusts the worker's own seconds only when they are shorter than the server's
    # clock since the lease (a task fetched ahead was on screen for less than that); a worker who
    # claims 30 s for an answer sent 0.1 s after the lease is timed by the server
    elapsed = max((utcnow() - lease.issued_at).total_seconds(), 0.0)
    flagged = _speed_flag(lease.rules, elapsed if answer.seconds is None else min(answer.seconds, elapsed))
    answer_id = run(session, _INSERT_ANSWER, {
        "assignment_id": lease.id, "project_id": lease.project_id, "item_id": lease.item_id,
        "worker_id": lease.worker_id, "label": answer.label, "seconds": answer.seconds,
        "reward_micros": lease.price_micros, "flagged": flagged, "gold": lease.is_gold,
    }).scalar_one()  # fmt: skip
    run(session, _SUBMITTED, {"assignment_id": lease.id})
    correct = lease.is_gold and answer.label == lease.gold_label
    standing = _credit(session, lease, gold=lease.is_gold, correct=correct, fast=flagged is not None)
    _apply_rules(session, lease.project_id, lease.rules, standing, fast=flagged is not None)
    done = _count_on_item(session, lease)
    due = _count_answer(session, lease.project_id, lease.price_micros)
    if done:
        # after the counters' UPDATE: its row lock orders concurrent submits, so the last one
        # to get here sees every other item's "done" and finishes the project
        finish_if_complete(session, lease.project_id)
    return SubmitOut(
        answer_id=answer_id,
        reward=from_micros(lease.price_micros) or 0.0,
        label=answer.label,
        feedback=_feedback(lease) if lease.is_gold and not correct else None,
        aggregate_project=lease.project_id if due else None,
    )


_CREDIT = (
    update(ProjectWorker)
    .where(ProjectWorker.project_id == param("project_id"), ProjectWorker.worker_id == param("worker_id"))
    .values(
        earned_micros=ProjectWorker.earned_micros + param("price", type_=BigInteger),
        answers=ProjectWorker.answers + 1,
        skips_in_row=0,
        gold_answers=ProjectWorker.gold_answers + param("gold", type_=Integer),
        gold_correct=ProjectWorker.gold_correct + param("correct", type_=Integer),
        fast_answers=ProjectWorker.fast_answers + param("fast", type_=Integer),
    )
    .returning(ProjectWorker.worker_id, ProjectWorker.gold_answers, ProjectWorker.gold_correct,
               ProjectWorker.fast_answers, ProjectWorker.banned)
)  # fmt: skip


def _credit(session: Session, lease: Row[Any], *, gold: bool, correct: bool, fast: bool) -> Row[Any]:
    """Pay the worker and count the answer on their standing, in SQL; the new counts."""
    params = {"project_id": lease.project_id, "worker_id": lease.worker_id, "price": lease.price_micros,
              "gold": int(gold), "correct": int(correct), "fast": int(fast)}  # fmt: skip
    row = run(session, _CREDIT, params).first()
    if row is None:  # no standing yet (a lease made before it existed): create it, then count
        standing_row(session, lease.project_id, lease.worker_id)
        row = run(session, _CREDIT, params).one()
    return row


def _feedback(lease: Row[Any]) -> dict[str, Any] | None:
    """What a worker who missed a gold item learns, where the project trains its workers."""
    if not lease.rules.get("training_feedback", True):
        return None
    return {"correct": False, "expected": lease.gold_label, "explanation": lease.gold_explanation}


_ON_ITEM = {"answer_count": Item.answer_count + 1, "reserved": Item.reserved - 1}
_GOLD_ANSWERED = update(Item).where(Item.id == param("item_id")).values(_ON_ITEM)
_ANSWERED = (
    update(Item)
    .where(Item.id == param("item_id"))
    .values(_ON_ITEM | {"confidence": param("confidence"), "done": param("done")})
)


def _count_on_item(session: Session, lease: Row[Any]) -> bool:
    """Move the item's counters and, for a regular item, its dynamic-overlap state; whether it is done."""
    if lease.is_gold:
        run(session, _GOLD_ANSWERED, {"item_id": lease.item_id})
        return bool(lease.done)
    confidence, label = posterior(session, list(lease.labels), lease.item_id, lease.label_prior, lease.crowd_model)
    count = lease.answer_count + 1
    settled = (count >= lease.min_overlap and confidence >= lease.confidence_target) or count >= lease.max_overlap
    done = bool(lease.done) or settled
    run(session, _ANSWERED, {"item_id": lease.item_id, "confidence": confidence, "done": done})
    if settled:
        webhooks.enqueue(
            session, lease.project_id, "item.labeled",
            {"item_id": lease.item_id, "external_id": lease.external_id, "label": label, "confidence": confidence},
        )  # fmt: skip
    return done


_COUNT_ANSWER = (
    update(Project)
    .where(Project.id == param("project_id"))
    .values(
        spent_micros=Project.spent_micros + param("price", type_=BigInteger),
        answers_total=Project.answers_total + 1,
        answers_since_aggregation=Project.answers_since_aggregation + 1,
    )
    .returning(Project.answers_since_aggregation, Project.answers_total)
)


def _count_answer(session: Session, project_id: int, price_micros: int) -> bool:
    """Add the answer to the project's money and counters atomically; whether to aggregate."""
    since, total = run(session, _COUNT_ANSWER, {"project_id": project_id, "price": price_micros}).one()
    return bool(aggregation_due(int(since), int(total)))


def my_standing(session: Session, worker: User, project_id: int) -> WorkerStanding:
    """The caller's own numbers on a project they can see; reading never enrols anybody.

    Gold counts are shown only where the project gives training feedback: elsewhere a
    worker comparing their standing before and after each answer could tell which items
    were gold, and with two labels what their gold label was.
    """
    project = get_project(session, worker, project_id)
    row = session.get(ProjectWorker, (project.id, worker.id))
    return standing_out(row, project.id, show_gold=bool(project.rules.get("training_feedback", True)))


def _speed_flag(rules: dict[str, Any], seconds: float | None) -> str | None:
    limit = rules.get("min_answer_seconds")
    if limit is not None and seconds is not None and seconds < limit:
        return f"answered in {seconds:.1f} s, under the {limit} s minimum"
    return None


def skip_task(session: Session, worker: User, assignment_id: int) -> None:
    """Give a leased item back (:func:`crowdloop.crowd.assignment.skip_task`), then apply the rules.

    The skip rule bans, with its reason, like the others: it used to refuse further tasks
    without a word in the worker table or the ban log, and with nothing a requester could lift.
    A skipped gold task counts as a missed one, so the gold rule is checked too.
    """
    standing = assignment.skip_task(session, worker, assignment_id)
    if standing is None or standing.banned:
        return
    rules = session.scalar(select(Project.rules).where(Project.id == standing.project_id)) or {}
    limit = rules.get("max_skips_in_row")
    if limit is not None and standing.skips_in_row >= limit:
        reason = f"skipped {standing.skips_in_row} tasks in a row; the project allows {limit}"
        impose_ban(session, standing.project_id, worker.id, reason, by_user_id=None)
        return
    _apply_rules(session, standing.project_id, rules, standing, fast=False)


def _apply_rules(session: Session, project_id: int, rules: dict[str, Any], standing: Any, *, fast: bool) -> None:
    """Automatic bans: too many too-fast answers, or gold accuracy under the project's threshold."""
    banned = bool(standing.banned)
    limit = rules.get("ban_after_fast_answers")
    if fast and limit is not None and standing.fast_answers >= limit and not banned:
        reason = f"{standing.fast_answers} answers faster than {rules['min_answer_seconds']} s"
        impose_ban(session, project_id, standing.worker_id, reason, by_user_id=None)
        banned = True
    threshold = rules.get("min_gold_accuracy")
    needed = rules.get("min_gold_answers", 3)
    if threshold is None or banned or standing.gold_answers < needed:
        return
    accuracy = standing.gold_correct / standing.gold_answers
    if accuracy < threshold:
        reason = f"gold accuracy {accuracy:.2f} below {threshold} after {standing.gold_answers} gold answers"
        impose_ban(session, project_id, standing.worker_id, reason, by_user_id=None)
