"""SQLAlchemy models: the platform's tables (SQLite and PostgreSQL alike).

Money is kept in integer micro-units (1e-6 of the currency) so sums are exact;
the API speaks in decimal amounts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

ROLES = ("admin", "requester", "worker", "device")
PROJECT_STATUSES = ("draft", "active", "paused", "finished")
TASK_TYPES = ("single_choice", "rating")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python, naive UTC in the database: same on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime()}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    task_type: Mapped[str] = mapped_column(String(20), default="single_choice")
    labels: Mapped[list[Any]] = mapped_column(default=list)
    instructions: Mapped[str] = mapped_column(Text, default="")
    min_overlap: Mapped[int] = mapped_column(Integer, default=1)
    max_overlap: Mapped[int] = mapped_column(Integer, default=3)
    confidence_target: Mapped[float] = mapped_column(Float, default=0.95)
    gold_share: Mapped[float] = mapped_column(Float, default=0.0)
    price_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    budget_micros: Mapped[int | None] = mapped_column(BigInteger, default=None)
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    aggregation_method: Mapped[str] = mapped_column(String(40), default="default")
    status: Mapped[str] = mapped_column(String(20), default="draft")
    # "rule" when the last open item got its label, "owner" when finished by hand, else None
    finished_by: Mapped[str | None] = mapped_column(String(20), default=None)
    lease_seconds: Mapped[int] = mapped_column(Integer, default=600)
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    open_to_all: Mapped[bool] = mapped_column(Boolean, default=True)
    answers_total: Mapped[int] = mapped_column(Integer, default=0)
    answers_since_aggregation: Mapped[int] = mapped_column(Integer, default=0)
    # label -> share, as the latest aggregation estimated it: dynamic overlap's class prior
    label_prior: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # the stop rule's crowd model at the latest aggregation: a newcomer's confusion matrix and
    # the skill bar (see crowd/stop_rule.py)
    crowd_model: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # the fields of its items, declared at creation or by the first import; None: no item yet
    fields: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectAccess(Base):
    """Workers allowed on a project that is not open to all."""

    __tablename__ = "project_access"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("project_id", "content_hash", name="uq_items_project_hash"),
        # The assignment queue: walked backwards, (priority, id) descending, without a sort.
        Index("ix_items_queue", "project_id", "done", "is_gold", "priority", "id"),
        Index("ix_items_external_id", "project_id", "external_id"),  # a gold file may name items by id
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_label: Mapped[Any] = mapped_column(JSON, default=None)
    gold_explanation: Mapped[str | None] = mapped_column(Text, default=None)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    answer_count: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    near_duplicate_of: Mapped[int | None] = mapped_column(BigInteger, default=None)
    source: Mapped[str] = mapped_column(String(40), default="import")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The MinHash signature (crowd.dedup.pack_signatures), so later imports compare with this
    # item without re-reading and re-hashing its text.
    minhash: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)


class ItemLshBand(Base):
    """One LSH band key of an imported item: a later import finds its near-duplicate
    candidates among all the project's items with one index lookup per key of its own.

    The primary key is the lookup index (``item_id`` in it makes the lookup index-only; on
    SQLite the table is the index, ``WITHOUT ROWID``). No foreign keys: checking them row by
    row would cost as much as the insert itself (eight rows per item); rows of a deleted item
    are ignored, because candidates are read back joined to ``items`` of the same project.
    """

    __tablename__ = "item_lsh_bands"
    __table_args__ = ({"sqlite_with_rowid": False},)
    project_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    band_key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    item_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class Assignment(Base):
    """A leased item: one worker, one item, at most once ever."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "worker_id", name="uq_assignment_item_worker"),
        Index("ix_assignments_lease", "project_id", "status", "expires_at"),
        Index("ix_assignments_worker", "worker_id", "project_id", "status"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    worker_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(12), default="leased")  # leased|submitted|skipped|expired
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (
        Index("ix_answers_project", "project_id", "id"),
        Index("ix_answers_project_time", "project_id", "created_at"),  # the dashboard's recent answers
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[Any] = mapped_column(JSON)
    seconds: Mapped[float | None] = mapped_column(Float, default=None)
    reward_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    flagged: Mapped[str | None] = mapped_column(String(100), default=None)
    # Whether the item was gold when the answer was given, so it counted in the worker's gold
    # record: a review decision or a gold file makes an item gold after some answers on it.
    gold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ItemLabel(Base):
    """The aggregated label of an item, with where it came from."""

    __tablename__ = "item_labels"
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    label: Mapped[Any] = mapped_column(JSON)
    confidence: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(40))
    aggregated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectWorker(Base):
    """A worker's standing on one project: counts, reliability, ban, skips."""

    __tablename__ = "project_workers"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    answers: Mapped[int] = mapped_column(Integer, default=0)
    gold_answers: Mapped[int] = mapped_column(Integer, default=0)
    gold_correct: Mapped[int] = mapped_column(Integer, default=0)
    skips_in_row: Mapped[int] = mapped_column(Integer, default=0)
    fast_answers: Mapped[int] = mapped_column(Integer, default=0)
    reliability: Mapped[float | None] = mapped_column(Float, default=None)
    earned_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    banned: Mapped[bool] = mapped_column(Boolean, default=False)
    # the stop rule's view of the worker at the latest aggregation: their confusion matrix
    # (rows: true label, columns: answer) and whether they are held back (crowd/stop_rule.py)
    confusion: Mapped[list[Any] | None] = mapped_column(default=None)
    held_back: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Where the worker is in the assignment queue: the (priority, item id) last leased to them.
    cursor_priority: Mapped[float | None] = mapped_column(Float, default=None)
    cursor_item: Mapped[int | None] = mapped_column(BigInteger, default=None)


