"""The server's side of edge devices: feedback items become crowd items, telemetry is kept.

* :func:`receive_feedback` — inputs a device's model was unsure about (or sampled for an
  audit) become items of the project with ``source = "edge"``, ``external_id =
  "edge:<client id>"`` and a high priority (:data:`EDGE_PRIORITY` plus the model's
  uncertainty), so the crowd labels them first. An item whose content the project already
  has is not duplicated (content hash); the feedback row then points at the existing item.
* :func:`receive_telemetry` — per-version prediction summaries (class counts, confidence
  histogram and sample, input statistics), kept for drift monitoring.

Both are idempotent on the device's ids (``client_id``, ``batch_id``): a delivery retried
after a lost response stores nothing twice. Only ``device`` tokens (and admins) may call
them, for projects open to the device. Functions take a session and never commit.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crowdloop.crowd.auth import require_role
from crowdloop.crowd.dedup import (
    content_hash,
    has_content,
    item_text,
    minhash_signatures,
    normalize_fields,
    pack_signatures,
    unstorable_reason,
)
from crowdloop.crowd.items import looks_like_gold_answer
from crowdloop.crowd.near_duplicates import NEAR_PERM, index_and_find, mark_near_duplicates
from crowdloop.crowd.projects import get_project
from crowdloop.crowd.schemas import StorableStr
from crowdloop.errors import CrowdloopError, InvalidInputError, PayloadTooLargeError
from crowdloop.monitoring.drift_service import check_due
from crowdloop.storage.db import dialect_insert
from crowdloop.storage.models import EdgeFeedback, EdgeTelemetry, Item, ModelVersion, Project, ProjectWorker, User

EDGE_PRIORITY = 2.0
"""Base priority of edge items: above active learning's chosen batch (which sits just above 1)."""
MAX_BATCH = 1000

log = logging.getLogger(__name__)


def _check_storable(value: Any) -> None:
    """Refuse what the database cannot store (NaN or infinity, a NUL, a lone surrogate): on
    PostgreSQL the request failed with a 500, and SQLite stored what no check could read back."""
    reason = unstorable_reason(value)
    if reason:
        raise ValueError(reason)


MAX_SECONDS = 253402300799.0
"""9999-12-31 23:59:59 UTC, the last moment a ``datetime`` holds: later times were a 500."""


