"""Streaming export encoders (CSV, JSON Lines, Parquet) and Label Studio interchange.

An export of a large project can have a million rows. Every encoder here takes an
iterator of plain dict rows and yields ``bytes`` chunks, one per batch, so an HTTP route
can stream the export while holding at most one batch in memory. Nothing here touches
the database: the service hands in rows, the route hands the chunks to the client.

Label Studio's JSON task format is supported both ways so users can move their data
between the two tools: :func:`to_label_studio` exports tasks with the workers' answers
as annotations and the aggregated label as a prediction, :func:`from_label_studio`
imports labeled tasks as gold items.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, time
from itertools import islice
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from crowdloop.errors import DataFileError, InvalidInputError, InvalidParameterError, MissingColumnsError

Row = Mapping[str, Any]

FORMATS: dict[str, tuple[str, str]] = {
    "csv": ("text/csv; charset=utf-8", ".csv"),
    "jsonl": ("application/x-ndjson", ".jsonl"),
    "parquet": ("application/vnd.apache.parquet", ".parquet"),
}
"""Export format name -> (media type for ``Content-Type``, file extension with its dot)."""

MODEL_VERSION = "crowdloop-aggregate"
"""The ``model_version`` of the prediction that carries the aggregated label in Label Studio."""


# --- shared helpers -------------------------------------------------------------------------


def _json_default(value: Any) -> str:
    """Encode what ``json`` cannot (dates, decimals, UUIDs) as text, so one odd value
    does not abort an export that is already half streamed."""
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _dumps(value: Any) -> str:
    """Compact UTF-8 JSON: non-ASCII stays readable and the output is smaller."""
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _flat(value: Any) -> Any:
    """A cell value for a flat table: nested dicts and lists become JSON text, since
    CSV has no nesting and Parquet structs would differ in shape from row to row."""
    return _dumps(value) if isinstance(value, dict | list) else value


def _batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    """Consecutive lists of at most ``size`` rows, pulled lazily (``itertools.batched``
    needs Python 3.12)."""
    if size < 1:
        raise InvalidParameterError(f"batch_size must be at least 1; got {size}.")
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def _pick(row: Row, columns: list[str], index: int) -> list[Any]:
    """The row's values in column order, or an error naming the row and the column."""
    try:
        return [_flat(row[name]) for name in columns]
    except KeyError as exc:
        raise MissingColumnsError(f"row {index} has no column {exc.args[0]!r}.") from None


def _table(batch: list[Row], columns: list[str], start: int) -> list[list[Any]]:
    """A batch as a list of value lists, row ``start + i`` being ``batch[i]``."""
    return [_pick(row, columns, start + offset) for offset, row in enumerate(batch)]


# --- CSV and JSON Lines ---------------------------------------------------------------------


def _csv_cell(value: Any) -> Any:
    """Dates in ISO 8601, like the JSON encoders, instead of Python's ``str`` form."""
    return value.isoformat() if isinstance(value, date | time) else value


