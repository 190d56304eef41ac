"""Streaming export encoders and Label Studio interchange, checked by reading the bytes back."""

from __future__ import annotations

import doctest
import io
import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from crowdloop.crowd import formats
from crowdloop.crowd.formats import (
    FORMATS,
    from_label_studio,
    stream_csv,
    stream_jsonl,
    stream_parquet,
    stream_rows,
    to_label_studio,
)
from crowdloop.errors import DataFileError, InvalidInputError, InvalidParameterError, MissingColumnsError

COLUMNS = ["id", "text", "score", "meta"]

TRICKY_ROWS = [
    {"id": 1, "text": "héllo, wörld", "score": 0.5, "meta": {"tags": ["a", "ß"], "n": 1}},
    {"id": 2, "text": 'she said "hi"', "score": 1.25, "meta": {}},
    {"id": 3, "text": "line one\nline two, 日本語 🙂", "score": -2.0, "meta": [1, 2]},
]


def joined(chunks: Iterator[bytes]) -> bytes:
    return b"".join(chunks)


def generated_rows(count: int) -> Iterator[dict[str, Any]]:
    for index in range(count):
        yield {
            "id": index,
            "text": f"item {index} — é",
            "score": index / 7,
            "meta": {"even": index % 2 == 0},
        }


# --- CSV ------------------------------------------------------------------------------------


def test_csv_round_trips_unicode_commas_quotes_and_dicts_through_pandas() -> None:
    data = joined(stream_csv(iter(TRICKY_ROWS), COLUMNS))
    frame = pd.read_csv(io.BytesIO(data), encoding="utf-8")
    assert list(frame.columns) == COLUMNS
    assert frame["id"].tolist() == [1, 2, 3]
    assert frame["text"].tolist() == [row["text"] for row in TRICKY_ROWS]
    assert frame["score"].tolist() == [0.5, 1.25, -2.0]
    assert [json.loads(value) for value in frame["meta"]] == [row["meta"] for row in TRICKY_ROWS]


def test_csv_writes_the_header_alone_for_no_rows_and_none_as_an_empty_field() -> None:
    assert joined(stream_csv(iter([]), ["a", "b"])) == b"a,b\r\n"
    assert joined(stream_csv(iter([{"a": None, "b": 1}]), ["a", "b"])) == b"a,b\r\n,1\r\n"


def test_csv_yields_the_header_then_one_chunk_per_batch() -> None:
    chunks = list(stream_csv(generated_rows(25), COLUMNS, batch_size=10))
    assert len(chunks) == 1 + 3
    assert [chunk.count(b"\r\n") for chunk in chunks] == [1, 10, 10, 5]


def test_csv_names_the_row_and_column_that_is_missing() -> None:
    rows = [{"a": 1, "b": 2}, {"a": 3}]
    with pytest.raises(MissingColumnsError) as caught:
        joined(stream_csv(iter(rows), ["a", "b"]))
    assert caught.value.detail == "row 1 has no column 'b'."


def test_the_module_doctests_pass() -> None:
    result = doctest.testmod(formats)
    assert result.attempted > 0
    assert result.failed == 0


# --- JSON Lines -----------------------------------------------------------------------------


def test_jsonl_round_trips_and_keeps_non_ascii_as_utf8() -> None:
    data = joined(stream_jsonl(iter(TRICKY_ROWS), batch_size=2))
    lines = data.decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == TRICKY_ROWS
    assert "héllo".encode() in data
    assert b"\\u" not in data


def test_jsonl_yields_one_chunk_per_batch_and_nothing_for_no_rows() -> None:
    assert len(list(stream_jsonl(generated_rows(25), batch_size=10))) == 3
    assert list(stream_jsonl(iter([]))) == []


@pytest.mark.parametrize("batch_size", [0, -5])
def test_batch_size_must_be_positive(batch_size: int) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        list(stream_jsonl(iter(TRICKY_ROWS), batch_size=batch_size))
    assert caught.value.detail == f"batch_size must be at least 1; got {batch_size}."


# --- Parquet --------------------------------------------------------------------------------


def test_parquet_round_trips_120k_rows_in_several_chunks() -> None:
    chunks = list(stream_parquet(generated_rows(120_000), COLUMNS, batch_size=50_000))
    assert len(chunks) > 1
    assert all(chunks[:-1])
    frame = pd.read_parquet(io.BytesIO(b"".join(chunks)))
    expected = pd.DataFrame(generated_rows(120_000))
    expected["meta"] = [json.dumps(meta) for meta in expected["meta"]]
    pd.testing.assert_frame_equal(frame, expected, check_dtype=False)
    assert frame["id"].dtype.kind == "i"
    assert frame["score"].dtype.kind == "f"


