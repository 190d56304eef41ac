"""Dynamic overlap on the platform: the crowd model behind "does this item need another answer?".

It is the policy that ``benchmarks/label_efficiency.py`` measures (:class:`crowdloop.sim.DynamicOverlap`),
run on the project's tables instead of arrays:

- at every aggregation the project's answers are refitted with
  :class:`~crowdloop.quality.crowd_model.ShrunkCrowdModel`; each worker's confusion matrix,
  the newcomer's matrix and the class shares are stored (:func:`refit`);
- each answer then adds its worker's matrix row to the item's posterior (:func:`posterior`),
  and the item is done once that reaches the project's ``confidence_target``;
- a refit settles every item again: one closed on the word of a worker who has since turned
  out unreliable reopens, one the new estimates make confident closes;
- with the ``hold_back_quantile`` rule, workers rated below the crowd's bar are held back:
  they get only the items no other worker can still take (:mod:`crowdloop.crowd.assignment`).

Before the first refit a worker's answer counts with a one-coin accuracy: a Beta(7, 3) prior
(mean :data:`PRIOR_RELIABILITY`) updated by their gold answers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from crowdloop.crowd import webhooks
from crowdloop.quality.crowd_model import ShrunkCrowdModel
from crowdloop.storage.db import param, run, run_many
from crowdloop.storage.models import Answer, Item, Project, ProjectWorker

PRIOR_RELIABILITY = 0.7
"""A new worker's assumed accuracy until gold or the crowd model says otherwise."""
HOLD_BACK_FLOOR = 0.3
"""With ``hold_back_quantile`` on, a worker this close to chance (0.3 of the way to perfect) is held back too."""
MIN_EVIDENCE = 4.0
"""Answers on items others answered too before a worker can be held back."""
MIN_SHARE = 0.01
"""The smallest class share a posterior uses: a class the crowd model never chose stays possible."""


def refit(session: Session, project: Project, answers: pd.DataFrame, gold: pd.Series | None) -> dict[str, Any]:
    """Fit the crowd model to all of ``answers`` (item_id, worker_id, label), store it, settle the items.

    Writes the items it opens or closes, then workers, in id order, and returns the project's new
    ``crowd_model`` and ``label_prior`` for the caller to set last (with
    :func:`finish_if_complete`): a submit locks its item, then the worker's standing, then the
    project row, so taking them in the same order never deadlocks with one, and the project row,
    which every submit updates, is held only at the end of the aggregation.
    """
    labels = [str(label) for label in project.labels]
    answers = answers[answers["label"].isin(labels)]
    if answers.empty:
        return {"crowd_model": project.crowd_model, "label_prior": project.label_prior}
    items, item_codes = np.unique(answers["task"].to_numpy(dtype=np.int64), return_inverse=True)
    workers, worker_codes = np.unique(answers["worker"].to_numpy(dtype=np.int64), return_inverse=True)
    label_codes = answers["label"].map({label: k for k, label in enumerate(labels)}).to_numpy(dtype=np.int64)
    known = _gold_codes(gold, items, labels)
    model = ShrunkCrowdModel(len(labels), prior_accuracy=PRIOR_RELIABILITY)
    posteriors = model.fit(item_codes, worker_codes, label_codes, len(items), known)  # of its final estimates
    confidence = posteriors.max(axis=1)
    counts = np.bincount(item_codes, minlength=len(items))
    if project.status != "finished":
        _settle(session, project, items[known < 0], counts[known < 0], confidence[known < 0],
                [labels[k] for k in posteriors.argmax(axis=1)[known < 0]])  # fmt: skip
    quantile = (project.rules or {}).get("hold_back_quantile")
    bar = model.skill_bar(quantile, MIN_EVIDENCE) if quantile is not None else 0.0
    held = model.held_back(bar, HOLD_BACK_FLOOR, MIN_EVIDENCE) if quantile is not None else np.zeros(len(workers), bool)
    _store_workers(session, project.id, workers, np.exp(model.log_confusion_), held)
    shares = np.exp(model.log_prior_)
    return {
        "crowd_model": {"confusion": _rounded(np.exp(model.newcomer())), "accuracy": round(model.crowd_accuracy_, 6),
                        "skill_bar": round(bar, 6), "held_back": int(held.sum())},
        "label_prior": {label: round(float(share), 6) for label, share in zip(labels, shares, strict=True)},
    }  # fmt: skip


