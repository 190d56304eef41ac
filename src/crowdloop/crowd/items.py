"""Item import with cleaning: validation row by row, normalisation, exact duplicates merged
by content hash, near duplicates found by MinHash and reported. Idempotent: importing the
same file twice creates nothing the second time."""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import ValidationError
from sqlalchemy import select, text, update
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
from crowdloop.crowd.schemas import (
    ID_COLUMNS,
    RESERVED_COLUMNS,
    ImportReport,
    ItemIn,
    NearDuplicate,
    RejectedRow,
    joined_name,
)
from crowdloop.errors import DataFileError
from crowdloop.io import csv_problem
from crowdloop.storage.models import Item, Project, User, utcnow

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
        except RecursionError:
            raise DataFileError(f"line {number} is nested too deeply to read.") from None
        rows.append(value if isinstance(value, dict) else {"_invalid": value})
    return rows


def _csv_rows(content: bytes, sep: str) -> list[dict[str, Any]]:
    if b"\x00" in content:  # the parser silently cut a field at it
        raise DataFileError("the file holds NUL bytes: is it binary, or UTF-16? Save it as UTF-8 text.")
    _check_shape(content, sep)
    try:
        # index_col=False: a row with one field more than the header (a trailing comma) must not
        # turn the first column into the index and shift every value one column to the left
        frame = pd.read_csv(io.BytesIO(content), sep=sep, dtype=str, keep_default_na=False, index_col=False,
                            skipinitialspace=True)  # fmt: skip
    except (ValueError, UnicodeDecodeError) as error:
        raise DataFileError(f"cannot read the CSV: {csv_problem(str(error).splitlines()[0])}") from None
    frame.columns = _gold_file_columns([_column(k) for k in frame.columns])
    return [_flat_to_item({str(k): v for k, v in row.items()}) for row in frame.to_dict(orient="records")]


def _gold_file_columns(columns: list[str]) -> list[str]:
    """A gold file as crowd data sets write it, an id and the answer (``task,label``, the bundled
    ``gold.csv`` files), is read as ``id,gold_label``: its answer column was refused as a field
    that looks like a gold answer, and the file did nothing."""
    ids = [name for name in columns if name in ID_COLUMNS]
    rest = [name for name in columns if name not in ids]
    if len(ids) == 1 and len(rest) == 1 and rest[0] != "gold_label" and looks_like_gold_answer(rest[0]):
        return [ids[0], "gold_label"] if columns[0] == ids[0] else ["gold_label", ids[0]]
    return columns


def _check_shape(content: bytes, sep: str) -> None:
    """A header that names a column twice (``text,text``, or ``ID`` and ``id``) is an error: pandas
    renamed the second ``text.1``, and it became a field of its own. So is a row with values past
    the header's columns (an unquoted ``Sony TV, 40 inch``): pandas kept ``Sony TV`` and dropped
    the rest without a word. Empty cells past the end (a trailing separator) are harmless."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # a long text is a value, not an error
    text = content.decode("utf-8-sig", errors="replace")  # newline=None: CR-only (Mac) files as pandas reads them
    rows = csv.reader(io.StringIO(text, newline=None), delimiter=sep,
                      skipinitialspace=True)  # fmt: skip
    header = next(rows, [])
    names = [_column(name) for name in header]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise DataFileError(f"the header names column(s) {', '.join(map(repr, twice))} more than once.")
    try:
        for row in rows:
            extra = [value for value in row[len(header) :] if value.strip()]
            if extra:
                raise DataFileError(
                    f"line {rows.line_num} has {len(row)} values but the header has {len(header)} columns, so "
                    f"{[value[:40] for value in extra[:5]]} would be lost: quote values that hold the separator."
                )
    except csv.Error as error:
        raise DataFileError(f"cannot read the CSV: line {rows.line_num}: {error}") from None


def _column(name: object) -> str:
    """A header cell: surrounding blanks dropped, reserved names matched whatever their case and
    however their words are joined (``Gold label``, ``gold-label``)."""
    text = str(name).strip()
    reserved = joined_name(text)
    return reserved if reserved in RESERVED_COLUMNS else text


GOLD_KEYS = ("gold_label", "gold_explanation")
"""A row's gold answer and its explanation: columns of a CSV row, keys beside ``data`` in a JSON one."""


