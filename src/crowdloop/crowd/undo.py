"""Undo of a worker's answer while its lease lasts: the answer goes, the lease comes back.

Everything the answer changed is reversed in the request's transaction: the item's counts,
confidence and done state, the worker's answers, earnings, gold and speed counts, and the
project's spend and answer counters. An ``item.labeled`` webhook that the answer triggered has
left the building: an ``item.reopened`` follows it when the item reopens. A ban a rule imposed
stays (a banned worker, or one the project was closed to, cannot undo at all: their answer stands).

Training feedback is final: after a wrong gold answer was answered with the right label,
undoing it would let the worker correct their gold record, so it is refused (the worker
already knows that item was gold, so the refusal reveals nothing). Every other answer, gold
or not, is undone the same way, so undo tells nothing about which items are gold.
"""

from __future__ import annotations

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from crowdloop.crowd.assignment import own_assignment
from crowdloop.crowd.prefetch import task_out
from crowdloop.crowd.projects import admitted
from crowdloop.crowd.schemas import TaskOut
from crowdloop.crowd.standing import standing_row
from crowdloop.crowd.stop_rule import restate
from crowdloop.errors import ConflictError, PermissionDeniedError
from crowdloop.storage.models import Answer, Assignment, Item, Project, ProjectWorker, User, utcnow


def undo_answer(session: Session, worker: User, assignment_id: int) -> TaskOut:
    """Delete the worker's answer on ``assignment_id`` and give them the lease back."""
    lease = own_assignment(session, worker, assignment_id)
    if lease.status != "submitted":
        raise ConflictError(f"assignment {assignment_id} is {lease.status}: there is no answer to undo.")
    if lease.expires_at <= utcnow():
        raise ConflictError(f"the lease of assignment {assignment_id} has expired; its answer can no longer be undone.")
    answer = session.scalar(select(Answer).where(Answer.assignment_id == lease.id))
    project = session.get(Project, lease.project_id)
    item = session.get(Item, lease.item_id, with_for_update={"key_share": True})
    if answer is None or project is None or item is None:
        raise ConflictError("the answer, project or item of this assignment is gone.")
    _check_undoable(project, item, answer)
    _check_still_admitted(session, project, worker)
    _reverse(session, project, item, lease, answer)
    return task_out(session, project, lease)


def _check_undoable(project: Project, item: Item, answer: Answer) -> None:
    if project.status == "finished":
        raise ConflictError("the project is finished: its answers are final.")
    # the answer's own gold flag, not the item's today: a review decision or a gold file makes an
    # item gold after regular answers on it, which neither counted as gold nor got feedback
    feedback_given = answer.gold and answer.label != item.gold_label and project.rules.get("training_feedback", True)
    if feedback_given:
        raise ConflictError("this answer was already corrected by training feedback; it cannot be undone.")


def _check_still_admitted(session: Session, project: Project, worker: User) -> None:
    """A worker banned from the project, or shut out of it, keeps the answer they gave: undoing it
    would hand them back a lease whose answer submit then refuses, and the item would wait for the
    lease to run out before anyone else could answer it."""
    standing = standing_row(session, project.id, worker.id)
    if standing.banned:
        raise PermissionDeniedError("you are banned from this project; your answer stands.")
    if not session.scalar(select(admitted(project.id, worker.id)).where(Project.id == project.id)):
        raise PermissionDeniedError(f"project {project.id} is no longer open to you; your answer stands.")


def _reverse(session: Session, project: Project, item: Item, lease: Assignment, answer: Answer) -> None:
    _reverse_standing(standing_row(session, project.id, answer.worker_id), item, answer)
    session.delete(answer)
    lease.status = "leased"
    item.answer_count -= 1
    item.reserved += 1
    session.flush()
    if not item.is_gold:
        restate(session, project, item, announced=item.done)
    _uncount(session, project.id, answer.reward_micros)


def _reverse_standing(standing: ProjectWorker, item: Item, answer: Answer) -> None:
    standing.answers = max(standing.answers - 1, 0)
    standing.earned_micros -= answer.reward_micros
    if answer.flagged:
        standing.fast_answers = max(standing.fast_answers - 1, 0)
    if answer.gold and standing.gold_answers > 0:
        standing.gold_answers -= 1
        standing.gold_correct = max(standing.gold_correct - int(answer.label == item.gold_label), 0)


def _uncount(session: Session, project_id: int, reward_micros: int) -> None:
    since = Project.answers_since_aggregation
    session.execute(
        update(Project)
        .where(Project.id == project_id)
        .values(
            spent_micros=Project.spent_micros - reward_micros,
            answers_total=Project.answers_total - 1,
            answers_since_aggregation=case((since > 0, since - 1), else_=0),
        )
        .execution_options(synchronize_session=False)
    )
