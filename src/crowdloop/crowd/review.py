"""The requester's review queue: the most doubtful items with every answer, and decisions.

An item's doubt is the larger of ``1 - confidence`` (the aggregated label's confidence, else
the running posterior) and its disagreement (the share of answers that differ from the most
common label). A decision makes the item gold with the decided label (so it checks the
workers who get it from now on, and truth inference is anchored to it) and makes it the
item's final label (method ``review``, confidence 1).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crowdloop.crowd.projects import get_owned_project
from crowdloop.errors import NotFoundError, UnknownLabelError
from crowdloop.storage.db import dialect_insert
from crowdloop.storage.models import Answer, Item, ItemLabel, User, utcnow

CANDIDATES_PER_SLOT = 5
"""Items read (lowest confidence first) per place in the queue, then ranked by doubt."""


def review_queue(session: Session, actor: User, project_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """Up to ``limit`` answered regular items, most doubtful first, each with all its answers."""
    get_owned_project(session, actor, project_id)
    confidence = func.coalesce(ItemLabel.confidence, Item.confidence)
    candidates = session.execute(
        select(Item.id, Item.external_id, Item.data, confidence, ItemLabel.label)
        .outerjoin(ItemLabel, ItemLabel.item_id == Item.id)
        .where(Item.project_id == project_id, Item.is_gold.is_(False), Item.answer_count > 0)
        .order_by(confidence.asc(), Item.id)
        .limit(max(limit, 1) * CANDIDATES_PER_SLOT)
    ).all()
    answers = _answers_of(session, [row[0] for row in candidates])
    queue = [_entry(row, answers[row[0]]) for row in candidates]
    queue.sort(key=lambda entry: (-entry["doubt"], entry["item_id"]))
    return queue[: max(limit, 1)]


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
    item_id, external_id, data, confidence, label = row
    counts = Counter(answer["label"] for answer in answers)
    disagreement = 1 - max(counts.values()) / len(answers) if answers else 0.0
    doubt = max(1 - (confidence if confidence is not None else 0.0), disagreement)
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
    """The requester's label for an item: it becomes the item's gold label and final label."""
    project = get_owned_project(session, actor, project_id)
    item = session.get(Item, item_id, with_for_update={"key_share": True})
    if item is None or item.project_id != project.id:
        raise NotFoundError(f"no item {item_id} in project {project_id}.")
    if label not in project.labels:
        raise UnknownLabelError(f"label {label!r} is not one of {project.labels}.")
    item.is_gold, item.gold_label, item.done = True, label, False  # a control item from now on
    item.gold_explanation = explanation or item.gold_explanation
    values = {"item_id": item.id, "project_id": project.id, "label": label, "confidence": 1.0, "method": "review",
              "aggregated_at": utcnow()}  # fmt: skip
    statement = dialect_insert(session, ItemLabel).values(values)
    changed = {name: statement.excluded[name] for name in ("label", "confidence", "method", "aggregated_at")}
    session.execute(statement.on_conflict_do_update(index_elements=["item_id"], set_=changed))
    return {"item_id": item.id, "label": label, "gold": True, "method": "review"}
