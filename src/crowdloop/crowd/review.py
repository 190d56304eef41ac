"""The requester's review queue: the most doubtful items with every answer, and decisions.

An item's doubt is the larger of ``1 - confidence`` (the aggregated label's confidence, else
the running posterior) and its disagreement (the share of answers that differ from the most
common label). A decision makes the item gold with the decided label (so it checks the
workers who get it from now on, and truth inference is anchored to it) and makes it the
item's final label (method ``review``, confidence 1). An item that is gold already keeps its
gold label: a decision against it is refused, as an import against it is. A wrong gold label is
put right by a correction, which also judges again the workers' answers the wrong one judged,
and an ambiguous one is taken back (the item is a regular one again, out of every gold tally).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Subquery, Text, case, cast, func, select, update
from sqlalchemy.orm import Session

from crowdloop.crowd import stop_rule, webhooks
from crowdloop.crowd.projects import get_owned_project
from crowdloop.errors import ConflictError, NotFoundError, UnknownLabelError
from crowdloop.storage.db import dialect_insert
from crowdloop.storage.models import Answer, BanEvent, Item, ItemLabel, Project, ProjectWorker, User, utcnow

log = logging.getLogger(__name__)


def review_queue(session: Session, actor: User, project_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """Up to ``limit`` answered regular items, most doubtful first, each with all its answers.

    The doubt is ranked in SQL over every answered item: picking candidates by confidence first
    missed the disputed ones, since an aggregator can be sure of a 2-1 item (the default gives it
    1.0), so a page of 20 showed items nobody disagreed on.
    """
    get_owned_project(session, actor, project_id)
    tally = _tally(project_id)
    confidence = func.coalesce(ItemLabel.confidence, Item.confidence)
    disagreement = 1.0 - cast(tally.c.top, Float) / cast(tally.c.total, Float)
    unsure = 1.0 - func.coalesce(confidence, 0.0)
    doubt = case((unsure > disagreement, unsure), else_=disagreement)  # GREATEST is not SQLite's
    rows = session.execute(
        select(Item.id, Item.external_id, Item.data, confidence, ItemLabel.label, disagreement, doubt)
        .join(tally, tally.c.item_id == Item.id)
        .outerjoin(ItemLabel, ItemLabel.item_id == Item.id)
        .where(Item.project_id == project_id, Item.is_gold.is_(False))
        .order_by(doubt.desc(), Item.id)
        .limit(max(limit, 1))
    ).all()
    answers = _answers_of(session, [row[0] for row in rows])
    return [_entry(row, answers[row[0]]) for row in rows]


def gold_report(session: Session, actor: User, project_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """Up to ``limit`` answered gold items, the most missed first: where a gold label is wrong, the
    crowd misses it (Toloka's control-task statistics show the same). Each comes with its votes, so
    the requester can see what the crowd said and correct the label (:func:`correct_gold`). Only
    answers judged as gold count: those given before a decision made the item gold were not, and
    showed the requester's own decision as "missed"."""
    get_owned_project(session, actor, project_id)
    votes: dict[int, Counter[str]] = defaultdict(Counter)
    label_text = cast(Answer.label, Text)  # PostgreSQL's json has no equality to group by
    rows = session.execute(
        select(Answer.item_id, label_text, func.count())
        .join(Item, Item.id == Answer.item_id)
        .where(Answer.project_id == project_id, Item.is_gold, Answer.gold)
        .group_by(Answer.item_id, label_text)
    ).all()
    for item_id, label, count in rows:
        votes[item_id][json.loads(label)] += count
    gold: dict[int, str] = {
        item_id: label
        for item_id, label in session.execute(select(Item.id, Item.gold_label).where(Item.id.in_(list(votes))))
    }

    totals = {item_id: sum(counts.values()) for item_id, counts in votes.items()}
    missed = {item_id: totals[item_id] - votes[item_id][gold[item_id]] for item_id in votes}
    chosen = sorted(votes, key=lambda item_id: (-missed[item_id] / totals[item_id], -missed[item_id], item_id))
    chosen = chosen[: max(limit, 1)]
    items = {item.id: item for item in session.scalars(select(Item).where(Item.id.in_(chosen)))}
    return [
        {"item_id": item_id, "external_id": items[item_id].external_id, "data": items[item_id].data,
         "gold_label": gold[item_id], "explanation": items[item_id].gold_explanation, "answers": totals[item_id],
         "missed": missed[item_id], "miss_rate": missed[item_id] / totals[item_id],
         "votes": dict(votes[item_id].most_common())}
        for item_id in chosen
    ]  # fmt: skip


def _tally(project_id: int) -> Subquery:
    """Per answered item of the project: its answers (``total``) and those of its most common label
    (``top``). Labels are compared as JSON text: PostgreSQL's ``json`` has no equality."""
    votes = (
        select(Answer.item_id, func.count().label("votes"))
        .where(Answer.project_id == project_id)
        .group_by(Answer.item_id, cast(Answer.label, Text))
        .subquery()
    )
    return (
        select(votes.c.item_id, func.max(votes.c.votes).label("top"), func.sum(votes.c.votes).label("total"))
        .group_by(votes.c.item_id)
        .subquery()
    )


def _answers_of(session: Session, item_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not item_ids:
        return found
    rows = session.execute(
        select(Answer.item_id, Answer.worker_id, User.name, Answer.label, Answer.seconds, Answer.created_at)
        .join(User, User.id == Answer.worker_id)
        .where(Answer.item_id.in_(item_ids))
        .order_by(Answer.id)
    ).all()
    for item_id, worker_id, name, label, seconds, created in rows:
        found[item_id].append(
            {"worker_id": worker_id, "worker": name, "label": label, "seconds": seconds,
             "created_at": created.isoformat()}
        )  # fmt: skip
    return found


def _entry(row: Any, answers: list[dict[str, Any]]) -> dict[str, Any]:
    item_id, external_id, data, confidence, label, disagreement, doubt = row
    counts = Counter(answer["label"] for answer in answers)
    return {
        "item_id": item_id,
        "external_id": external_id,
        "data": data,
        "label": label if label is not None else (counts.most_common(1)[0][0] if counts else None),
        "confidence": confidence,
        "disagreement": disagreement,
        "doubt": doubt,
        "votes": dict(counts),
        "answers": answers,
    }


def decide(
    session: Session, actor: User, project_id: int, item_id: int, label: str, explanation: str | None = None
) -> dict[str, Any]:
    """The requester's label for an item: it becomes the item's gold label and final label.

    It is announced as the crowd's labels are (``item.labeled``), and a decision on the last open
    item finishes the project (``project.finished``): it used to stay active with nothing to hand
    out. A repeated decision (a retry) changes and announces nothing.
    """
    project, item = _labeled_item(session, actor, project_id, item_id, label)
    _check_gold_kept(item, label)
    _explain(item, explanation)
    if not _decided(session, item.id, label):
        item.is_gold, item.gold_label, item.done = True, label, False  # a control item from now on
        _store_decision(session, project.id, item.id, label)
        payload = {"item_id": item.id, "external_id": item.external_id, "label": label, "confidence": 1.0}
        webhooks.enqueue(session, project.id, "item.labeled", payload)
        if project.status == "active":  # after the item, as a submit locks them
            stop_rule.finish_if_complete(session, project.id)
    return {"item_id": item.id, "label": label, "gold": True, "method": "review"}


def _labeled_item(session: Session, actor: User, project_id: int, item_id: int, label: str) -> tuple[Project, Item]:
    """The requester's project and its locked item (:func:`_owned_item`), for giving the item
    ``label`` (one of the project's labels): what a decision and a gold correction both check."""
    project, item = _owned_item(session, actor, project_id, item_id)
    if label not in project.labels:
        raise UnknownLabelError(f"label {label!r} is not one of {project.labels}.")
    return project, item


def _owned_item(session: Session, actor: User, project_id: int, item_id: int) -> tuple[Project, Item]:
    """The requester's project and its item, locked as a submit locks it: an answer in flight is
    judged before the change or after it, never half-way."""
    project = get_owned_project(session, actor, project_id)
    item = session.get(Item, item_id, with_for_update={"key_share": True})
    if item is None or item.project_id != project.id:
        raise NotFoundError(f"no item {item_id} in project {project_id}.")
    return project, item


def _check_gold_kept(item: Item, label: str) -> None:
    """A gold label, imported or decided, is not rewritten on the way: workers' gold answers on the
    item were judged by it (their gold accuracy, the bans it led to), so rewriting it left their
    records wrong. An import that contradicts a gold label is refused the same way; a correction
    (:func:`correct_gold`) changes it and judges those answers again."""
    if item.is_gold and item.gold_label != label:
        raise ConflictError(
            f"item {item.id} is gold already, with label {item.gold_label!r}, not {label!r}: "
            f"workers' gold answers were judged by it. To correct it, PUT "
            f"/projects/{item.project_id}/items/{item.id}/gold (crowdloop items correct-gold), which "
            "judges them again."
        )


def correct_gold(
    session: Session, actor: User, project_id: int, item_id: int, label: str, explanation: str | None = None
) -> dict[str, Any]:
    """Give a gold item its right label and judge again the gold answers the wrong one judged.

    Each gold answer on the item that the quality rules still count (given since the worker's last
    unban, which starts their counters afresh) is judged by the new label: a worker who gave it
    gains a correct gold answer, one who gave the old label loses one. Bans stand, since a ban by
    hand may have had other reasons: the result lists each re-judged worker's tally and ban, so a
    ban that rested on the wrong label can be lifted. The gold rule next judges a worker at their
    next answer. The item's stored final label follows the new gold label (``item.labeled``).

    The item row is locked as a submit locks it, so an answer in flight is either judged by the
    old label and then re-judged here, or waits and is judged by the new one.
    """
    project, item = _labeled_item(session, actor, project_id, item_id, label)
    if not item.is_gold:
        raise ConflictError(
            f"item {item.id} is not gold: make it gold with a review decision (POST "
            f"/projects/{project.id}/review/{item.id}) or an import row with a gold_label."
        )
    previous, rejudged = item.gold_label, []
    _explain(item, explanation)
    if label != previous:
        item.gold_label = label
        rejudged = _rejudge(session, project.id, item.id, previous, label)
        _changed_since_aggregation(session, project.id)
        if _relabel(session, item.id, label):
            payload = {"item_id": item.id, "external_id": item.external_id, "label": label, "confidence": 1.0}
            webhooks.enqueue(session, project.id, "item.labeled", payload)
        log.info("project %s: item %s gold %r -> %r by user %s; %d worker(s) judged again",
                 project.id, item.id, previous, label, actor.id, len(rejudged))  # fmt: skip
    return {"item_id": item.id, "label": label, "previous_label": previous,
            "explanation": item.gold_explanation, "workers": rejudged}  # fmt: skip


def remove_gold(session: Session, actor: User, project_id: int, item_id: int) -> dict[str, Any]:
    """Make a gold item a regular one again: for an item that is ambiguous rather than wrongly
    labeled, where no label is fair to judge workers by.

    Each gold answer on it that the quality rules still count (as in :func:`correct_gold`) is
    taken out of its worker's gold tally, right or wrong; bans stand, as after a correction. The
    answers stay, as regular answers: the item is labeled by the crowd from now on, settled by the
    dynamic-overlap rule like any other item (announced as ``item.reopened`` when it wants more
    answers, as ``item.labeled`` when its answers settle it on another label). A review decision
    on it is withdrawn with its gold label. In a finished project the item stays settled.
    """
    project, item = _owned_item(session, actor, project_id, item_id)
    if not item.is_gold:
        raise ConflictError(f"item {item.id} is not gold.")
    previous = item.gold_label
    taken: Counter[int] = Counter()
    wrong: Counter[int] = Counter()
    for worker_id, label in _counted_gold_answers(session, project.id, item.id):
        taken[worker_id] += 1
        wrong[worker_id] += int(label != previous)
    session.execute(update(Answer).where(Answer.item_id == item.id, Answer.gold).values(gold=False))
    for worker_id in sorted(taken):
        session.execute(
            update(ProjectWorker)
            .where(ProjectWorker.project_id == project.id, ProjectWorker.worker_id == worker_id)
            .values(gold_answers=ProjectWorker.gold_answers - taken[worker_id],
                    gold_correct=ProjectWorker.gold_correct - (taken[worker_id] - wrong[worker_id]))
        )  # fmt: skip
    item.is_gold, item.gold_label, item.gold_explanation = False, None, None
    _changed_since_aggregation(session, project.id)
    stored = session.get(ItemLabel, item.id)
    announced = stored.label if stored is not None else None
    if stored is not None:
        session.delete(stored)  # the gold label, or a decision: the crowd's aggregation gives the next
    session.flush()
    _settle_as_regular(session, project, item, announced)
    log.info("project %s: item %s is no longer gold (was %r), by user %s; %d worker(s) re-tallied",
             project.id, item.id, previous, actor.id, len(taken))  # fmt: skip
    return {"item_id": item.id, "previous_label": previous, "done": item.done,
            "workers": _tallies(session, project.id, sorted(taken))}  # fmt: skip


def _settle_as_regular(session: Session, project: Project, item: Item, announced: str | None) -> None:
    """Done state and confidence of an item that was gold, from its answers; ``announced``: the
    label an ``item.labeled`` gave it. A finished project's answers are final, so there it stays done."""
    label = stop_rule.restate(session, project, item, announced=announced is not None and project.status != "finished")
    if project.status == "finished":
        item.done = True
    if item.done and label is not None and label != announced:
        payload = {"item_id": item.id, "external_id": item.external_id, "label": label, "confidence": item.confidence}
        webhooks.enqueue(session, project.id, "item.labeled", payload)


def _changed_since_aggregation(session: Session, project_id: int) -> None:
    """Counts a gold change as the answers are counted, so that the aggregation the route asks for
    runs: a run finds nothing to do while the counter is 0 (``aggregation._claim``), and after a
    correction with no new answers the labels and reliabilities stayed those of the wrong gold."""
    since = Project.answers_since_aggregation
    session.execute(update(Project).where(Project.id == project_id).values(answers_since_aggregation=since + 1))


def _explain(item: Item, explanation: str | None) -> None:
    """What workers who miss a gold item are shown: ``None`` keeps the one it has, ``""`` clears it."""
    if explanation is not None:
        item.gold_explanation = explanation or None


def _counted_gold_answers(session: Session, project_id: int, item_id: int) -> list[tuple[int, str]]:
    """``(worker, label)`` of the gold answers on the item that the gold tallies count: those
    given since the worker's last unban, which started their counters afresh."""
    given = session.execute(
        select(Answer.worker_id, Answer.label, Answer.created_at).where(Answer.item_id == item_id, Answer.gold)
    ).all()
    last_unbans = session.execute(
        select(BanEvent.worker_id, func.max(BanEvent.created_at))
        .where(BanEvent.project_id == project_id, BanEvent.action == "unban")
        .group_by(BanEvent.worker_id)
    )
    unbanned: dict[int, datetime] = {worker_id: at for worker_id, at in last_unbans}
    return [(worker_id, label) for worker_id, label, created_at in given
            if worker_id not in unbanned or created_at > unbanned[worker_id]]  # fmt: skip


def _rejudge(session: Session, project_id: int, item_id: int, old: str, new: str) -> list[dict[str, Any]]:
    """Move each worker's correct-gold count by what the new label changes; their tallies after."""
    change: Counter[int] = Counter()
    for worker_id, label in _counted_gold_answers(session, project_id, item_id):
        change[worker_id] += int(label == new) - int(label == old)
    moved = sorted(worker for worker, delta in change.items() if delta)
    for worker_id in moved:
        session.execute(
            update(ProjectWorker)
            .where(ProjectWorker.project_id == project_id, ProjectWorker.worker_id == worker_id)
            .values(gold_correct=ProjectWorker.gold_correct + change[worker_id])
        )
    return _tallies(session, project_id, moved)


def _tallies(session: Session, project_id: int, workers: list[int]) -> list[dict[str, Any]]:
    """Each worker's gold tally on the project, and whether they are banned: which ban to lift."""
    rows = session.execute(
        select(ProjectWorker, User.name)
        .join(User, User.id == ProjectWorker.worker_id)
        .where(ProjectWorker.project_id == project_id, ProjectWorker.worker_id.in_(workers))
        .order_by(ProjectWorker.worker_id)
    ).all()
    return [
        {"worker_id": row.worker_id, "name": name, "gold_answers": row.gold_answers, "gold_correct": row.gold_correct,
         "gold_accuracy": row.gold_correct / row.gold_answers if row.gold_answers else None, "banned": row.banned}
        for row, name in rows
    ]  # fmt: skip


def _relabel(session: Session, item_id: int, label: str) -> bool:
    """The item's stored final label (a decision, or the aggregation clamped to gold) becomes the
    new gold label; whether it changed. An item with no stored label gets one at its aggregation."""
    stored = session.get(ItemLabel, item_id)
    if stored is None or stored.label == label:
        return False
    stored.label, stored.confidence, stored.aggregated_at = label, 1.0, utcnow()
    return True


def _decided(session: Session, item_id: int, label: str) -> bool:
    """Whether the item's final label is already this review decision."""
    stored = session.get(ItemLabel, item_id)
    return stored is not None and stored.method == "review" and stored.label == label


def _store_decision(session: Session, project_id: int, item_id: int, label: str) -> None:
    values = {"item_id": item_id, "project_id": project_id, "label": label, "confidence": 1.0, "method": "review",
              "aggregated_at": utcnow()}  # fmt: skip
    statement = dialect_insert(session, ItemLabel).values(values)
    changed = {name: statement.excluded[name] for name in ("label", "confidence", "method", "aggregated_at")}
    session.execute(statement.on_conflict_do_update(index_elements=["item_id"], set_=changed))
