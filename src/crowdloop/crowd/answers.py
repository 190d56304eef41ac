"""Submitting answers: idempotent, paid, checked against the quality rules, and the
dynamic-overlap stop rule that decides when an item has enough answers."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crowdloop.crowd import webhooks
from crowdloop.crowd.aggregation import due as aggregation_due
from crowdloop.crowd.assignment import own_assignment
from crowdloop.crowd.projects import get_project
from crowdloop.crowd.schemas import SubmitIn, SubmitOut, WorkerStanding, from_micros
from crowdloop.crowd.standing import set_ban, standing_out, standing_row
from crowdloop.errors import ConflictError, UnknownLabelError
from crowdloop.storage.models import Answer, Assignment, Item, Project, ProjectWorker, User

PRIOR_RELIABILITY = 0.7
"""A new worker's assumed accuracy until gold or aggregation says otherwise."""


def submit_answer(session: Session, worker: User, assignment_id: int, answer: SubmitIn) -> SubmitOut:
    """Record ``worker``'s answer to their leased item; a retried submit returns the first one."""
    assignment = own_assignment(session, worker, assignment_id)
    if assignment.status == "submitted":
        existing = session.scalar(select(Answer).where(Answer.assignment_id == assignment.id))
        if existing is not None:
            return SubmitOut(answer_id=existing.id, reward=from_micros(existing.reward_micros) or 0.0, duplicate=True)
    if assignment.status != "leased":
        raise ConflictError(f"assignment {assignment_id} is {assignment.status}; ask for a new task.")
    # The project row is not locked here: its counters move in one UPDATE at the very end, so
    # concurrent submits on a project hold its row lock only for the final statement.
    project = session.get(Project, assignment.project_id)
    item = session.get(Item, assignment.item_id, with_for_update={"key_share": True})
    if project is None or item is None:
        raise ConflictError("the project or item of this assignment is gone.")
    if answer.label not in project.labels:
        raise UnknownLabelError(f"label {answer.label!r} is not one of {project.labels}.")
    return _record(session, project, item, assignment, worker, answer)


def _record(
    session: Session, project: Project, item: Item, assignment: Assignment, worker: User, answer: SubmitIn
) -> SubmitOut:
    standing = standing_row(session, project.id, worker.id)
    row = Answer(
        assignment_id=assignment.id,
        project_id=project.id,
        item_id=item.id,
        worker_id=worker.id,
        label=answer.label,
        seconds=answer.seconds,
        reward_micros=project.price_micros,
        flagged=_speed_flag(project, answer.seconds),
    )
    session.add(row)
    assignment.status = "submitted"
    item.reserved -= 1
    item.answer_count += 1
    _pay(project, standing)
    feedback = _gold_check(project, item, standing, answer.label) if item.is_gold else None
    _apply_rules(session, project, standing, row)
    if not item.is_gold:
        _update_item_state(session, project, item)
    session.flush()
    due = _count_answer(session, project)
    if item.done:
        # after the counters' UPDATE: its row lock orders concurrent submits, so the last one
        # to get here sees every other item's "done" and finishes the project
        _finish_if_complete(session, project)
    return SubmitOut(
        answer_id=row.id,
        reward=from_micros(row.reward_micros) or 0.0,
        feedback=feedback,
        aggregate_project=project.id if due else None,
    )


def _count_answer(session: Session, project: Project) -> bool:
    """Add the answer to the project's money and counters atomically; whether to aggregate."""
    since, total = session.execute(
        update(Project)
        .where(Project.id == project.id)
        .values(
            spent_micros=Project.spent_micros + project.price_micros,
            answers_total=Project.answers_total + 1,
            answers_since_aggregation=Project.answers_since_aggregation + 1,
        )
        .returning(Project.answers_since_aggregation, Project.answers_total)
        .execution_options(synchronize_session=False)
    ).one()
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


def _pay(project: Project, standing: ProjectWorker) -> None:
    standing.earned_micros += project.price_micros
    standing.answers += 1
    standing.skips_in_row = 0


def _speed_flag(project: Project, seconds: float | None) -> str | None:
    limit = project.rules.get("min_answer_seconds")
    if limit is not None and seconds is not None and seconds < limit:
        return f"answered in {seconds:.1f} s, under the {limit} s minimum"
    return None


