"""Item import with cleaning: validation row by row, normalisation, exact duplicates merged
by content hash, near duplicates found by MinHash and reported. Idempotent: importing the
same file twice creates nothing the second time."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from pydantic import ValidationError
from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crowdloop.crowd.dedup import (
    content_hash,
    minhash_signatures,
    near_duplicate_pairs,
    near_duplicates_of,
    normalize_fields,
)
from crowdloop.crowd.formats import from_label_studio
from crowdloop.crowd.projects import get_owned_project
from crowdloop.crowd.schemas import ImportReport, ItemIn, RejectedRow
from crowdloop.errors import DataFileError
from crowdloop.storage.models import Item, Project, User

RESERVED_COLUMNS = ("id", "external_id", "gold_label", "gold_explanation", "priority")
NEAR_DUPLICATE_LIMIT = 100_000
"""Existing items compared for near duplicates; larger projects compare within the import only."""
BATCH = 5_000


def parse_upload(content: bytes, filename: str) -> list[dict[str, Any]]:
    """Rows of an uploaded CSV, JSON Lines or Label Studio JSON file, as item dicts."""
    name = filename.lower()
    if name.endswith(".json"):
        return from_label_studio(content)
    if name.endswith((".jsonl", ".ndjson")):
        return _jsonl_rows(content)
    if name.endswith((".csv", ".tsv")):
        return _csv_rows(content, sep="\t" if name.endswith(".tsv") else ",")
    raise DataFileError(f"{filename}: unknown format; upload .csv, .tsv, .jsonl or Label Studio .json.")


def _jsonl_rows(content: bytes) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(content.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFileError(f"line {number} is not JSON: {error.msg}.") from None
        rows.append(value if isinstance(value, dict) else {"_invalid": value})
    return rows


def _csv_rows(content: bytes, sep: str) -> list[dict[str, Any]]:
    try:
        frame = pd.read_csv(io.BytesIO(content), sep=sep, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as error:
        raise DataFileError(f"cannot read the CSV: {str(error).splitlines()[0]}") from None
    return [_flat_to_item({str(k): v for k, v in row.items()}) for row in frame.to_dict(orient="records")]


def _flat_to_item(row: dict[str, Any]) -> dict[str, Any]:
    """A flat CSV row: reserved columns become item settings, the rest its data."""
    data = {k: v for k, v in row.items() if k not in RESERVED_COLUMNS}
    item: dict[str, Any] = {"data": data}
    external = row.get("external_id") or row.get("id")
    if external:
        item["external_id"] = str(external)
    for key in ("gold_label", "gold_explanation"):
        if row.get(key):
            item[key] = row[key]
    if row.get("priority"):
        item["priority"] = row["priority"]
    return item


def import_items(session: Session, actor: User, project_id: int, rows: Sequence[dict[str, Any]]) -> ImportReport:
    """Validate, clean and insert ``rows``; report what was created, merged and rejected."""
    project = get_owned_project(session, actor, project_id)
    report = ImportReport(received=len(rows))
    valid = _validated(rows, project, report)
    unique = _first_of_each_hash(valid, report)
    created = _insert(session, project, unique)
    report.created = len(created)
    report.duplicates += len(unique) - len(created)
    if created:
        report.near_duplicates = _near_duplicates(session, project, created)
    return report


def _validated(rows: Sequence[dict[str, Any]], project: Project, report: ImportReport) -> list[ItemIn]:
    valid = []
    for number, row in enumerate(rows, start=1):
        reason = _problem(row, project)
        if reason is None:
            try:
                valid.append(ItemIn.model_validate(row))
                continue
            except ValidationError as error:
                first = error.errors()[0]
                reason = f"{'.'.join(map(str, first['loc'])) or 'row'}: {first['msg']}"
        report.rejected.append(RejectedRow(row=number, reason=reason))
    return valid


def _problem(row: Any, project: Project) -> str | None:
    if not isinstance(row, dict) or "_invalid" in row:
        return "not an object"
    data = row.get("data")
    if not isinstance(data, dict) or not any(str(v).strip() for v in data.values()):
        return "empty item: no field has content"
    gold = row.get("gold_label")
    if gold not in (None, "") and str(gold) not in project.labels:
        return f"gold label {gold!r} is not one of the project's labels {project.labels}"
    return None


def _first_of_each_hash(items: list[ItemIn], report: ImportReport) -> list[tuple[str, ItemIn]]:
    seen: dict[str, ItemIn] = {}
    for item in items:
        item.data = normalize_fields(item.data)
        key = content_hash(item.data)
        if key in seen:
            report.duplicates += 1
        else:
            seen[key] = item
    return list(seen.items())


def _insert(session: Session, project: Project, items: list[tuple[str, ItemIn]]) -> list[tuple[int, str]]:
    """Bulk insert, skipping hashes the project already has; returns (id, text) of new rows."""
    created: list[tuple[int, str]] = []
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        values = [_row(project.id, key, item) for key, item in batch]
        statement = _insert_ignoring_duplicates(session.get_bind()).values(values)
        statement = statement.on_conflict_do_nothing(index_elements=["project_id", "content_hash"])
        ids = session.execute(statement.returning(Item.id, Item.content_hash)).all()
        by_hash = dict(batch)
        created += [(row.id, _text(by_hash[row.content_hash].data)) for row in ids]
    return created


def _insert_ignoring_duplicates(bind: Any) -> Any:
    dialect = bind.dialect.name if isinstance(bind, Engine) else bind.engine.dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Item)


def _row(project_id: int, key: str, item: ItemIn) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "external_id": item.external_id,
        "data": item.data,
        "content_hash": key,
        "is_gold": item.gold_label not in (None, ""),
        "gold_label": item.gold_label or None,
        "gold_explanation": item.gold_explanation,
        "priority": item.priority,
    }


def _text(data: dict[str, Any]) -> str:
    return " ".join(str(v) for v in data.values() if isinstance(v, str))


def _near_duplicates(
    session: Session, project: Project, created: list[tuple[int, str]]
) -> list[tuple[int, int, float]]:
    """Similar pairs among the new items and against the project's earlier items."""
    new_ids = [item_id for item_id, _ in created]
    texts = [text for _, text in created]
    pairs = [(new_ids[j], new_ids[i], s) for i, j, s in near_duplicate_pairs(texts)]
    earlier = _earlier_texts(session, project.id, min(new_ids))
    if earlier:
        old_ids, old_texts = zip(*earlier, strict=True)
        found = near_duplicates_of(texts, minhash_signatures(list(old_texts)))
        pairs += [(new_ids[i], old_ids[j], s) for i, j, s in found]
    _mark(session, pairs)
    return sorted(pairs)