def test_parquet_writes_one_row_group_per_batch() -> None:
    import pyarrow.parquet as pq

    data = joined(stream_parquet(generated_rows(120_000), COLUMNS, batch_size=50_000))
    assert pq.ParquetFile(io.BytesIO(data)).num_row_groups == 3


def test_parquet_with_no_rows_is_a_valid_file_with_string_columns() -> None:
    frame = pd.read_parquet(io.BytesIO(joined(stream_parquet(iter([]), ["a", "b"]))))
    assert list(frame.columns) == ["a", "b"]
    assert len(frame) == 0
    assert all(pd.api.types.is_string_dtype(dtype) for dtype in frame.dtypes)


def test_parquet_yields_the_first_chunk_before_the_iterator_is_exhausted() -> None:
    pulled = 0

    def counting_rows() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for row in generated_rows(100):
            pulled += 1
            yield row

    chunks = stream_parquet(counting_rows(), COLUMNS, batch_size=10)
    first = next(chunks)
    assert pulled == 10
    assert first.startswith(b"PAR1")
    rest = b"".join(chunks)
    assert pulled == 100
    assert len(pd.read_parquet(io.BytesIO(first + rest))) == 100


def test_parquet_stores_text_for_a_column_that_is_null_in_the_first_batch() -> None:
    values = [None, None, "x", None, 7, 8]
    rows = [{"a": index, "b": value} for index, value in enumerate(values)]
    frame = pd.read_parquet(io.BytesIO(joined(stream_parquet(iter(rows), ["a", "b"], batch_size=2))))
    assert frame["a"].tolist() == [0, 1, 2, 3, 4, 5]
    assert frame["b"].tolist() == [None, None, "x", None, "7", "8"]


def test_parquet_refuses_to_truncate_a_float_into_an_integer_column() -> None:
    rows = [{"a": 1}, {"a": 2.5}]
    with pytest.raises(InvalidInputError) as caught:
        joined(stream_parquet(iter(rows), ["a"], batch_size=1))
    assert caught.value.detail.startswith(
        "column 'a' has values Parquet cannot store (type int64, from the first batch): "
    )


# --- dispatch -------------------------------------------------------------------------------


def test_formats_name_a_media_type_and_extension_for_every_encoder() -> None:
    assert FORMATS == {
        "csv": ("text/csv; charset=utf-8", ".csv"),
        "jsonl": ("application/x-ndjson", ".jsonl"),
        "parquet": ("application/vnd.apache.parquet", ".parquet"),
    }


@pytest.mark.parametrize(
    ("fmt", "read"),
    [
        ("csv", lambda data: pd.read_csv(io.BytesIO(data))),
        ("jsonl", lambda data: pd.read_json(io.BytesIO(data), lines=True)),
        ("parquet", lambda data: pd.read_parquet(io.BytesIO(data))),
    ],
)
def test_stream_rows_dispatches_to_the_named_encoder(fmt: str, read: Any) -> None:
    rows = [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}]
    frame = read(joined(stream_rows(fmt, iter(rows), ["id", "text"])))
    assert frame.to_dict("records") == rows


def test_stream_rows_rejects_an_unknown_format_before_streaming() -> None:
    with pytest.raises(InvalidInputError) as caught:
        stream_rows("xlsx", iter([]), ["a"])
    assert caught.value.detail == "unknown export format 'xlsx'; use one of csv, jsonl, parquet."


# --- Label Studio export --------------------------------------------------------------------


def ls_item(item_id: int, label: str | None, answers: list[str]) -> dict[str, Any]:
    return {
        "id": item_id,
        "data": {"text": f"text {item_id} ü"},
        "label": label,
        "confidence": 0.9 if label else None,
        "answers": [
            {"worker": f"w{n}", "label": answer, "created_at": f"2024-05-0{n + 1}T10:00:00+00:00"}
            for n, answer in enumerate(answers)
        ],
    }


def choices(label: str) -> list[dict[str, Any]]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def test_label_studio_export_has_the_task_structure() -> None:
    tasks = json.loads(joined(to_label_studio([ls_item(7, "cat", ["cat", "dog"]), ls_item(8, None, [])])))
    assert tasks == [
        {
            "id": 7,
            "data": {"text": "text 7 ü"},
            "annotations": [
                {
                    "completed_by": "w0",
                    "created_at": "2024-05-01T10:00:00+00:00",
                    "result": choices("cat"),
                    "crowdloop_answer": True,
                },
                {
                    "completed_by": "w1",
                    "created_at": "2024-05-02T10:00:00+00:00",
                    "result": choices("dog"),
                    "crowdloop_answer": True,
                },
            ],
            "predictions": [{"model_version": "crowdloop-aggregate", "score": 0.9, "result": choices("cat")}],
        },
        {"id": 8, "data": {"text": "text 8 ü"}, "annotations": [], "predictions": []},
    ]