def _gold_check(project: Project, item: Item, standing: ProjectWorker, label: str) -> dict[str, Any] | None:
    standing.gold_answers += 1
    correct = label == item.gold_label
    standing.gold_correct += int(correct)
    if correct or not project.rules.get("training_feedback", True):
        return None
    return {"correct": False, "expected": item.gold_label, "explanation": item.gold_explanation}


def _apply_rules(session: Session, project: Project, standing: ProjectWorker, answer: Answer) -> None:
    rules = project.rules
    if answer.flagged:
        standing.fast_answers += 1
        limit = rules.get("ban_after_fast_answers")
        if limit is not None and standing.fast_answers >= limit and not standing.banned:
            _ban(
                session,
                project,
                standing,
                f"{standing.fast_answers} answers faster than {rules['min_answer_seconds']} s",
            )
    threshold = rules.get("min_gold_accuracy")
    needed = rules.get("min_gold_answers", 3)
    if threshold is None or standing.banned or standing.gold_answers < needed:
        return
    accuracy = standing.gold_correct / standing.gold_answers
    if accuracy < threshold:
        _ban(
            session,
            project,
            standing,
            f"gold accuracy {accuracy:.2f} below {threshold} after {standing.gold_answers} gold answers",
        )


def _ban(session: Session, project: Project, standing: ProjectWorker, reason: str) -> None:
    set_ban(session, project.id, standing.worker_id, banned=True, reason=reason, by_user_id=None)
    webhooks.enqueue(session, project.id, "worker.banned", {"worker_id": standing.worker_id, "reason": reason})


def _update_item_state(session: Session, project: Project, item: Item) -> None:
    """Dynamic overlap: the item is done at max overlap, or at min overlap once confident."""
    confidence, label = item_posterior(session, project, item)
    item.confidence = confidence
    enough = item.answer_count >= project.min_overlap and confidence >= project.confidence_target
    if enough or item.answer_count >= project.max_overlap:
        item.done = True
        webhooks.enqueue(
            session, project.id, "item.labeled",
            {"item_id": item.id, "external_id": item.external_id, "label": label, "confidence": confidence},
        )  # fmt: skip


def item_posterior(session: Session, project: Project, item: Item) -> tuple[float, str]:
    r"""Posterior of the item's most likely label from its answers and the workers' reliability.

    One-coin model with each worker's current reliability :math:`s_w` (from truth
    inference, else gold accuracy, else a prior) and a uniform class prior:
    :math:`p(k) \propto \prod_w s_w^{[l_w = k]} ((1 - s_w)/(K - 1))^{[l_w \ne k]}`.
    """
    rows = session.execute(
        select(Answer.label, ProjectWorker.reliability, ProjectWorker.gold_correct, ProjectWorker.gold_answers)
        .join(
            ProjectWorker,
            (ProjectWorker.project_id == Answer.project_id) & (ProjectWorker.worker_id == Answer.worker_id),
        )
        .where(Answer.item_id == item.id)
    ).all()
    labels = list(project.labels)
    scores = np.zeros(len(labels))
    for label, reliability, gold_correct, gold_answers in rows:
        skill = _skill(reliability, gold_correct, gold_answers)
        wrong = np.log((1 - skill) / max(len(labels) - 1, 1))
        scores += wrong
        scores[labels.index(label)] += np.log(skill) - wrong
    posterior = np.exp(scores - scores.max())
    posterior /= posterior.sum()
    best = int(np.argmax(posterior))
    return float(posterior[best]), labels[best]


def _skill(reliability: float | None, gold_correct: int, gold_answers: int) -> float:
    # without a reliability from truth inference: a Beta(7, 3) prior (mean 0.7) updated by gold
    value = reliability if reliability is not None else (gold_correct + 7 * PRIOR_RELIABILITY) / (gold_answers + 7)
    return float(np.clip(value, 0.05, 0.999))


def _finish_if_complete(session: Session, project: Project) -> None:
    open_items = session.scalar(
        select(Item.id).where(Item.project_id == project.id, Item.is_gold.is_(False), Item.done.is_(False)).limit(1)
    )
    if open_items is not None:
        return
    finished = session.scalar(  # conditional, so only one of two racing submits announces it
        update(Project)
        .where(Project.id == project.id, Project.status == "active")
        .values(status="finished")
        .returning(Project.id)
        .execution_options(synchronize_session=False)
    )
    if finished is not None:
        project.status = "finished"
        webhooks.enqueue(session, project.id, "project.finished", {"project_id": project.id})
