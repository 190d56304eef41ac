"""Exports of labels and answers, streamed from a server-side cursor so that a
1M-item project leaves the server without ever being held in memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crowdloop.crowd.projects import get_owned_project
from crowdloop.storage.db import unit_of_work
from crowdloop.storage.models import Answer, Item, ItemLabel, User

BATCH = 10_000
LABEL_COLUMNS = ["item_id", "external_id", "label", "confidence", "method", "aggregated_at", "answers"]
ANSWER_COLUMNS = ["answer_id", "item_id", "external_id", "worker_id", "label", "seconds", "created_at"]


def check_export(session: Session, actor: User, project_id: int) -> None:
    """Authorise before streaming starts, in the request's own unit of work."""
    get_owned_project(session, actor, project_id)


def label_rows(factory: sessionmaker[Session], project_id: int) -> Iterator[dict[str, Any]]:
    query = (
        select(ItemLabel, Item.external_id, Item.answer_count)
        .join(Item, Item.id == ItemLabel.item_id)
        .where(ItemLabel.project_id == project_id)
        .order_by(ItemLabel.item_id)
    )
    with unit_of_work(factory) as session:
        for label, external_id, answers in session.execute(query, execution_options={"yield_per": BATCH}):
            yield {
                "item_id": label.item_id, "external_id": external_id, "label": label.label,
                "confidence": label.confidence, "method": label.method,
                "aggregated_at": label.aggregated_at.isoformat(), "answers": answers,
            }  # fmt: skip


def answer_rows(factory: sessionmaker[Session], project_id: int) -> Iterator[dict[str, Any]]:
    query = (
        select(Answer, Item.external_id)
        .join(Item, Item.id == Answer.item_id)
        .where(Answer.project_id == project_id)
        .order_by(Answer.id)
    )
    with unit_of_work(factory) as session:
        for answer, external_id in session.execute(query, execution_options={"yield_per": BATCH}):
            yield {
                "answer_id": answer.id, "item_id": answer.item_id, "external_id": external_id,
                "worker_id": answer.worker_id, "label": answer.label, "seconds": answer.seconds,
                "created_at": answer.created_at.isoformat(),
            }  # fmt: skip


def label_studio_rows(factory: sessionmaker[Session], project_id: int) -> Iterator[dict[str, Any]]:
    """Items with their label and answers, grouped item by item in one ordered pass."""
    query = (
        select(Item, ItemLabel.label, ItemLabel.confidence, Answer.worker_id, Answer.label, Answer.created_at)
        .outerjoin(ItemLabel, ItemLabel.item_id == Item.id)
        .outerjoin(Answer, Answer.item_id == Item.id)
        .where(Item.project_id == project_id)
        .order_by(Item.id, Answer.id)
    )
    with unit_of_work(factory) as session:
        current: dict[str, Any] | None = None
        for item, label, confidence, worker, answer, created in session.execute(
            query, execution_options={"yield_per": BATCH}
        ):
            if current is None or current["id"] != item.id:
                if current is not None:
                    yield current
                current = {"id": item.id, "external_id": item.external_id, "data": item.data, "label": label,
                           "confidence": confidence, "answers": [],
                           "gold_label": item.gold_label if item.is_gold else None,
                           "gold_explanation": item.gold_explanation if item.is_gold else None}  # fmt: skip
            if worker is not None:
                current["answers"].append({"worker": worker, "label": answer, "created_at": created.isoformat()})
        if current is not None:
            yield current
