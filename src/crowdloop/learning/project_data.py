"""What a project gives the learner: its items, their aggregated labels, gold and lineage.

Reads only; the services in :mod:`crowdloop.learning.service` and
:mod:`crowdloop.learning.priorities` call these inside a short unit of work and then
train or score with no transaction open. Item fields come from ``Item.data``; the item's
database id is the id column (:data:`ID_COLUMN`, a name no item field can collide with
in practice), so predictions map straight back to rows.

Soft targets: the aggregation stores one label and its confidence per item (the
aggregator's posterior of that label), so the label gets its confidence and the other
classes share the rest evenly — the same distribution's mode and maximum the
aggregator had.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crowdloop.errors import EmptyInputError, InvalidInputError
from crowdloop.learning.features import FeatureSpec
from crowdloop.learning.train import MIN_WEIGHT
from crowdloop.storage.models import AggregationRun, Answer, Item, ItemLabel, Project

ID_COLUMN = "_item_id"


@dataclass
class ProjectData:
    """A project's training set (non-gold items with a label), its gold and where the labels came from."""

    project_id: int
    classes: list[str]
    items: pd.DataFrame
    targets: pd.DataFrame
    gold_items: pd.DataFrame
    gold: pd.Series
    lineage: dict[str, Any] = field(default_factory=dict)
    answers: pd.DataFrame | None = None
    """``task`` (item id), ``worker``, ``label`` of every answer on a regular item, when asked for."""


def items_frame(rows: list[tuple[int, dict[str, Any]]]) -> pd.DataFrame:
    """One row per item: its data fields, and its id in :data:`ID_COLUMN`."""
    frame = pd.DataFrame.from_records([dict(data or {}) for _, data in rows])
    frame[ID_COLUMN] = [int(item_id) for item_id, _ in rows]
    return frame.reset_index(drop=True)


def soft_from_confidence(labels: pd.Series, confidence: pd.Series, classes: list[str]) -> pd.DataFrame:
    """Item x class targets: the label gets its confidence, the other classes share the remainder."""
    codes = pd.Index(classes).get_indexer(pd.Index(labels.astype(str)))
    keep = codes >= 0
    conf = np.clip(confidence.to_numpy(dtype=np.float64)[keep], 0.0, 1.0)
    rest = (1.0 - conf) / max(len(classes) - 1, 1)
    values = np.repeat(rest[:, None], len(classes), axis=1)
    values[np.arange(int(keep.sum())), codes[keep]] = conf
    return pd.DataFrame(values, index=labels.index[keep], columns=pd.Index(classes, name="label"))


def load_project_data(session: Session, project: Project, with_answers: bool = False) -> ProjectData:
    """The labeled non-gold items (training), the gold items (held out), the lineage and, when
    ``with_answers``, the raw answers on regular items."""
    classes = [str(label) for label in project.labels]
    items, targets = _training_set(session, project, classes)
    gold_items, gold = gold_set(session, project.id, classes)
    lineage = _lineage(session, project.id, len(targets))
    answers = _answers(session, project.id) if with_answers else None
    return ProjectData(project.id, classes, items, targets, gold_items, gold, lineage, answers)


def _answers(session: Session, project_id: int) -> pd.DataFrame:
    query = (
        select(Answer.item_id, Answer.worker_id, Answer.label)
        .join(Item, Item.id == Answer.item_id)
        .where(Answer.project_id == project_id, Item.is_gold.is_(False))
        .order_by(Answer.id)
    )
    rows = session.execute(query).all()
    return pd.DataFrame(
        {"task": [int(r[0]) for r in rows], "worker": [int(r[1]) for r in rows], "label": [str(r[2]) for r in rows]}
    )


def _why_no_labels(session: Session, project_id: int) -> str:
    """What to do when a project has nothing to train on: "aggregate first" sent a requester whose
    project had no items, or no answers, to a run that labels nothing."""
    on_regular = select(func.count()).select_from(Answer).join(Item, Item.id == Answer.item_id)
    answered = session.scalar(on_regular.where(Answer.project_id == project_id, Item.is_gold.is_(False)))
    if answered:
        return f"project {project_id} has no aggregated labels on regular items; aggregate first."
    items = session.scalar(select(func.count()).where(Item.project_id == project_id, Item.is_gold.is_(False)))
    if not items:
        return f"project {project_id} has no regular items to train on: import items, and have the crowd answer them."
    return f"project {project_id} has no answers on its {items} regular items yet: start it, and have the crowd answer."