_OPEN_ITEM = (
    select(Item.id)
    .where(Item.project_id == param("project_id"), Item.is_gold.is_(False), Item.done.is_(False))
    .limit(1)
)


def finish_if_complete(session: Session, project_id: int) -> None:
    """Finish an active project with no open item, and announce it (``project.finished``).

    A submit that closes an item calls it, and so does a refit: before, a refit that closed the
    last items left the project active with nothing to hand out, and never announced it.
    """
    session.execute(select(Project.id).where(Project.id == project_id).with_for_update(key_share=True))
    # after the row lock, as a statement of its own: under READ COMMITTED it sees every item a
    # concurrent submit or refit closed, so one of two racing writers always finds none open
    if run(session, _OPEN_ITEM, {"project_id": project_id}).first() is not None:
        return
    finished = session.scalar(  # conditional, so only one of two racing writers announces it
        update(Project)
        .where(Project.id == project_id, Project.status == "active")
        .values(status="finished", finished_by="rule")
        .returning(Project.id)
        .execution_options(synchronize_session=False)
    )
    if finished is not None:
        webhooks.enqueue(session, project_id, "project.finished", {"project_id": project_id})


def _gold_codes(gold: pd.Series | None, items: np.ndarray, labels: list[str]) -> np.ndarray:
    """Per answered item: its gold label's code, or -1."""
    codes = np.full(len(items), -1, dtype=np.int64)
    if gold is None:
        return codes
    position = {int(item): i for i, item in enumerate(items)}
    for item, label in zip(gold.index.to_numpy(dtype=np.int64), gold.to_numpy(), strict=True):
        if int(item) in position and str(label) in labels:
            codes[position[int(item)]] = labels.index(str(label))
    return codes


def _settle(
    session: Session, project: Project, items: np.ndarray, counts: np.ndarray, confidence: np.ndarray, best: list[str]
) -> None:
    """Close or reopen each item as the refitted posteriors say.

    Only the items whose done flag flips are written, with their new confidence; the others keep
    the confidence their last submit gave them. An UPDATE locks its row until the aggregation
    commits, and the assignment engine skips locked rows (``SKIP LOCKED``): rewriting every open
    item made a worker who asked during a refit on PostgreSQL find nothing to do. An item that
    got answers since they were read keeps what its last submit gave it.
    """
    enough = counts >= project.min_overlap
    done = (enough & (confidence >= project.confidence_target)) | (counts >= project.max_overlap)
    position = {int(item): i for i, item in enumerate(items)}
    rows, events = [], []
    for item, was_done, count, external in session.execute(_ANSWERED_ITEMS, {"project": project.id}).all():
        i = position.get(item)
        if i is None or count != counts[i] or bool(done[i]) == bool(was_done):
            continue
        rows.append({"item": item, "count": count, "confidence": float(confidence[i]), "done": bool(done[i])})
        if done[i]:
            events.append(("item.labeled", {"item_id": item, "external_id": external, "label": best[i],
                                            "confidence": float(confidence[i])}))  # fmt: skip
        else:
            events.append(("item.reopened", reopened(item, external, count)))
    rows.sort(key=lambda row: row["item"])  # in id order, as every writer of several items locks them
    run_many(session, _SETTLE, rows)
    for event, payload in events:
        webhooks.enqueue(session, project.id, event, payload)


def restate(session: Session, project: Project, item: Item, announced: bool) -> str | None:
    """The item's confidence and done state from the answers it has now, by the dynamic-overlap
    rule, after something took away what had settled it (an undone answer, a gold label taken
    back). An item whose label was ``announced`` and that is open again is announced
    (``item.reopened``). Returns the label its answers give, if it has any."""
    if item.answer_count <= 0:
        item.confidence, item.done, label = None, False, None
    else:
        confidence, label = posterior(session, list(project.labels), item.id, project.label_prior, project.crowd_model)
        enough = item.answer_count >= project.min_overlap and confidence >= project.confidence_target
        item.confidence, item.done = confidence, enough or item.answer_count >= project.max_overlap
    if announced and not item.done:
        webhooks.enqueue(session, project.id, "item.reopened", reopened(item.id, item.external_id, item.answer_count))
    return label


def reopened(item_id: int, external_id: str | None, answers: int) -> dict[str, Any]:
    """The ``item.reopened`` payload: the label an ``item.labeled`` announced is withdrawn, and the
    item wants more answers (a refit no longer trusts the answers it closed on, or one was undone)."""
    return {"item_id": item_id, "external_id": external_id, "answers": answers}