def _earlier_texts(session: Session, project_id: int, first_new_id: int) -> list[tuple[int, str]]:
    query = (
        select(Item.id, Item.data)
        .where(Item.project_id == project_id, Item.id < first_new_id)
        .order_by(Item.id.desc())
        .limit(NEAR_DUPLICATE_LIMIT)
    )
    return [(row.id, _text(row.data)) for row in session.execute(query)]


def _mark(session: Session, pairs: Iterable[tuple[int, int, float]]) -> None:
    for new_id, other_id, _ in pairs:
        session.execute(update(Item).where(Item.id == new_id).values(near_duplicate_of=other_id))


def list_items(session: Session, actor: User, project_id: int, offset: int, limit: int) -> list[dict[str, Any]]:
    """A page of the project's items with their state, for the requester."""
    get_owned_project(session, actor, project_id)
    rows = session.scalars(
        select(Item).where(Item.project_id == project_id).order_by(Item.id).offset(offset).limit(limit)
    )
    return [
        {
            "id": item.id, "external_id": item.external_id, "data": item.data, "is_gold": item.is_gold,
            "gold_label": item.gold_label, "answers": item.answer_count, "done": item.done,
            "confidence": item.confidence, "priority": item.priority, "near_duplicate_of": item.near_duplicate_of,
        }
        for item in rows
    ]  # fmt: skip