def _flat_to_item(row: dict[str, Any]) -> dict[str, Any]:
    """A flat CSV row: reserved columns become item settings, the rest its data."""
    data = {k: v for k, v in row.items() if k not in RESERVED_COLUMNS}
    item: dict[str, Any] = {"data": data}
    external = next((row[name] for name in ID_COLUMNS if row.get(name)), None)
    if external:
        item["external_id"] = str(external)
    for key in GOLD_KEYS:
        if row.get(key):
            item[key] = row[key]
    if row.get("priority"):
        item["priority"] = row["priority"]
    return item


def import_items(session: Session, actor: User, project_id: int, rows: Sequence[dict[str, Any]]) -> ImportReport:
    """Validate, clean and insert ``rows``; report what was created, merged and rejected.

    Rows are items of the project's fields (declared when it was created, else by its first
    import); a row with only an id and a gold label makes the project's item of that id gold."""
    project = get_owned_project(session, actor, project_id)
    report = ImportReport(received=len(rows))
    valid, gold_by_id = _validated(rows, project, report)
    valid = _of_the_projects_fields(session, project, valid, report)
    unique = _first_of_each_hash(valid, report)
    created, pairs = _insert(session, project, [(key, item) for key, (_, item) in unique.items()])
    report.created = len(created)
    report.duplicates += len(unique) - report.created
    _gold_for_items_already_there(session, project, {key: row for key, row in unique.items() if key not in created},
                                  report)  # fmt: skip
    _gold_for_items_by_id(session, project, gold_by_id, report)
    mark_near_duplicates(session, pairs)
    made = {created[key]: row for key, row in unique.items() if key in created}
    report.near_duplicates = _named_pairs(session, pairs, made)
    return report


def _named_pairs(session: Session, pairs: Pairs, rows: dict[int, tuple[int, ItemIn]]) -> list[NearDuplicate]:
    """The pairs as the requester knows the items: by row and external id, not only by the ids
    the database gave them a moment ago (``rows``: item id to its row number and row)."""
    earlier = sorted({other for _, other, _ in pairs if other not in rows})
    external: dict[int, str | None] = {}
    for start in range(0, len(earlier), BATCH):  # a bound list of ids per statement, as inserts go
        chunk = earlier[start : start + BATCH]
        external.update(session.execute(select(Item.id, Item.external_id).where(Item.id.in_(chunk))).tuples().all())
    named = []
    for new_id, other_id, similarity in sorted(pairs):
        number, item = rows[new_id]
        other = rows.get(other_id)
        named.append(NearDuplicate(
            item_id=new_id, row=number, external_id=item.external_id, similar_item_id=other_id,
            similar_row=other[0] if other else None,
            similar_external_id=other[1].external_id if other else external.get(other_id), similarity=similarity,
        ))  # fmt: skip
    return named


def _validated(
    rows: Sequence[dict[str, Any]], project: Project, report: ImportReport
) -> tuple[list[tuple[int, ItemIn]], list[tuple[int, ItemIn]]]:
    """The rows that make items, and the rows that name an item by its id only to give it a gold
    label, each with its number (from 1); the others go to ``report.rejected``."""
    valid: list[tuple[int, ItemIn]] = []
    gold_by_id: list[tuple[int, ItemIn]] = []
    for number, row in enumerate(rows, start=1):
        reason = _problem(row, project)
        if reason is None or (reason == _EMPTY and row.get("external_id") and row.get("gold_label")):
            try:
                item = ItemIn.model_validate(row if reason is None else {**row, "data": row.get("data") or {}})
                (valid if reason is None else gold_by_id).append((number, item))
                continue
            except ValidationError as error:
                first = error.errors()[0]
                reason = f"{'.'.join(map(str, first['loc'])) or 'row'}: {first['msg']}"
        report.rejected.append(RejectedRow(row=number, reason=reason))
    return valid, gold_by_id