_ANSWERED_ITEMS = select(Item.id, Item.done, Item.answer_count, Item.external_id).where(
    Item.project_id == bindparam("project"), Item.is_gold.is_(False), Item.answer_count > 0
)
_SETTLE = (
    update(Item)
    .where(Item.id == param("item"), Item.answer_count == param("count"), Item.is_gold.is_(False))
    .values(confidence=param("confidence"), done=param("done"))
)


def _store_workers(
    session: Session, project_id: int, workers: np.ndarray, confusion: np.ndarray, held: np.ndarray
) -> None:
    rows = [{"project": project_id, "worker": int(worker), "confusion": _rounded(matrix), "held": bool(flag)}
            for worker, matrix, flag in zip(workers, confusion, held, strict=True)]  # fmt: skip
    run_many(session, _STORE_WORKER, rows)


_STORE_WORKER = (
    update(ProjectWorker)
    .where(ProjectWorker.project_id == param("project"), ProjectWorker.worker_id == param("worker"))
    .values(confusion=param("confusion"), held_back=param("held"))
)


def _rounded(matrix: np.ndarray) -> list[list[float]]:
    return [[round(float(value), 6) for value in row] for row in matrix]


def posterior(
    session: Session, labels: list[str], item_id: int, prior: dict[str, Any] | None, crowd: dict[str, Any] | None
) -> tuple[float, str]:
    r"""The item's most likely label and its posterior from its answers, as the stop rule sees them.

    :math:`p(k) \propto \rho_k \prod_w \pi^{(w)}_{k, l_w}`: the class shares :math:`\rho`
    (``prior``) and each answering worker's confusion matrix from the latest refit; a worker
    who joined since gets the newcomer's matrix in ``crowd``, and before any refit a one-coin
    matrix with their prior-and-gold accuracy. The shares matter when classes are rare: on
    ``product`` (12% matches, answers 82% right) one "match" answer leaves a match at 38%, so
    the item gets more answers, where a uniform prior would settle it at 82%. Plain floats,
    not numpy: an item has a handful of answers.
    """
    rows = run(session, _ANSWERS_OF_ITEM, {"item_id": item_id}).all()
    newcomer = (crowd or {}).get("confusion")
    matrices = [confusion or newcomer or _one_coin(_skill(correct, answered), len(labels))
                for _, confusion, correct, answered in rows]  # fmt: skip
    return combine_answers(labels, [(label, matrix) for (label, *_), matrix in zip(rows, matrices, strict=True)],
                           prior)  # fmt: skip


def combine_answers(
    labels: list[str], answers: list[tuple[str, list[list[float]]]], prior: dict[str, Any] | None
) -> tuple[float, str]:
    """The most likely label and its posterior from ``(label, worker confusion matrix)`` pairs and class shares."""
    scores = _log_prior(labels, prior)
    for label, matrix in answers:
        column = labels.index(label)
        scores = [score + math.log(max(row[column], 1e-9)) for score, row in zip(scores, matrix, strict=True)]
    top = max(scores)
    weights = [math.exp(score - top) for score in scores]
    best = max(range(len(labels)), key=weights.__getitem__)
    return weights[best] / sum(weights), labels[best]


def _log_prior(labels: list[str], prior: dict[str, Any] | None) -> list[float]:
    """Log class shares, each at least :data:`MIN_SHARE`."""
    if not prior:
        return [0.0] * len(labels)
    return [math.log(max(float(prior.get(label, 0.0)), MIN_SHARE)) for label in labels]


def _skill(gold_correct: int, gold_answers: int) -> float:
    """A worker's accuracy before any refit: a Beta(7, 3) prior (mean 0.7) updated by their gold answers."""
    value = (gold_correct + 7 * PRIOR_RELIABILITY) / (gold_answers + 7)
    return min(max(float(value), 0.05), 0.999)


def _one_coin(skill: float, k: int) -> list[list[float]]:
    wrong = (1.0 - skill) / max(k - 1, 1)
    return [[skill if row == column else wrong for column in range(k)] for row in range(k)]


_ANSWERS_OF_ITEM = (
    select(Answer.label, ProjectWorker.confusion, ProjectWorker.gold_correct, ProjectWorker.gold_answers)
    .join(
        ProjectWorker, (ProjectWorker.project_id == Answer.project_id) & (ProjectWorker.worker_id == Answer.worker_id)
    )
    .where(Answer.item_id == param("item_id"))
)