def test_label_studio_export_streams_one_chunk_per_task() -> None:
    pulled = 0

    def items() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for item_id in range(5):
            pulled += 1
            yield ls_item(item_id, "cat", ["cat"])

    chunks = to_label_studio(items())
    assert next(chunks) == b"["
    assert pulled == 0
    rest = list(chunks)
    assert len(rest) == 5 + 1
    assert rest[-1] == b"]"
    assert joined(to_label_studio(iter([]))) == b"[]"


def test_label_studio_export_names_an_item_missing_a_key() -> None:
    item = ls_item(1, "cat", ["cat"])
    del item["answers"]
    with pytest.raises(InvalidInputError) as caught:
        joined(to_label_studio([ls_item(0, "cat", []), item]))
    assert caught.value.detail == "item 1 has no key 'answers'."


def test_label_studio_export_read_back_keeps_the_gold_and_makes_no_more() -> None:
    """Read back, every item the workers happened to agree on became gold (425 of 800 on rte), and
    the real gold items, exported without their labels, came back as regular ones."""
    gold = ls_item(5, None, ["dog"]) | {"gold_label": "cat", "gold_explanation": "whiskers"}
    items = [ls_item(1, "cat", ["cat", "cat", "cat"]), ls_item(2, "dog", ["dog"]), ls_item(3, "cat", []), gold]
    rows = from_label_studio(joined(to_label_studio(items)))
    assert rows == [
        {"external_id": "1", "data": {"text": "text 1 ü"}, "gold_label": None},  # the crowd's answers
        {"external_id": "2", "data": {"text": "text 2 ü"}, "gold_label": None},
        {"external_id": "3", "data": {"text": "text 3 ü"}, "gold_label": None},  # a prediction: a model's guess
        {"external_id": "5", "data": {"text": "text 5 ü"}, "gold_label": "cat", "gold_explanation": "whiskers"},
    ]
    tasks = json.loads(joined(to_label_studio(items)))
    for task in tasks[:3]:  # annotations added in Label Studio still make gold where they agree
        task["annotations"].append({"completed_by": 3, "result": choices("cat")})
    tasks[2]["annotations"].append({"completed_by": 4, "result": choices("dog")})
    assert [row["gold_label"] for row in from_label_studio(json.dumps(tasks))] == ["cat", "cat", None, "cat"]


# --- Label Studio import --------------------------------------------------------------------


def test_label_studio_import_prefers_ground_truth_and_skips_cancelled_annotations() -> None:
    task = {
        "id": 5,
        "data": {"text": "x"},
        "annotations": [
            {"was_cancelled": True, "result": choices("cancelled")},
            {"result": [{"type": "textarea", "value": {"text": ["note"]}}]},
            {"result": choices("first")},
            {"ground_truth": True, "result": choices("truth")},
        ],
    }
    assert from_label_studio(json.dumps([task]))[0]["gold_label"] == "truth"
    task["annotations"] = task["annotations"][:3]
    assert from_label_studio(json.dumps([task]))[0]["gold_label"] == "first"
    task["annotations"].append({"result": choices("second")})  # two annotators who disagree: no gold
    assert from_label_studio(json.dumps([task]))[0]["gold_label"] is None


def test_label_studio_import_accepts_one_task_a_tasks_dict_str_and_bytes() -> None:
    task = {"data": {"text": "only"}, "annotations": [{"result": choices("yes")}]}
    expected = [{"external_id": None, "data": {"text": "only"}, "gold_label": "yes"}]
    assert from_label_studio(json.dumps(task)) == expected
    assert from_label_studio(json.dumps({"tasks": [task]}).encode()) == expected
    assert from_label_studio(b"[]") == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            b"{not json",
            "Label Studio tasks: not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)).",
        ),
        (b"[\xff]", "Label Studio tasks: not UTF-8 text (invalid start byte at byte 1)."),
        ("5", 'Label Studio tasks: expected a list of tasks, one task object or {"tasks": [...]}; got int.'),
        (
            '{"items": []}',
            'Label Studio tasks: expected a list of tasks, one task object or {"tasks": [...]}; got dict.',
        ),
        (
            '{"tasks": {"data": {}}}',
            'Label Studio tasks: expected a list of tasks, one task object or {"tasks": [...]}; got dict.',
        ),
        ('[{"data": {}}, "text"]', "Label Studio tasks: task 1 is not an object."),
        ('[{"data": {}}, {"data": {}}, {"id": 3}]', 'Label Studio tasks: task 2 has no "data" object.'),
        ('[{"data": "text"}]', 'Label Studio tasks: task 0 has no "data" object.'),
        (
            '[{"data": {}, "annotations": {"result": []}}]',
            'Label Studio tasks: task 0 has "annotations" that is not a list.',
        ),
    ],
)
def test_label_studio_import_says_what_is_wrong(payload: bytes | str, message: str) -> None:
    with pytest.raises(DataFileError) as caught:
        from_label_studio(payload)
    assert caught.value.detail == message