_EMPTY = "empty item: no field has content"


def _problem(row: Any, project: Project) -> str | None:
    if not isinstance(row, dict) or "_invalid" in row:
        return "not an object"
    unstorable = unstorable_reason(row)
    if unstorable:
        return unstorable
    gold = row.get("gold_label")
    if gold not in (None, "") and str(gold) not in project.labels:
        return f"gold label {gold!r} is not one of the project's labels {project.labels}"
    outside = sorted(set(row) - set(ItemIn.model_fields))
    if "data" not in row and outside:  # {"text": ...} for {"data": {"text": ...}}: "empty item" said nothing
        where = 'an item\'s fields go under "data", as {"data": {"text": ...}}'
        return f"{outside[:5]} are not settings of a row: {where}"
    if not has_content(row.get("data")):
        return _EMPTY
    return None


_GOLD_LIKE = re.compile(r"gold|truth|label|answer|^(y|y_true|correct|correct_.+|targets?|class)$")
"""Field names that look like a gold answer column which missed the name ``gold_label``: any name
holding gold, truth, label or answer (``final_label``, ``answer_key``, ``label_1``), and a few
that data science gives the answer column (``y_true``, ``target``, ``class``, ``correct``). Only
a project's first import declares fields, so a false alarm costs one declaration, which the
rejection says how to make; a miss shows workers the answer."""


def looks_like_gold_answer(name: str) -> bool:
    return bool(_GOLD_LIKE.search(joined_name(name)))


def _of_the_projects_fields(
    session: Session, project: Project, valid: list[tuple[int, ItemIn]], report: ImportReport
) -> list[tuple[int, ItemIn]]:
    """The rows whose fields are all the project's; the others are rejected, naming the fields.

    A misspelt header (``txt`` for ``text``), or the gold answer in a column not named
    ``gold_label``, made items of whatever they held: workers were shown the answer, and a model
    took it as a feature. A project without fields gets those of its first import, less any that
    looks like a gold answer (which only an explicit declaration accepts)."""
    declared = project.fields if project.fields is not None else _declare(session, project, valid)
    known = set(declared or ())
    kept = []
    for number, item in valid:
        unknown = [name for name in item.data if name not in known]
        if not unknown:
            kept.append((number, item))
            continue
        gold_like = [name for name in unknown if looks_like_gold_answer(name)]
        misplaced = [name for name in unknown if name in GOLD_KEYS]
        if "worker" in unknown and _looks_like_answers(item.data):  # each row was told about its label
            label = next(name for name in item.data if looks_like_gold_answer(name))  # maybe a declared field
            reason = (
                f"fields 'worker' and {label!r} look like crowd answers (task, worker, label), not items: "
                "items are what workers are shown; infer labels from answers with crowdloop aggregate FILE"
            )
        elif misplaced:  # a JSON row's gold answer inside "data": the advice below named the key it had
            reason = (
                f'field {misplaced[0]!r} is inside "data", where workers would be shown it: put it at the '
                'top level of the row, beside "data", to make the item gold'
            )
        elif gold_like:
            reason = (
                f"field {gold_like[0]!r} looks like the gold answer, which workers would be shown: name the "
                "column gold_label to make the item gold (or declare the field in the project's fields)"
            )
        else:
            reason = (
                f"field(s) {unknown} are not the project's fields {declared}{_did_you_mean(unknown, declared)}: "
                "rename the column(s), or add them to the project's fields (PATCH /projects/{id} with fields)"
            )
        report.rejected.append(RejectedRow(row=number, reason=reason))
    return kept


