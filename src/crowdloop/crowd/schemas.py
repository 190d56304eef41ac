"""Request and response shapes shared by the services, the HTTP API and the SDK."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from crowdloop.crowd.dedup import text_problem

MICROS = 1_000_000


def _storable(text: str) -> str:
    problem = text_problem(text)
    if problem is not None:
        raise PydanticCustomError("unstorable_text", "{problem}, which cannot be stored", {"problem": problem})
    return text


StorableStr = Annotated[str, AfterValidator(_storable)]
"""The type of every free-text field of the API: a NUL or a lone surrogate is a 422 that names the
field, where it was a 500 from PostgreSQL (or, on SQLite, a NUL stored)."""


def to_micros(amount: float | None) -> int | None:
    return None if amount is None else round(amount * MICROS)


def from_micros(micros: int | None) -> float | None:
    return None if micros is None else micros / MICROS


class QualityRules(BaseModel):
    """Toloka-style quality control; every rule is off when its value is None."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no NaN price or priority
    min_gold_accuracy: float | None = Field(None, ge=0, le=1, description="ban below this gold accuracy")
    min_gold_answers: int = Field(3, ge=1, description="...once the worker has this many gold answers")
    min_answer_seconds: float | None = Field(None, ge=0, description="answers faster than this are flagged")
    ban_after_fast_answers: int | None = Field(None, ge=1, description="ban after this many fast answers")
    max_skips_in_row: int | None = Field(None, ge=1, description="ban after this many skips in a row")
    max_answers_per_worker: int | None = Field(None, ge=1)
    qualification_gold: int | None = Field(
        None, ge=1, le=100,
        description="a qualification test: each worker's first tasks are this many gold questions (while gold "
        "they have not answered is left), so the gold rules and the stop rule judge them before any label rests "
        "on their answers",
    )  # fmt: skip
    training_feedback: bool = Field(True, description="show the right answer after a wrong gold answer")
    hold_back_quantile: float | None = Field(
        None, ge=0, lt=1,
        description="dynamic overlap: workers rated below the accuracy of this share of the crowd's answers "
        "(0.5: the better half keeps the work), or near chance, get only items no other worker can still "
        "take; judged again at every aggregation",
    )  # fmt: skip


ID_COLUMNS = ("external_id", "id", "task")
"""A flat file's column of the item's own id: ``external_id``, or ``id`` or ``task`` (what crowd data
sets call it, the bundled ones included), in that order of precedence."""
RESERVED_COLUMNS = (*ID_COLUMNS, "gold_label", "gold_explanation", "priority")
"""Columns of a flat file that set up the item rather than hold its content."""


def joined_name(name: str) -> str:
    """A column name as the import matches it: lower case, words joined by ``_`` (``Gold label``
    is ``gold_label``), so a declared field and a file's header are judged alike."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


ItemFields = Annotated[list[StorableStr], Field(min_length=1, max_length=1000)]


def check_item_fields(fields: list[str] | None) -> list[str] | None:
    """Declared item fields: distinct, non-blank names that are not a flat file's setting columns."""
    if fields is None:
        return None
    if any(not name.strip() for name in fields):
        raise ValueError("a field name cannot be blank")
    if len(set(fields)) != len(fields):
        raise ValueError("fields must be distinct")
    reserved = [name for name in fields if joined_name(name) in RESERVED_COLUMNS]
    if reserved:
        raise ValueError(f"{reserved} set items up ({', '.join(RESERVED_COLUMNS)}); they are not item fields")
    return fields


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no NaN price or priority
    name: StorableStr = Field(min_length=1, max_length=200)
    task_type: Literal["single_choice", "rating"] = Field(
        "single_choice", description="rating: the labels are the points of a numeric scale, e.g. 1..5"
    )
    labels: list[StorableStr] = Field(min_length=2, description="the label set, in display order")
    instructions: StorableStr = ""
    min_overlap: int = Field(1, ge=1, le=100)
    max_overlap: int = Field(3, ge=1, le=100)
    confidence_target: float = Field(0.95, gt=0.5, le=1.0)
    gold_share: float = Field(0.0, ge=0, lt=1)
    price: float = Field(0.0, ge=0, description="paid per accepted answer")
    budget: float | None = Field(None, ge=0)
    aggregation_method: StorableStr | None = Field(None, description="none: CROWDLOOP_DEFAULT_METHOD")
    lease_seconds: int = Field(600, ge=5, le=86_400)
    open_to_all: bool = True
    rules: QualityRules = Field(default_factory=QualityRules)
    fields: ItemFields | None = Field(
        None, description="the fields of its items; none: the first import declares them. An import row with "
        "another field is rejected, so a misspelt column never reaches workers"
    )  # fmt: skip

    _fields = field_validator("fields")(check_item_fields)

    @model_validator(mode="after")
    def _check(self) -> ProjectCreate:
        if self.max_overlap < self.min_overlap:
            raise ValueError("max_overlap must be at least min_overlap")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be distinct")
        if self.task_type == "rating" and not all(_is_number(label) for label in self.labels):
            raise ValueError("a rating project's labels must be the numbers of its scale")
        return self


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no NaN price or priority
    name: StorableStr | None = None
    instructions: StorableStr | None = None
    status: Literal["draft", "active", "paused", "finished"] | None = None
    min_overlap: int | None = Field(None, ge=1, le=100)
    max_overlap: int | None = Field(None, ge=1, le=100)
    confidence_target: float | None = Field(None, gt=0.5, le=1.0)
    gold_share: float | None = Field(None, ge=0, lt=1)
    price: float | None = Field(None, ge=0)
    budget: float | None = Field(None, ge=0)
    aggregation_method: StorableStr | None = None
    rules: QualityRules | None = None
    lease_seconds: int | None = Field(None, ge=5, le=86_400, description="for leases taken from now on")
    open_to_all: bool | None = Field(None, description="false: only the workers granted access see the project")
    fields: ItemFields | None = Field(None, description="the fields its items may have; items stored keep theirs")

    _fields = field_validator("fields")(check_item_fields)

    @model_validator(mode="after")
    def _check(self) -> ProjectUpdate:
        """Leaving a field out keeps it; ``null`` is a value only where it means something (a budget:
        no limit), so a settings form sending a cleared box is told which one, not given a 500."""
        cleared = sorted(name for name in self.model_fields_set - {"budget"} if getattr(self, name) is None)
        if cleared:
            raise ValueError(f"{', '.join(cleared)} cannot be null; leave it out to keep its value")
        return self


