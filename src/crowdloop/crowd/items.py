"""Item import with cleaning: validation row by row, normalisation, exact duplicates merged
by content hash, near duplicates found by MinHash and reported. Idempotent: importing the
same file twice creates nothing the second time."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from crowdloop.crowd.dedup import (
    content_hash,
    has_content,
    item_text,
    minhash_signatures,
    normalize_fields,
    pack_signatures,
    unstorable_reason,
)
from crowdloop.crowd.formats import from_label_studio
from crowdloop.crowd.near_duplicates import NEAR_PERM, Pairs, index_and_find, mark_near_duplicates
from crowdloop.crowd.projects import get_owned_project
from crowdloop.crowd.schemas import ImportReport, ItemIn, RejectedRow
from crowdloop.errors import DataFileError
from crowdloop.storage.models import Item, Project, User, utcnow

RESERVED_COLUMNS = ("id", "task", "external_id", "gold_label", "gold_explanation", "priority")
"""Columns of a flat file that set up the item rather than hold its content: ``external_id``, or
``id`` or ``task`` (what crowd data sets call it, the bundled ones included), is the item's own id."""
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
    for number, line in enumerate(content.decode("utf-8-sig", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFileError(f"line {number} is not JSON: {error.msg}.") from None
        rows.append(value if isinstance(value, dict) else {"_invalid": value})
    return rows


def _csv_rows(content: bytes, sep: str) -> list[dict[str, Any]]:
    if b"\x00" in content:  # the parser silently cut a field at it
        raise DataFileError("the file holds NUL bytes: is it binary, or UTF-16? Save it as UTF-8 text.")
    _check_header(content, sep)
    try:
        # index_col=False: a row with one field more than the header (a trailing comma) must not
        # turn the first column into the index and shift every value one column to the left
        frame = pd.read_csv(io.BytesIO(content), sep=sep, dtype=str, keep_default_na=False, index_col=False,
                            skipinitialspace=True)  # fmt: skip
    except (ValueError, UnicodeDecodeError) as error:
        raise DataFileError(f"cannot read the CSV: {str(error).splitlines()[0]}") from None
    frame.columns = [_column(k) for k in frame.columns]
    return [_flat_to_item({str(k): v for k, v in row.items()}) for row in frame.to_dict(orient="records")]


def _check_header(content: bytes, sep: str) -> None:
    """A header that names a column twice (``text,text``, or ``ID`` and ``id``) is an error: pandas
    renamed the second ``text.1``, and it became a field of its own."""
    first = content.decode("utf-8-sig", errors="replace").splitlines()[:1]
    header = next(csv.reader(first, delimiter=sep, skipinitialspace=True), [])
    names = [_column(name) for name in header]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise DataFileError(f"the header names column(s) {', '.join(map(repr, twice))} more than once.")


def _column(name: object) -> str:
    """A header cell: surrounding blanks dropped, reserved names matched whatever their case."""
    text = str(name).strip()
    return text.lower() if text.lower() in RESERVED_COLUMNS else text


def _flat_to_item(row: dict[str, Any]) -> dict[str, Any]:
    """A flat CSV row: reserved columns become item settings, the rest its data."""
    data = {k: v for k, v in row.items() if k not in RESERVED_COLUMNS}
    item: dict[str, Any] = {"data": data}
    external = row.get("external_id") or row.get("id") or row.get("task")
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
    created, pairs = _insert(session, project, [(key, item) for key, (_, item) in unique.items()])
    report.created = len(created)
    report.duplicates += len(unique) - report.created
    _gold_for_items_already_there(session, project, {key: row for key, row in unique.items() if key not in created},
                                  report)  # fmt: skip
    mark_near_duplicates(session, pairs)
    report.near_duplicates = sorted(pairs)
    return report


def _validated(rows: Sequence[dict[str, Any]], project: Project, report: ImportReport) -> list[tuple[int, ItemIn]]:
    """The rows that make items, each with its number (from 1); the others go to ``report.rejected``."""
    valid = []
    for number, row in enumerate(rows, start=1):
        reason = _problem(row, project)
        if reason is None:
            try:
                valid.append((number, ItemIn.model_validate(row)))
                continue
            except ValidationError as error:
                first = error.errors()[0]
                reason = f"{'.'.join(map(str, first['loc'])) or 'row'}: {first['msg']}"
        report.rejected.append(RejectedRow(row=number, reason=reason))
    return valid


def _problem(row: Any, project: Project) -> str | None:
    if not isinstance(row, dict) or "_invalid" in row:
        return "not an object"
    if not has_content(row.get("data")):
        return "empty item: no field has content"
    unstorable = unstorable_reason(row)
    if unstorable:
        return unstorable
    gold = row.get("gold_label")
    if gold not in (None, "") and str(gold) not in project.labels:
        return f"gold label {gold!r} is not one of the project's labels {project.labels}"
    return None


def _first_of_each_hash(items: list[tuple[int, ItemIn]], report: ImportReport) -> dict[str, tuple[int, ItemIn]]:
    """One row per content, by content hash, in file order. A repeat merges into the first, and
    its gold label goes to a first that has none; a repeat whose gold label contradicts the
    first's is rejected (the second label used to vanish without a word)."""
    seen: dict[str, tuple[int, ItemIn]] = {}
    for number, item in items:
        item.data = normalize_fields(item.data)
        key = content_hash(item.data)
        if key not in seen:
            seen[key] = (number, item)
            continue
        first_number, first = seen[key]
        if _gold(item) and _gold(first) and item.gold_label != first.gold_label:
            reason = f"the same item as row {first_number}, whose gold label is {first.gold_label!r}, "
            reason += f"not {item.gold_label!r}"
            report.rejected.append(RejectedRow(row=number, reason=reason))
            continue
        if _gold(item) and not _gold(first):
            first.gold_label, first.gold_explanation = item.gold_label, item.gold_explanation
        report.duplicates += 1
    return seen


def _gold(item: ItemIn) -> bool:
    return item.gold_label not in (None, "")


def _gold_for_items_already_there(
    session: Session, project: Project, rows: dict[str, tuple[int, ItemIn]], report: ImportReport
) -> None:
    """A row with a gold label whose item the project already has makes that item gold (importing
    a gold file over the items was silently a no-op); a row that contradicts the gold an item has
    is rejected. Locked in id order, as every writer of several items takes them."""
    wanted = {key: row for key, row in rows.items() if _gold(row[1])}
    if not wanted:
        return
    query = (
        select(Item)
        .where(Item.project_id == project.id, Item.content_hash.in_(list(wanted)))
        .order_by(Item.id)
        .with_for_update(key_share=True)
    )
    for item in session.scalars(query):
        number, row = wanted[item.content_hash]
        if item.is_gold and item.gold_label != row.gold_label:
            reason = f"item {item.id} is gold already, with label {item.gold_label!r}, not {row.gold_label!r}"
            report.rejected.append(RejectedRow(row=number, reason=reason))
            report.duplicates -= 1  # rejected, not merged: each row is counted once
        elif not item.is_gold:
            item.is_gold, item.gold_label, item.done = True, row.gold_label, False  # a control item from now on
            item.gold_explanation = row.gold_explanation or item.gold_explanation
            report.gold_added += 1
    report.rejected.sort(key=lambda rejected: rejected.row)


def _insert(session: Session, project: Project, items: list[tuple[str, ItemIn]]) -> tuple[set[str], Pairs]:
    """Bulk insert, skipping hashes the project already has, in batches; each batch's new
    items are indexed for near duplicates and compared with everything stored before them.
    Returns the content hashes of the items created and the near-duplicate pairs."""
    created: set[str] = set()
    pairs: Pairs = []
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:  # one import per project at a time: two overlapping files wait instead of deadlocking
        session.execute(_IMPORT_LOCK, {"space": _LOCK_SPACE, "project": project.id})
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        signatures = minhash_signatures([item_text(item.data) for _, item in batch], num_perm=NEAR_PERM)
        packed = pack_signatures(signatures)
        values = [_row(project.id, key, item, packed[k]) for k, (key, item) in enumerate(batch)]
        ids = _copy_insert(session, values) if postgres else _executemany_insert(session, values)
        position = {key: k for k, (key, _) in enumerate(batch)}
        rows = [position[key] for _, key in ids]
        pairs += index_and_find(session, project.id, [item_id for item_id, _ in ids], signatures[rows])
        created.update(key for _, key in ids)
    return created, pairs


def _executemany_insert(session: Session, values: list[dict[str, Any]]) -> list[tuple[int, str]]:
    statement = sqlite.insert(Item).on_conflict_do_nothing(index_elements=["project_id", "content_hash"])
    # executemany with RETURNING: SQLAlchemy batches it as multi-row INSERTs ("insertmanyvalues")
    rows = session.execute(statement.returning(Item.id, Item.content_hash), values).all()
    return [(int(row.id), str(row.content_hash)) for row in rows]


_COPY_COLUMNS = (
    "project_id", "external_id", "data", "content_hash", "is_gold", "gold_label", "gold_explanation",
    "priority", "answer_count", "reserved", "done", "source", "created_at", "minhash",
)  # fmt: skip


_IMPORT_LOCK = text("SELECT pg_advisory_xact_lock(:space, :project)")
_LOCK_SPACE = 0x696D_7074  # "impt": the advisory-lock key space of imports


def _copy_insert(session: Session, values: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT ... ON CONFLICT.

    COPY skips building a statement with tens of thousands of parameters, which is what
    limits a multi-row INSERT; the conflict rule still makes the import idempotent.
    """
    import psycopg  # the PostgreSQL driver: only on this path

    columns = ", ".join(_COPY_COLUMNS)
    now = utcnow().replace(tzinfo=None)
    raw = session.connection().connection.driver_connection
    if raw is None:
        raise RuntimeError("no driver connection for COPY")
    try:
        with raw.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE IF NOT EXISTS item_import (LIKE items INCLUDING DEFAULTS) ON COMMIT DROP")
            cursor.execute("DELETE FROM item_import")
            with cursor.copy(f"COPY item_import ({columns}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(_copy_row(row, now))
            cursor.execute(
                f"INSERT INTO items ({columns}) SELECT {columns} FROM item_import "
                "ON CONFLICT (project_id, content_hash) DO NOTHING RETURNING id, content_hash"
            )
            return [(int(item_id), str(key)) for item_id, key in cursor.fetchall()]
    except psycopg.Error as error:  # as SQLAlchemy would wrap it, so the API maps deadlocks to 503
        raise DBAPIError("COPY import", None, error) from error


def _copy_row(row: dict[str, Any], now: datetime) -> tuple[Any, ...]:
    gold = json.dumps(row["gold_label"])  # JSON null, as the ORM stores a missing gold label
    return (
        row["project_id"], row["external_id"], json.dumps(row["data"], ensure_ascii=False), row["content_hash"],
        row["is_gold"], gold, row["gold_explanation"], row["priority"], 0, 0, False, "import", now, row["minhash"],
    )  # fmt: skip


def _row(project_id: int, key: str, item: ItemIn, minhash: bytes) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "external_id": item.external_id,
        "data": item.data,
        "content_hash": key,
        "is_gold": item.gold_label not in (None, ""),
        "gold_label": item.gold_label or None,
        "gold_explanation": item.gold_explanation,
        "priority": item.priority,
        "minhash": minhash,
    }


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
