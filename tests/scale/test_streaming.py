"""The partitioned and streamed engines give the local engine's results on real crowds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crowdloop.datasets import load_dataset
from crowdloop.errors import (
    DataFileError,
    InvalidInputError,
    InvalidParameterError,
    MissingColumnsError,
    MissingValuesError,
)
from crowdloop.quality import GLAD, get_aggregator
from crowdloop.scale import (
    ParquetShards,
    aggregate_parquet,
    fit_sharded,
    memory_shards,
    probas_frames,
    stream_aggregate,
)
from crowdloop.scale._shards import build_shard
from crowdloop.sim.parquet import write_synthetic_parquet
from support import answers_with_a_nan, write_keeping_nan

SETS = ["bluebird", "cf", "dog", "face", "ms", "product", "relevance", "rte", "sp", "temp", "web", "wsd"]
METHODS = ["majority_vote", "dawid_skene", "one_coin_dawid_skene", "default"]


@pytest.mark.shared
@pytest.mark.parametrize("name", SETS)
def test_partitions_match_local_engine(shared_dataset, name):
    answers = shared_dataset(name).answers
    engine = memory_shards(answers, n_shards=3)
    for method in METHODS:
        local = get_aggregator(method).fit(answers)
        fit = fit_sharded(get_aggregator(method), engine)
        probas = pd.concat(probas_frames(fit, engine))
        expected = local.probas_.loc[probas.index]
        assert np.abs(expected.to_numpy() - probas.to_numpy()).max() < 1e-6, method
        assert (expected.to_numpy().argmax(axis=1) == probas.to_numpy().argmax(axis=1)).all(), method
        skills = fit.estimator.skills_.loc[local.skills_.index]
        assert np.abs(skills - local.skills_).max() < 1e-6, method


@pytest.mark.shared
def test_stream_from_parquet_matches_local(shared_dataset, tmp_path):
    answers = shared_dataset("relevance").answers  # string tasks, repeated (task, worker) pairs
    answers.to_parquet(tmp_path / "answers.parquet")
    shards = ParquetShards.prepare(
        tmp_path / "answers.parquet", tmp_path / "work", shard_answers=20_000, batch_rows=7_000
    )
    assert shards.n_shards == 5 and shards.n_answers == len(answers)
    local = get_aggregator("default").fit(answers)
    stream_aggregate(shards, get_aggregator("default"), tmp_path / "labels.parquet")
    labels = pd.read_parquet(tmp_path / "labels.parquet").set_index("task")
    assert len(labels) == answers["task"].nunique()
    assert (labels["label"] == local.labels_.loc[labels.index]).all()
    assert np.abs(labels["confidence"] - local.probas_.max(axis=1).loc[labels.index]).max() < 1e-6


def test_synthetic_parquet_is_written_in_chunks_and_streams(tmp_path):
    rows = write_synthetic_parquet(
        tmp_path / "a.parquet", 50_000, n_workers=300, chunk_tasks=3_000, gold_path=tmp_path / "g.parquet"
    )
    answers = pd.read_parquet(tmp_path / "a.parquet")
    assert rows == len(answers) == 50_000 and answers["task"].nunique() == 10_000
    shards = ParquetShards.prepare(tmp_path / "a.parquet", tmp_path / "work", shard_answers=12_000)
    fit = stream_aggregate(shards, get_aggregator("dawid_skene"), tmp_path / "labels.parquet")
    labels = pd.read_parquet(tmp_path / "labels.parquet").set_index("task")["label"]
    gold = pd.read_parquet(tmp_path / "g.parquet").set_index("task")["label"]
    assert (labels == gold.loc[labels.index]).mean() > 0.85
    assert fit.estimator.n_iter_ > 1


def test_bad_input_is_named(tmp_path):
    pd.DataFrame({"task": [1], "who": ["a"], "label": [0]}).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(MissingColumnsError, match="worker"):
        ParquetShards.prepare(tmp_path / "a.parquet", tmp_path / "work")
    answers = pd.DataFrame({"task": [1, 1], "worker": ["a", "b"], "label": [0, 1]})
    with pytest.raises(InvalidParameterError, match="GLAD does not run on partitions"):
        fit_sharded(GLAD(), memory_shards(answers))


@pytest.mark.parametrize("column", ["task", "worker", "label"])
def test_nan_is_a_missing_value_as_in_the_local_engine(tmp_path, column):
    """A NaN was coded -1 (pandas' code for it): the answer went to the last worker or class,
    or the run died on a negative bincount."""
    answers = answers_with_a_nan(column)
    with pytest.raises(MissingValuesError, match=f"1 answer\\(s\\) have no {column}"):
        get_aggregator("majority_vote").fit(answers)
    write_keeping_nan(answers, tmp_path / "a.parquet")
    with pytest.raises(MissingValuesError, match=f"1 answer\\(s\\) have no {column}"):
        ParquetShards.prepare(tmp_path / "a.parquet", tmp_path / "work")


@pytest.mark.parametrize("engine", ["stream", "spark"])
def test_a_method_that_cannot_run_on_partitions_is_refused_before_reading(tmp_path, engine):
    """``-m glad`` failed only after the whole file was partitioned (and, on Spark, cached): here
    the file does not even exist, and the method is what the error names."""
    with pytest.raises(InvalidParameterError, match="GLAD does not run on partitions"):
        aggregate_parquet(tmp_path / "nothing.parquet", GLAD(), tmp_path / "labels.parquet", engine=engine)


def test_spark_s_output_directory_is_a_clear_error_for_the_stream_engine(tmp_path):
    """Spark writes ``--out X.parquet`` as a directory; the stream engine then died with an
    IsADirectoryError after the whole fit (as --out) or called it "no such file" (as input)."""
    answers, parts = tmp_path / "answers.parquet", tmp_path / "spark-labels.parquet"
    load_dataset("wsd").answers.to_parquet(answers)
    parts.mkdir()
    load_dataset("wsd").answers.to_parquet(parts / "part-00000.parquet")
    with pytest.raises(DataFileError, match="is a directory .*writes one file"):
        aggregate_parquet(answers, get_aggregator("majority_vote"), parts, engine="stream")
    with pytest.raises(DataFileError, match="is a directory .*reads one Parquet file"):
        aggregate_parquet(parts, get_aggregator("majority_vote"), tmp_path / "labels.parquet", engine="stream")


def test_a_renamed_column_the_file_already_has_is_refused_as_locally(tmp_path):
    """``--task-col task_id`` on a file that also has ``task``: the local engine refuses to guess
    which is meant; the stream engine silently took one (and Spark failed with a traceback)."""
    answers = load_dataset("wsd").answers
    answers.assign(task_id=answers["task"].str.upper()).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(InvalidInputError, match="column\\(s\\) task twice after renaming"):
        aggregate_parquet(
            tmp_path / "a.parquet", get_aggregator("majority_vote"), tmp_path / "l.parquet", rename={"task_id": "task"}
        )


def test_worker_class_codes_past_int32_decode_to_the_same_answers():
    """50,000 workers x 50,000 classes: ``worker * K + label`` passes 2^31; as int32 it wrapped
    and the answers came back as other workers' and other classes'."""
    worker, label = np.array([0, 49_999, 45_000, 7]), np.array([3, 49_998, 7, 49_999])
    shard = build_shard(np.array(["t1", "t1", "t2", "t2"]), worker, label, 50_000)
    data = shard.encoded(50_000, 50_000)
    assert data.worker.tolist() == worker.tolist() and data.label.tolist() == label.tolist()
    small = build_shard(np.array(["t1", "t2"]), np.array([0, 9]), np.array([1, 2]), 3)
    assert small.columns.dtype == np.int32  # still 4 bytes an answer where the codes fit


@pytest.mark.parametrize(
    "task_type", [pa.date32(), pa.timestamp("us", tz="Europe/Paris"), pa.decimal128(12, 0)], ids=str
)
def test_labels_keep_the_type_of_the_task_ids(tmp_path, task_type):
    """Date ids came back as timestamps, a time zone and a decimal's precision were dropped: the
    labels no longer joined to the answers they came from (the local engine keeps the type)."""
    import datetime as dt
    import decimal

    answers = load_dataset("wsd").answers
    number = pd.factorize(answers["task"])[0]
    if task_type == pa.date32():
        ids = [dt.date(2020, 1, 1) + dt.timedelta(days=int(n)) for n in number]
    elif pa.types.is_timestamp(task_type):
        ids = [dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=int(n)) for n in number]
    else:
        ids = [decimal.Decimal(int(n)) for n in number]
    table = pa.table({"task": pa.array(ids, task_type), "worker": answers["worker"], "label": answers["label"]})
    pq.write_table(table, tmp_path / "a.parquet")
    aggregate_parquet(tmp_path / "a.parquet", get_aggregator("majority_vote"), tmp_path / "l.parquet")
    labels = pq.read_table(tmp_path / "l.parquet")
    assert labels.schema.field("task").type == task_type
    assert set(labels.column("task").to_pylist()) == set(ids)