class ProjectOut(BaseModel):
    id: int
    name: str
    task_type: str
    labels: list[str]
    instructions: str
    status: str
    price: float
    min_overlap: int
    max_overlap: int
    confidence_target: float
    gold_share: float
    budget: float | None = None
    spent: float | None = None
    aggregation_method: str | None = None
    rules: dict[str, Any] | None = None
    lease_seconds: int | None = None
    open_to_all: bool | None = None
    fields: list[str] | None = None


class ItemIn(BaseModel):
    """One item to import: its fields, optional id, and for gold items the true label."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no NaN price or priority
    data: dict[str, Any]
    external_id: StorableStr | None = Field(None, max_length=200)
    gold_label: StorableStr | None = None
    gold_explanation: StorableStr | None = None
    priority: float = 0.0

    @field_validator("external_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        """A JSON Lines id written as a number (``{"external_id": 17}``) is that id, not an error."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class RejectedRow(BaseModel):
    row: int
    reason: str


class NearDuplicate(BaseModel):
    """A new item much like another of the project, named as the file names it: its row and id,
    and the other item's id (and row, when it came in the same file)."""

    item_id: int
    row: int = Field(description="the new item's row in the file, from 1")
    external_id: str | None
    similar_item_id: int
    similar_row: int | None = Field(description="the similar item's row, when this import brought it")
    similar_external_id: str | None
    similarity: float


class ImportReport(BaseModel):
    received: int = 0
    created: int = 0
    duplicates: int = 0
    gold_added: int = Field(0, description="items the project had already, made gold by a row of this import")
    rejected: list[RejectedRow] = Field(default_factory=list)
    near_duplicates: list[NearDuplicate] = Field(default_factory=list)


class TaskOut(BaseModel):
    """What a worker sees: never whether the item is gold, nor other answers, nor the item's id.

    Gold and regular items are handed out from separate queues, each newest first, and gold is
    usually imported as a block of its own: the ids out of sequence would be the gold ones (and
    training feedback would confirm their range). The assignment names the task instead."""

    assignment_id: int
    project_id: int
    data: dict[str, Any]
    labels: list[str]
    instructions: str
    expires_at: datetime


class SubmitIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no NaN price or priority
    label: StorableStr
    # at most a day, the longest lease: 1e300 s made the worker table's mean time and hourly pay nonsense
    seconds: float | None = Field(None, ge=0, le=86_400)


class SubmitOut(BaseModel):
    answer_id: int
    reward: float
    duplicate: bool = False
    label: str | None = Field(None, description="the answer recorded: on a duplicate, the first one's label")
    feedback: dict[str, Any] | None = None
    aggregate_project: int | None = Field(None, exclude=True, description="set when aggregation is due")


class WorkerStanding(BaseModel):
    project_id: int
    answers: int
    gold_answers: int | None = Field(description="shown only where the project gives training feedback")
    gold_accuracy: float | None
    earned: float
    banned: bool