class BanEvent(Base):
    """Every ban and unban, with its reason: the audit trail."""

    __tablename__ = "ban_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(10))  # ban | unban
    reason: Mapped[str] = mapped_column(Text)
    by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Bonus(Base):
    __tablename__ = "bonuses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    worker_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AggregationRun(Base):
    __tablename__ = "aggregation_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(12), default="running")  # running|done|failed|superseded
    answers: Mapped[int] = mapped_column(Integer, default=0)
    labels: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class Webhook(Base):
    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(80))
    events: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # failed tries in a row, of any of its deliveries
    retry_at: Mapped[datetime | None] = mapped_column(default=None)  # none of its deliveries is sent before
    failing_since: Mapped[datetime | None] = mapped_column(default=None)  # the first of ``failures``


class WebhookDelivery(Base):
    """The outbox: one row per event per webhook, retried with back-off until delivered."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_deliveries_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class ModelVersion(Base):
    """One trained model of a project: its metrics, its lineage and where its artifact lies.

    ``artifact_path`` is relative to the registry's directory (``CROWDLOOP_DATA_DIR``/models), so
    a data directory can move; ``artifact_digest`` (SHA-256 over the artifact's files) lets an
    edge device check what it pulled.
    """

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("project_id", "version", name="uq_model_versions_project_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    family: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)
    artifact_path: Mapped[str] = mapped_column(Text)
    artifact_digest: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAlias(Base):
    """A moving name (``production``, ``candidate``) for one version of a project's model."""

    __tablename__ = "model_aliases"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(20), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelEvent(Base):
    """What happened to a project's models, in order: registered, promoted, rejected, drift."""

    __tablename__ = "model_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), default=None)
    kind: Mapped[str] = mapped_column(String(20))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EdgeFeedback(Base):
    """An input an edge device sent back (unsure, or an audit sample): which item it became.

    ``client_id`` is the device's id for the entry, unique per project, so a retried delivery
    creates nothing twice; the item itself has ``source = "edge"``.
    """

    __tablename__ = "edge_feedback"
    __table_args__ = (UniqueConstraint("project_id", "client_id", name="uq_edge_feedback_client"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"), default=None)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    model_version: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(12))  # unsure | audit
    label: Mapped[Any] = mapped_column(JSON, nullable=True, default=None)
    confidence: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EdgeTelemetry(Base):
    """One telemetry batch of an edge device for one model version (what drift needs).

    ``summary`` holds the batch's class counts, 20-bin confidence histogram, confidence
    sample and input statistics; ``batch_id`` (the device's id) makes delivery idempotent.
    """

    __tablename__ = "edge_telemetry"
    __table_args__ = (
        UniqueConstraint("project_id", "batch_id", name="uq_edge_telemetry_batch"),
        Index("ix_edge_telemetry_version", "project_id", "model_version"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    batch_id: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)
    model_version: Mapped[int] = mapped_column(Integer)
    predictions: Mapped[int] = mapped_column(Integer)
    confidence_mean: Mapped[float] = mapped_column(Float)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