class InputStatIn(BaseModel):
    """One field's input statistics in a telemetry batch (free-form, one bad batch made every later
    drift check of its version fail)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    mean_length: float = Field(ge=0.0)
    empty_share: float = Field(ge=0.0, le=1.0)


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    client_id: StorableStr = Field(min_length=8, max_length=64)
    data: dict[str, Any]
    model_version: int = Field(ge=1)
    reason: Literal["unsure", "audit"]
    label: Any = None
    confidence: float = Field(ge=0.0, le=1.0)

    @field_validator("data")
    @classmethod
    def _not_empty(cls, data: dict[str, Any]) -> dict[str, Any]:
        if not has_content(data):  # it would become an item with nothing to label, served first
            raise ValueError("empty item: no field has content")
        _check_storable(data)
        return data

    @field_validator("label")
    @classmethod
    def _finite_label(cls, label: Any) -> Any:
        _check_storable(label)
        return label


class TelemetryIn(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    client_id: StorableStr = Field(min_length=8, max_length=64, description="the batch id")
    model_version: int = Field(ge=1)
    started_at: float = Field(ge=0.0, le=MAX_SECONDS)
    ended_at: float = Field(ge=0.0, le=MAX_SECONDS)
    predictions: int = Field(ge=1, le=2**31 - 1)
    confidence_mean: float = Field(ge=0.0, le=1.0)
    class_counts: dict[StorableStr, Annotated[int, Field(ge=0)]] = Field(default_factory=dict, max_length=1000)
    confidence_histogram: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list, max_length=1000)
    confidence_sample: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=list, max_length=10_000)
    latency_mean_s: float | None = Field(None, ge=0.0)
    input_stats: dict[StorableStr, InputStatIn] = Field(default_factory=dict, max_length=1000)


def _device_project(session: Session, actor: User, project_id: int, batch: int) -> None:
    get_project(session, actor, project_id)  # first: a project the caller cannot see answers 404
    require_role(actor, "device", "admin")
    if batch > MAX_BATCH:
        raise PayloadTooLargeError(f"{batch} entries in one delivery; send at most {MAX_BATCH}.")


def receive_feedback(session: Session, actor: User, project_id: int, entries: list[FeedbackIn]) -> dict[str, Any]:
    """Store new feedback entries as crowd items; report what was created, merged and already known."""
    _device_project(session, actor, project_id, len(entries))
    _check_versions(session, project_id, {entry.model_version for entry in entries})
    fields = session.scalar(select(Project.fields).where(Project.id == project_id))
    cut = [_within_fields(entry, fields) for entry in entries]
    kept = [entry for entry in cut if has_content(entry.data)]
    fresh = _unseen(session, project_id, _unique_by_client(kept))
    created = _insert_items(session, project_id, fresh)
    item_ids = _item_ids(session, project_id, [content_hash(e.data) for e in fresh])
    rows = [_feedback_row(project_id, actor, entry, item_ids) for entry in fresh]
    if rows:
        insert = dialect_insert(session, EdgeFeedback).values(rows)
        session.execute(insert.on_conflict_do_nothing(index_elements=["project_id", "client_id"]))
    if created:
        reset = update(ProjectWorker).where(ProjectWorker.project_id == project_id)  # workers see them next
        session.execute(reset.values(cursor_priority=None, cursor_item=None))
        _reopen_if_finished(session, project_id, created)
    known = len(kept) - len(fresh)
    return {"received": len(entries), "created": created, "merged": len(fresh) - created, "already_received": known,
            "outside_fields": len(entries) - len(kept)}  # fmt: skip


def _within_fields(entry: FeedbackIn, fields: list[str] | None) -> FeedbackIn:
    """The entry with its item cut to the project's fields, as an import is held to them: an edge
    item carries whatever the app sent ``/predict`` (a request id, the app's own answer column),
    and workers were shown all of it. A project with no fields yet loses what looks like a gold
    answer. An entry left with nothing to label is not stored (``outside_fields``)."""
    if fields is None:
        data = {name: value for name, value in entry.data.items() if not looks_like_gold_answer(name)}
    else:
        data = {name: value for name, value in entry.data.items() if name in fields}
    return entry if data == entry.data else entry.model_copy(update={"data": data})


def _reopen_if_finished(session: Session, project_id: int, created: int) -> None:
    """A project that finished because every item was labeled goes back to work for the items an
    edge sent: they were created and then never handed out, though the crowd is to label them first.
    One its owner finished by hand (to stop spending), paused or left a draft stays as it is."""
    reopened = session.scalar(
        update(Project)
        .where(Project.id == project_id, Project.status == "finished", Project.finished_by == "rule")
        .values(status="active", finished_by=None)
        .returning(Project.id)
    )
    if reopened is not None:
        log.info("project %s reopened for %d item(s) its edge devices sent back", project_id, created)


def _check_versions(session: Session, project_id: int, versions: set[int]) -> None:
    """Every model version named is one of the project's: feedback from an unknown model is refused whole."""
    mine = ModelVersion.project_id == project_id
    query = select(ModelVersion.version).where(mine, ModelVersion.version.in_(versions))
    unknown = sorted(versions - set(session.scalars(query)))
    if unknown:
        raise InvalidInputError(f"project {project_id} has no model version {unknown[0]}; nothing was stored.")


def _unique_by_client(entries: list[FeedbackIn]) -> list[FeedbackIn]:
    return list({entry.client_id: entry for entry in entries}.values())


def _unseen(session: Session, project_id: int, entries: list[FeedbackIn]) -> list[FeedbackIn]:
    ids = [entry.client_id for entry in entries]
    query = select(EdgeFeedback.client_id).where(EdgeFeedback.project_id == project_id, EdgeFeedback.client_id.in_(ids))
    seen = set(session.scalars(query))
    return [entry for entry in entries if entry.client_id not in seen]


def _item_row(project_id: int, entry: FeedbackIn) -> dict[str, Any]:
    data = normalize_fields(entry.data)
    return {
        "project_id": project_id,
        "external_id": f"edge:{entry.client_id}",
        "data": data,
        "content_hash": content_hash(data),
        "priority": EDGE_PRIORITY + (1.0 - entry.confidence),
        "source": "edge",
        "is_gold": False,
        "gold_label": None,  # JSON null, as the ORM and the importer store a missing gold label
        "gold_explanation": None,
    }


def _insert_items(session: Session, project_id: int, entries: list[FeedbackIn]) -> int:
    """Insert the entries' items, skipping content the project has; how many were new. Each new
    item is indexed for near duplicates as an imported one is (its signature and LSH band keys),
    so a later import finds it, and it is marked when it is much like an item already there."""
    rows = list({row["content_hash"]: row for row in (_item_row(project_id, e) for e in entries)}.values())
    if not rows:
        return 0
    signatures = minhash_signatures([item_text(row["data"]) for row in rows], num_perm=NEAR_PERM)
    for row, packed in zip(rows, pack_signatures(signatures), strict=True):
        row["minhash"] = packed
    statement = dialect_insert(session, Item).values(rows)
    statement = statement.on_conflict_do_nothing(index_elements=["project_id", "content_hash"])
    created = session.execute(statement.returning(Item.id, Item.content_hash)).all()
    position = {row["content_hash"]: k for k, row in enumerate(rows)}
    new = [position[key] for _, key in created]
    pairs = index_and_find(session, project_id, [int(item_id) for item_id, _ in created], signatures[new])
    mark_near_duplicates(session, pairs)
    return len(created)


def _item_ids(session: Session, project_id: int, hashes: list[str]) -> dict[str, int]:
    query = select(Item.content_hash, Item.id).where(Item.project_id == project_id, Item.content_hash.in_(hashes))
    return {key: int(item_id) for key, item_id in session.execute(query)}


def _feedback_row(project_id: int, actor: User, entry: FeedbackIn, item_ids: dict[str, int]) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "client_id": entry.client_id,
        "item_id": item_ids.get(content_hash(entry.data)),
        "device_id": actor.id,
        "model_version": entry.model_version,
        "reason": entry.reason,
        "label": entry.label,
        "confidence": entry.confidence,
    }