def _csv_bytes(lines: Iterable[list[Any]]) -> bytes:
    """One chunk of CSV text; a fresh ``StringIO`` per batch keeps memory bounded."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows([_csv_cell(value) for value in line] for line in lines)
    return buffer.getvalue().encode("utf-8")


def stream_csv(rows: Iterable[Row], columns: list[str], batch_size: int = 10_000) -> Iterator[bytes]:
    """Encode rows as UTF-8 CSV: the header line, then one chunk per batch of rows.

    Dict and list values are written as JSON text; ``None`` is an empty field.

    >>> rows = [{"id": 1, "text": 'say "hi", bye', "meta": {"k": 1}}]
    >>> b"".join(stream_csv(iter(rows), ["id", "text", "meta"])).decode()
    'id,text,meta\\r\\n1,"say ""hi"", bye","{""k"": 1}"\\r\\n'
    """
    yield _csv_bytes([columns])
    start = 0
    for batch in _batches(rows, batch_size):
        yield _csv_bytes(_table(batch, columns, start))
        start += len(batch)


def stream_jsonl(rows: Iterable[Row], batch_size: int = 10_000) -> Iterator[bytes]:
    """Encode rows as JSON Lines (one UTF-8 object per line), one chunk per batch."""
    for batch in _batches(rows, batch_size):
        yield "".join(_dumps(dict(row)) + "\n" for row in batch).encode("utf-8")


# --- Parquet --------------------------------------------------------------------------------


class _DrainableSink:
    """A write-only file for :class:`pyarrow.parquet.ParquetWriter` whose bytes can be
    taken out as they come, so a Parquet file is streamed instead of built in memory.

    ``tell`` counts every byte ever written (Parquet's footer records offsets), while
    the buffer only holds what has not been drained yet.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._buffer += data
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        """Nothing to flush: bytes stay in the buffer until :meth:`drain`."""

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        """The bytes written since the last drain, removed from the buffer."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def _arrow_column(name: str, values: list[Any], kind: Any) -> Any:
    """One Arrow column. ``kind`` (fixed by the first batch, as a Parquet file has one
    schema) is reached by a safe cast, so a float in an integer column is an error
    rather than silently truncated; a column of only nulls becomes text."""
    try:
        array = pa.array(values)
        if kind is None:
            return array.cast(pa.string()) if pa.types.is_null(array.type) else array
        return array.cast(kind, safe=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        expected = f" (type {kind}, from the first batch)" if kind is not None else ""
        raise InvalidInputError(f"column {name!r} has values Parquet cannot store{expected}: {exc}") from None


def _arrow_table(lines: list[list[Any]], columns: list[str], schema: Any) -> Any:
    """A batch of value lists as an Arrow table, in the schema when there is one."""
    values = [list(column) for column in zip(*lines, strict=True)]
    kinds = [None] * len(columns) if schema is None else list(schema.types)
    arrays = [_arrow_column(*spec) for spec in zip(columns, values, kinds, strict=True)]
    return pa.Table.from_arrays(arrays, names=columns)


def _string_schema(columns: list[str]) -> Any:
    """The schema of an export with no rows: nothing to infer from, so all text."""
    return pa.schema([(name, pa.string()) for name in columns])


def stream_parquet(rows: Iterable[Row], columns: list[str], batch_size: int = 50_000) -> Iterator[bytes]:
    """Encode rows as one Parquet file, yielded piece by piece: one row group per batch.

    Memory stays bounded by one batch. Column types are inferred from the first batch
    (later batches are cast to them); dict and list values are stored as JSON text.
    With no rows the file still has the columns, as strings, and zero rows.
    """
    sink = _DrainableSink()
    writer: Any = None
    start = 0
    for batch in _batches(rows, batch_size):
        schema = None if writer is None else writer.schema
        table = _arrow_table(_table(batch, columns, start), columns, schema)
        writer = writer or pq.ParquetWriter(sink, table.schema)
        writer.write_table(table)
        start += len(batch)
        yield sink.drain()
    writer = writer or pq.ParquetWriter(sink, _string_schema(columns))
    writer.close()
    yield sink.drain()


# --- dispatch -------------------------------------------------------------------------------

_ENCODERS: dict[str, Callable[[Iterable[Row], list[str]], Iterator[bytes]]] = {
    "csv": stream_csv,
    "jsonl": lambda rows, columns: stream_jsonl(rows),
    "parquet": stream_parquet,
}


def stream_rows(fmt: str, rows: Iterable[Row], columns: list[str]) -> Iterator[bytes]:
    """Encode rows in the named format (a key of :data:`FORMATS`).

    The format is checked at once, not on the first ``next``, so a route can answer 422
    before it starts a streaming response. JSON Lines writes each row's own keys.
    """
    if fmt not in _ENCODERS:
        raise InvalidInputError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    return _ENCODERS[fmt](rows, columns)


# --- Label Studio export --------------------------------------------------------------------


def _ls_result(label: Any) -> list[dict[str, Any]]:
    """A Label Studio ``choices`` result holding one label."""
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


CROWD_ANSWER = "crowdloop_answer"
"""The key that marks an exported annotation as a crowd worker's answer: read back, it is not gold."""


def _ls_annotation(answer: Row) -> dict[str, Any]:
    """One worker's answer as a Label Studio annotation, marked as the crowd's (:data:`CROWD_ANSWER`)."""
    return {
        "completed_by": answer["worker"],
        "created_at": answer["created_at"],
        "result": _ls_result(answer["label"]),
        CROWD_ANSWER: True,
    }


def _ls_gold_annotation(item: Row) -> list[dict[str, Any]]:
    """A gold item's label as a ground-truth annotation (none for another item), so it comes back gold."""
    if item.get("gold_label") is None:
        return []
    return [{"ground_truth": True, "result": _ls_result(item["gold_label"])}]


def _ls_predictions(item: Row) -> list[dict[str, Any]]:
    """The aggregated label as a prediction (it is inferred, not a person's answer)."""
    if item["label"] is None:
        return []
    return [{"model_version": MODEL_VERSION, "score": item["confidence"], "result": _ls_result(item["label"])}]


def _ls_task(item: Row, index: int) -> dict[str, Any]:
    """One item as a Label Studio task, or an error naming the item and the missing key."""
    try:
        task = {
            "id": item["id"],
            "data": item["data"],
            "annotations": _ls_gold_annotation(item) + [_ls_annotation(answer) for answer in item["answers"]],
            "predictions": _ls_predictions(item),
        }
        meta = {"external_id": item.get("external_id"), "gold_explanation": item.get("gold_explanation")}
        if any(value is not None for value in meta.values()):  # what an import back keeps
            task["meta"] = {key: value for key, value in meta.items() if value is not None}
        return task
    except KeyError as exc:
        raise InvalidInputError(f"item {index} has no key {exc.args[0]!r}.") from None


def to_label_studio(items: Iterable[Row]) -> Iterator[bytes]:
    """Stream items as a Label Studio JSON task list: ``[``, the tasks separated by
    commas, then ``]``, so a large project is never held in memory as one list.

    Each item has ``id``, ``data``, ``label`` (aggregated, or ``None``), ``confidence``
    and ``answers`` (dicts with ``worker``, ``label``, ``created_at``); a gold item also its
    ``gold_label`` (and ``gold_explanation``), exported as a ground-truth annotation.
    """
    yield b"["
    for index, item in enumerate(items):
        separator = "," if index else ""
        yield (separator + _dumps(_ls_task(item, index))).encode("utf-8")
    yield b"]"


# --- Label Studio import --------------------------------------------------------------------

_LS_SHAPE = 'expected a list of tasks, one task object or {"tasks": [...]}'


def _ls_parse(payload: bytes | str) -> Any:
    """The decoded JSON, or a :class:`DataFileError` that says where it is broken."""
    try:
        return json.loads(payload)
    except json.JSONDecodeError as exc:
        raise DataFileError(f"Label Studio tasks: not JSON ({exc}).") from None
    except RecursionError:
        raise DataFileError("Label Studio tasks: nested too deeply to read.") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(f"Label Studio tasks: not UTF-8 text ({exc.reason} at byte {exc.start}).") from None


def _ls_tasks(document: Any) -> list[Any]:
    """The list of tasks in any of the three shapes Label Studio users hand around."""
    if isinstance(document, dict) and "tasks" in document:
        document = document["tasks"]
    elif isinstance(document, dict) and "data" in document:
        document = [document]
    if not isinstance(document, list):
        raise DataFileError(f"Label Studio tasks: {_LS_SHAPE}; got {type(document).__name__}.")
    return document


def _ls_choice(annotation: Any) -> str | None:
    """The first choice of the annotation's first ``choices`` result, if it has one."""
    results = annotation.get("result") if isinstance(annotation, dict) else None
    for result in results if isinstance(results, list) else []:
        value = result.get("value") if isinstance(result, dict) else None
        choices = value.get("choices") if isinstance(value, dict) else None
        if isinstance(choices, list) and choices:
            return str(choices[0])
    return None


def _ls_gold(task: dict[str, Any], index: int) -> str | None:
    """The gold label: a ground-truth annotation's, else the one label every annotation gives.

    Annotators who disagree leave the task without gold (it goes to the crowd): a task exported
    with its workers' answers as annotations used to come back with the first worker's answer
    as gold. Cancelled annotations carry no label, and predictions are a model's guess, not gold.
    Nor are the crowd's answers an export of ours carries (:data:`CROWD_ANSWER`): read back, every
    item two workers happened to agree on became gold (425 of 800 on ``rte``), while the real gold
    items, exported without their labels, came back as regular ones.
    """
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise DataFileError(f'Label Studio tasks: task {index} has "annotations" that is not a list.')
    usable = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled") and not a.get(CROWD_ANSWER)]
    truth = [label for label in (_ls_choice(a) for a in usable if a.get("ground_truth")) if label is not None]
    if truth:
        return truth[0]
    labels = {label for label in map(_ls_choice, usable) if label is not None}
    return labels.pop() if len(labels) == 1 else None


def _ls_row(task: Any, index: int) -> dict[str, Any]:
    """One task as an item row, or an error naming the task by its position."""
    if not isinstance(task, dict):
        raise DataFileError(f"Label Studio tasks: task {index} is not an object.")
    if not isinstance(task.get("data"), dict):
        raise DataFileError(f'Label Studio tasks: task {index} has no "data" object.')
    meta = task["meta"] if isinstance(task.get("meta"), dict) else {}
    task_id = meta.get("external_id", task.get("id"))  # an export of ours keeps the requester's id there
    row = {
        "external_id": None if task_id is None else str(task_id),
        "data": task["data"],
        "gold_label": _ls_gold(task, index),
    }
    explanation = meta.get("gold_explanation")
    if isinstance(explanation, str) and row["gold_label"] is not None:
        row["gold_explanation"] = explanation
    return row


def from_label_studio(payload: bytes | str) -> list[dict[str, Any]]:
    """Parse Label Studio tasks JSON into item rows, so labeled tasks can become gold.

    Accepts a list of tasks, one task object, or ``{"tasks": [...]}``. Each row is
    ``{"external_id": str | None, "data": dict, "gold_label": str | None}``.
    """
    return [_ls_row(task, index) for index, task in enumerate(_ls_tasks(_ls_parse(payload)))]
