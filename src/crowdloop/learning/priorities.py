"""Active learning on a project: the deployed model decides which open items people label next.

The production model (else the candidate) scores the project's open regular items;
:func:`crowdloop.learning.active.select` turns the scores into priorities (the chosen,
diverse batch above 1, the rest their informativeness in [0, 1]), and these are written
to ``items.priority``, which the assignment engine serves highest first (its
``(project, done, is_gold, priority, id)`` index). Like training, this reads in one short
unit of work, scores with no transaction open, and writes in a second one: one
``UPDATE`` statement run with every (id, priority) pair (executemany), then the workers'
queue cursors are reset so that workers already on the project see the new order too,
not only newcomers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from crowdloop.crowd.projects import get_owned_project
from crowdloop.errors import ConflictError, InvalidParameterError, NotFoundError
from crowdloop.learning import registry
from crowdloop.learning.active import STRATEGIES, select
from crowdloop.learning.models import check_seed
from crowdloop.learning.project_data import answers_frame, open_items, with_fields
from crowdloop.learning.service import Runner
from crowdloop.learning.train import TrainedModel
from crowdloop.storage.models import Item, ModelVersion, ProjectWorker, User

WRITE_CHUNK = 5000
"""Rows per executemany call when the priorities are written."""


@dataclass
class _Pool:
    """What scoring needs, read in the first unit of work."""

    items: pd.DataFrame
    answers: pd.DataFrame
    model_dir: Path
    version: int


def prioritize_project(
    run: Runner,
    project_id: int,
    registry_dir: Path,
    strategy: str = "activelab",
    batch_size: int = 50,
    random_state: int = 0,
) -> dict[str, Any]:
    """Score open items with the deployed model and store their priorities; return a summary."""
    if strategy not in STRATEGIES:
        raise InvalidParameterError(f"unknown active-learning strategy {strategy!r}; choose one of {STRATEGIES}.")
    check_seed(random_state)
    pool: _Pool = run(lambda session, actor: _read(session, actor, project_id, registry_dir))
    model = TrainedModel.load(pool.model_dir)
    items = with_fields(pool.items, model.featurizer.spec)  # production may read a field open items lack
    probas = model.predict_proba(items)
    features = model.featurizer.transform(items)
    priorities = select(strategy, probas, pool.answers, batch_size, random_state, features=features)
    written = run(lambda session, actor: _write(session, actor, project_id, priorities))
    batch = [int(task) for task in priorities.index[: min(batch_size, len(priorities))]]
    return {"strategy": strategy, "model_version": pool.version, "scored": written, "batch": batch,
            "top_priority": float(priorities.iloc[0])}  # fmt: skip


def _read(session: Session, actor: User, project_id: int, registry_dir: Path) -> _Pool:
    get_owned_project(session, actor, project_id)
    version = _deployed(session, project_id)
    folder = registry.artifact_dir(registry_dir, version)
    return _Pool(open_items(session, project_id), answers_frame(session, project_id), folder, version.version)


def _deployed(session: Session, project_id: int) -> ModelVersion:
    """Production, else candidate: the model people's answers should help most."""
    for alias in ("production", "candidate"):
        try:
            return registry.resolve_version(session, project_id, alias)
        except NotFoundError:
            continue
    raise ConflictError(f"project {project_id} has no model yet; train one first (crowdloop train {project_id}).")


def _write(session: Session, actor: User, project_id: int, priorities: pd.Series) -> int:
    get_owned_project(session, actor, project_id)
    table = Item.__table__
    statement = (
        update(table)  # type: ignore[arg-type]  # Item's Table, typed as FromClause
        # Edge feedback keeps its own priority (2 and above): open_items leaves it out, and so does this.
        .where(table.c.id == bindparam("item"), table.c.project_id == project_id, table.c.source != "edge")
        .values(priority=bindparam("value"))
    )
    rows = [{"item": int(str(item)), "value": float(value)} for item, value in priorities.items()]
    connection = session.connection()
    for start in range(0, len(rows), WRITE_CHUNK):
        connection.execute(statement, rows[start : start + WRITE_CHUNK])
    reset = update(ProjectWorker).where(ProjectWorker.project_id == project_id)
    session.execute(reset.values(cursor_priority=None, cursor_item=None))
    return len(rows)