def _looks_like_answers(data: dict[str, Any]) -> bool:
    """Whether a row is a crowd answer (task, worker, label) rather than an item."""
    return "worker" in data and any(looks_like_gold_answer(name) for name in data)


def _did_you_mean(unknown: list[str], declared: list[str] | None) -> str:
    """`` (did you mean 'text' for 'txt'?)``: a name a slip away from a declared one, case included."""
    lowered = {name.lower(): name for name in declared or ()}
    for name in unknown:
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        if close:
            return f" (did you mean {lowered[close[0]]!r} for {name!r}?)"
    return ""


def _declare(session: Session, project: Project, valid: list[tuple[int, ItemIn]]) -> list[str] | None:
    """The first import's fields, in the order they first appear, as the project's (None: none).
    Declared only where no other import did at the same moment; then that one's stand."""
    rows = [item.data for _, item in valid if not _looks_like_answers(item.data)]  # they declared 'worker'
    names = list(dict.fromkeys(name for data in rows for name in data if not looks_like_gold_answer(name)))
    if not names:
        return None
    session.execute(update(Project).where(Project.id == project.id, Project.fields.is_(None)).values(fields=names))
    session.refresh(project, ["fields"])
    return project.fields


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
        if not _make_gold(item, number, row, report):
            report.duplicates -= 1  # rejected, not merged: each row is counted once
    report.rejected.sort(key=lambda rejected: rejected.row)


def _gold_for_items_by_id(
    session: Session, project: Project, rows: list[tuple[int, ItemIn]], report: ImportReport
) -> None:
    """Rows of only an id and a gold label (a gold file of ``id,gold_label``) make the project's
    items of that id gold: such a file was rejected row by row as "empty item"."""
    if not rows:
        return
    wanted = {str(row.external_id) for _, row in rows}
    query = (
        select(Item)
        .where(Item.project_id == project.id, Item.external_id.in_(sorted(wanted)))
        .order_by(Item.id)
        .with_for_update(key_share=True)
    )
    by_id: dict[str, list[Item]] = {}
    for item in session.scalars(query):
        by_id.setdefault(str(item.external_id), []).append(item)
    for number, row in rows:
        items = by_id.get(str(row.external_id), [])
        if not items:
            reason = f"no item with id {row.external_id!r} in project {project.id}, and no fields to make one of"
            report.rejected.append(RejectedRow(row=number, reason=reason))
            continue
        conflicting = [item for item in items if item.is_gold and item.gold_label != row.gold_label]
        if conflicting:
            _make_gold(conflicting[0], number, row, report)  # the row is rejected, naming the item
            continue
        report.duplicates += all(item.is_gold for item in items)  # a repeated gold file changes nothing
        for item in items:
            _make_gold(item, number, row, report)
    report.rejected.sort(key=lambda rejected: rejected.row)


def _make_gold(item: Item, number: int, row: ItemIn, report: ImportReport) -> bool:
    """``item`` gold with ``row``'s label (``gold_added``); False, with the row rejected, when it
    is gold already with another label. Workers' gold answers were judged by that one."""
    if item.is_gold and item.gold_label != row.gold_label:
        reason = f"item {item.id} is gold already, with label {item.gold_label!r}, not {row.gold_label!r}"
        report.rejected.append(RejectedRow(row=number, reason=reason))
        return False
    if not item.is_gold:
        item.is_gold, item.gold_label, item.done = True, row.gold_label, False  # a control item from now on
        item.gold_explanation = row.gold_explanation or item.gold_explanation
        report.gold_added += 1
    return True


def _insert(session: Session, project: Project, items: list[tuple[str, ItemIn]]) -> tuple[dict[str, int], Pairs]:
    """Bulk insert, skipping hashes the project already has, in batches; each batch's new
    items are indexed for near duplicates and compared with everything stored before them.
    Returns the ids of the items created by content hash, and the near-duplicate pairs."""
    created: dict[str, int] = {}
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
        created.update((key, item_id) for item_id, key in ids)
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