def receive_telemetry(
    session: Session, actor: User, project_id: int, batches: list[TelemetryIn], registry_dir: Path | None = None
) -> dict[str, Any]:
    """Keep new telemetry batches (one row per batch and version); report how many were new.

    With the registry's directory, each reported version whose unchecked window now holds
    enough predictions is checked for drift (a ``drift`` event and webhook when it drifted).
    """
    _device_project(session, actor, project_id, len(batches))
    _check_versions(session, project_id, {batch.model_version for batch in batches})
    rows = [_telemetry_row(project_id, actor, batch) for batch in {b.client_id: b for b in batches}.values()]
    if not rows:
        return {"received": 0, "stored": 0}
    statement = dialect_insert(session, EdgeTelemetry).values(rows)
    statement = statement.on_conflict_do_nothing(index_elements=["project_id", "batch_id"]).returning(EdgeTelemetry.id)
    stored = len(session.execute(statement).all())
    result: dict[str, Any] = {"received": len(batches), "stored": stored, "already_received": len(rows) - stored}
    if registry_dir is not None and stored:
        result["drift"] = _check_drift(session, project_id, {batch.model_version for batch in batches}, registry_dir)
    return result


def _check_drift(session: Session, project_id: int, versions: set[int], registry_dir: Path) -> list[str]:
    """The statuses of the drift checks that ran. A version that cannot be compared (its training
    items are gone, say) is logged and skipped: a drift check never costs a device its telemetry."""
    try:
        with session.begin_nested():
            checks = check_due(session, project_id, versions, registry_dir)
    except CrowdloopError as error:
        log.warning("drift check of project %s skipped: %s", project_id, error)
        return []
    return [check["status"] for check in checks if check["event_id"] is not None]


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _telemetry_row(project_id: int, actor: User, batch: TelemetryIn) -> dict[str, Any]:
    summary = batch.model_dump(
        include={"class_counts", "confidence_histogram", "confidence_sample", "latency_mean_s", "input_stats"}
    )
    return {
        "project_id": project_id,
        "batch_id": batch.client_id,
        "device_id": actor.id,
        "model_version": batch.model_version,
        "predictions": batch.predictions,
        "confidence_mean": batch.confidence_mean,
        "summary": summary,
        "started_at": _when(batch.started_at),
        "ended_at": _when(batch.ended_at),
    }


def telemetry_of(session: Session, project_id: int, model_version: int | None = None) -> list[EdgeTelemetry]:
    """The stored batches of a project (of one version), oldest first: the input of drift checks."""
    query = select(EdgeTelemetry).where(EdgeTelemetry.project_id == project_id)
    if model_version is not None:
        query = query.where(EdgeTelemetry.model_version == model_version)
    return list(session.scalars(query.order_by(EdgeTelemetry.id)))