def _training_set(session: Session, project: Project, classes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    query = (
        select(Item.id, Item.data, ItemLabel.label, ItemLabel.confidence)
        .join(ItemLabel, ItemLabel.item_id == Item.id)
        .where(Item.project_id == project.id, Item.is_gold.is_(False))
        .order_by(Item.id)
    )
    rows = session.execute(query).all()
    if not rows:
        raise EmptyInputError(_why_no_labels(session, project.id))
    items = items_frame([(row[0], row[1]) for row in rows])
    index = pd.Index([int(row[0]) for row in rows])
    labels = pd.Series([str(row[2]) for row in rows], index=index)
    confidence = pd.Series([float(row[3]) for row in rows], index=index)
    targets = soft_from_confidence(labels, confidence, classes)
    if int((targets.to_numpy() > MIN_WEIGHT).any(axis=0).sum()) < 2:  # what training would be left with
        raise InvalidInputError(
            f"all {len(labels)} labeled regular items of project {project.id} are labeled {labels.iloc[0]!r}, "
            "all but surely: a model needs labels of at least two classes; collect more answers first."
        )
    return items, targets


def gold_set(session: Session, project_id: int, classes: list[str]) -> tuple[pd.DataFrame, pd.Series]:
    """The project's gold items (fields, id column ``task``) and their labels, for scoring models."""
    query = (
        select(Item.id, Item.data, Item.gold_label)
        .where(Item.project_id == project_id, Item.is_gold.is_(True))
        .order_by(Item.id)
    )
    rows = [row for row in session.execute(query).all() if str(row[2]) in classes]
    if not rows:
        raise EmptyInputError(f"project {project_id} has no gold items to evaluate a model on; import some.")
    gold = pd.Series([str(row[2]) for row in rows], index=pd.Index([int(row[0]) for row in rows]), name="label")
    return items_frame([(row[0], row[1]) for row in rows]), gold


def _lineage(session: Session, project_id: int, n_labels: int) -> dict[str, Any]:
    """Which aggregation run, method and answers the labels came from, and when they were made."""
    run = session.scalar(
        select(AggregationRun)
        .where(AggregationRun.project_id == project_id, AggregationRun.status == "done")
        .order_by(AggregationRun.id.desc())
        .limit(1)
    )
    labeled_at = session.scalar(select(func.max(ItemLabel.aggregated_at)).where(ItemLabel.project_id == project_id))
    answers = session.scalar(
        select(func.count(Answer.id))
        .join(Item, Item.id == Answer.item_id)
        .where(Answer.project_id == project_id, Item.is_gold.is_(False))
    )
    return {
        "aggregation_run": run.id if run else None,
        "method": run.method if run else None,
        "labels": n_labels,
        "answers": int(answers or 0),
        "labels_at": _iso(labeled_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def open_items(session: Session, project_id: int) -> pd.DataFrame:
    """The project's regular items still taking answers whose order a priority sets: not the edge's
    feedback, which keeps the priority the edge gave it (the model already asked for those)."""
    query = (
        select(Item.id, Item.data)
        .where(Item.project_id == project_id, Item.done.is_(False), Item.is_gold.is_(False), Item.source != "edge")
        .order_by(Item.id)
    )
    rows = [(int(row[0]), row[1]) for row in session.execute(query).all()]
    if not rows:
        raise EmptyInputError(f"project {project_id} has no open regular items to prioritize.")
    return items_frame(rows)


def answers_frame(session: Session, project_id: int) -> pd.DataFrame:
    """Long answers (task = item id, worker, label) of the project's regular items."""
    query = (
        select(Answer.item_id, Answer.worker_id, Answer.label)
        .join(Item, Item.id == Answer.item_id)
        .where(Answer.project_id == project_id, Item.is_gold.is_(False))
    )
    rows = [(int(item), int(worker), str(label)) for item, worker, label in session.execute(query).all()]
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


def with_fields(items: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """``items`` with every field the model reads: one an item lacks (a field added to the project
    after the item came) is empty, as the edge reads it too."""
    missing = [name for name in spec.fields if name not in items.columns]
    return items.assign(**dict.fromkeys(missing, "")) if missing else items
