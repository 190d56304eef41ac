"""The requester's live dashboard of a project: progress, pace, money, confidence, agreement, crowd.

One call gathers what the dashboard page draws. Each part is bounded so that polling it every
few seconds stays cheap on a large project: the pace counts the answers of the last
``WINDOW_MINUTES`` minutes, the histogram is ten filtered counts, and agreement (Krippendorff's
alpha) is computed over the latest ``ALPHA_ANSWERS`` answers.
"""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crowdloop.crowd.projects import get_owned_project, project_status
from crowdloop.crowd.standing import ban_history
from crowdloop.crowd.workers import worker_table
from crowdloop.errors import InvalidInputError
from crowdloop.quality.metrics import krippendorff_alpha
from crowdloop.storage.models import Answer, Item, ItemLabel, User, utcnow

WINDOW_MINUTES = 30
RATE_MINUTES = 5
"""Answers per minute is the mean over this many recent minutes."""
ALPHA_ANSWERS = 20_000
BINS = 10


def project_dashboard(session: Session, actor: User, project_id: int) -> dict[str, Any]:
    """Everything the dashboard shows of one project the actor manages."""
    status = project_status(session, actor, project_id)
    timeline = answers_per_minute(session, project_id)
    return {
        **status,
        "labels_set": get_owned_project(session, actor, project_id).labels,
        "timeline": timeline,
        "answers_per_minute": sum(timeline[-RATE_MINUTES:]) / RATE_MINUTES,
        "cost_per_done_item": status["spent"] / status["items_done"] if status["items_done"] else None,
        "confidence_histogram": confidence_histogram(session, project_id),
        "alpha": agreement(session, project_id),
        "workers": _workers_with_ban_reasons(session, actor, project_id),
    }


def answers_per_minute(session: Session, project_id: int, minutes: int = WINDOW_MINUTES) -> list[int]:
    """Answers in each of the last ``minutes`` whole minutes, oldest first, the current one last."""
    now = utcnow()
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    edges = [end - timedelta(minutes=minutes - i) for i in range(minutes + 1)]
    counts = [func.count().filter(Answer.created_at >= low, Answer.created_at < high) for low, high in pairwise(edges)]
    row = session.execute(select(*counts).where(Answer.project_id == project_id, Answer.created_at >= edges[0])).one()
    return [int(value or 0) for value in row]


def confidence_histogram(session: Session, project_id: int, bins: int = BINS) -> list[int]:
    """How many answered regular items have a label confidence in each tenth of [0, 1].

    The confidence is the aggregated label's where the project was aggregated, else the
    item's running posterior.
    """
    confidence = func.coalesce(ItemLabel.confidence, Item.confidence)
    counts = [
        func.count().filter(confidence >= i / bins, confidence < (i + 1) / bins if i < bins - 1 else confidence <= 1)
        for i in range(bins)
    ]
    row = session.execute(
        select(*counts)
        .select_from(Item)
        .outerjoin(ItemLabel, ItemLabel.item_id == Item.id)
        .where(Item.project_id == project_id, Item.is_gold.is_(False), Item.answer_count > 0)
    ).one()
    return [int(value or 0) for value in row]


def agreement(session: Session, project_id: int, limit: int = ALPHA_ANSWERS) -> float | None:
    """Krippendorff's alpha (nominal) of the latest answers; None before any item has two."""
    rows = session.execute(
        select(Answer.item_id, Answer.worker_id, Answer.label)
        .where(Answer.project_id == project_id)
        .order_by(Answer.id.desc())
        .limit(limit)
    ).all()
    frame = pd.DataFrame(rows, columns=["task", "worker", "label"])
    if frame.empty:
        return None
    try:
        return krippendorff_alpha(frame)
    except InvalidInputError:  # no item with two answers yet
        return None


def _workers_with_ban_reasons(session: Session, actor: User, project_id: int) -> list[dict[str, Any]]:
    rows = worker_table(session, actor, project_id)
    last: dict[int, str] = {}
    for event in ban_history(session, project_id):
        last[event.worker_id] = f"{event.action}: {event.reason}"
    return [{**row, "last_ban_event": last.get(row["worker_id"])} for row in rows]
