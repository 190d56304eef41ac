"""Spark local[2] gives the local engine's labels and probabilities (one session for the run)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from crowdloop.datasets import load_dataset
from crowdloop.errors import InvalidInputError, MissingValuesError
from crowdloop.quality import get_aggregator
from crowdloop.scale import fit_sharded
from support import answers_with_a_nan, write_keeping_nan

pytestmark = [pytest.mark.spark, pytest.mark.shared]


def _compare(spark, answers, methods, partition_answers):
    from crowdloop.scale.spark import SparkShards

    engine = SparkShards.from_answers(spark, spark.createDataFrame(answers), partition_answers=partition_answers)
    assert engine.n_partitions > 1
    try:
        for method in methods:
            local = get_aggregator(method).fit(answers)
            fit = fit_sharded(get_aggregator(method), engine)
            labels = engine.labels(fit).toPandas().set_index("task")
            assert len(labels) == len(local.labels_)
            assert (labels["label"] == local.labels_.loc[labels.index]).all(), method
            probas = np.stack(labels["probas"].to_numpy())
            assert np.abs(probas - local.probas_.loc[labels.index].to_numpy()).max() < 1e-6, method
    finally:
        engine.unpersist()


@pytest.mark.parametrize("name", ["ms", "wsd"])
def test_spark_matches_local(spark, shared_dataset, name):
    _compare(spark, shared_dataset(name).answers, ["majority_vote", "dawid_skene", "one_coin_dawid_skene"], 1_200)


def test_spark_default_aggregator_matches_local(spark, shared_dataset):
    _compare(spark, shared_dataset("wsd").answers, ["default"], 1_000)


def test_spark_reads_parquet_path(spark, shared_dataset, tmp_path):
    from crowdloop.scale.spark import SparkShards

    answers = shared_dataset("bluebird").answers
    answers.to_parquet(tmp_path / "answers.parquet")
    engine = SparkShards.from_answers(spark, str(tmp_path / "answers.parquet"), partition_answers=1_500)
    fit = fit_sharded(get_aggregator("dawid_skene"), engine)
    labels = engine.labels(fit).toPandas().set_index("task")["label"]
    local = get_aggregator("dawid_skene").fit(answers).labels_
    assert (labels == local.loc[labels.index]).all()


@pytest.mark.parametrize("column", ["task", "worker", "label"])
def test_nan_is_a_missing_value_as_in_the_local_engine(spark, tmp_path, column):
    """A NaN label's answers were dropped by the label lookup's join (the output said nothing);
    a NaN worker was a worker."""
    from crowdloop.scale.spark import SparkShards

    write_keeping_nan(answers_with_a_nan(column), tmp_path / "a.parquet")
    with pytest.raises(MissingValuesError, match=f"1 answer\\(s\\) have no {column}"):
        SparkShards.from_answers(spark, str(tmp_path / "a.parquet"))


def test_answers_the_encoding_lost_are_an_error_not_a_smaller_fit(spark):
    from crowdloop.scale.spark import SparkShards, _check_all_encoded

    engine = SparkShards.from_answers(spark, spark.createDataFrame(load_dataset("wsd").answers))
    _check_all_encoded(engine.shards, engine.n_answers)  # every answer counted is in a shard
    with pytest.raises(InvalidInputError, match="1 of 1771 answer"):
        _check_all_encoded(engine.shards, engine.n_answers + 1)
    assert not engine.shards.is_cached  # and the partial cache is released


def test_a_directory_of_part_files_gives_the_local_engine_s_worker_order(spark, tmp_path):
    """Spark reads a directory's largest file first: the workers were numbered in that order,
    so MACE's random start, drawn per worker, and its probabilities (off by 1e-2 on ms) depended
    on how the answers were cut into files."""
    import pandas as pd

    from crowdloop.scale.spark import SparkShards

    answers = load_dataset("ms").answers
    folder = tmp_path / "answers.parquet"
    folder.mkdir()
    cuts = [0, len(answers) // 10, len(answers) // 3, len(answers)]  # part-0 the smallest
    for part, (start, stop) in enumerate(itertools.pairwise(cuts)):
        answers.iloc[start:stop].to_parquet(folder / f"part-{part}.parquet", index=False)
    whole = pd.read_parquet(folder)  # what the local engine reads: the files in name order
    engine = SparkShards.from_answers(spark, str(folder), partition_answers=1_000)
    try:
        assert engine.workers.tolist() == whole["worker"].unique().tolist()
        local = get_aggregator("mace").fit(whole)
        labels = engine.labels(fit_sharded(get_aggregator("mace"), engine)).toPandas().set_index("task")
        probas = np.stack(labels["probas"].to_numpy())
        assert np.abs(probas - local.probas_.loc[labels.index].to_numpy()).max() < 1e-6
    finally:
        engine.unpersist()


def _cached_rdds(spark) -> set[int]:
    """The ids of the RDDs cached now. Compared as sets: an earlier test's cache that Spark's
    cleaner drops meanwhile (its Python side was collected) is not this run's doing."""
    return {int(rdd_id) for rdd_id in spark.sparkContext._jsc.getPersistentRDDs().keySet()}


def test_aggregate_parquet_renames_as_the_local_engine(spark, tmp_path):
    """Columns renamed by selecting them all under their new names: ``--task-col task_id`` on a
    file that also has ``task`` was an ambiguous-reference traceback; now the local engine's error."""
    import pandas as pd

    from crowdloop.scale import aggregate_parquet

    answers = load_dataset("wsd").answers
    renamed = answers.rename(columns={"task": "item", "worker": "annotator", "label": "answer"})
    renamed.assign(note="x").to_parquet(tmp_path / "a.parquet")  # and a column not used
    rename = {"item": "task", "annotator": "worker", "answer": "label"}
    aggregate_parquet(tmp_path / "a.parquet", get_aggregator("majority_vote"), tmp_path / "l.parquet",
                      engine="spark", rename=rename)  # fmt: skip
    labels = pd.read_parquet(tmp_path / "l.parquet").set_index("task")["label"]
    assert labels.sort_index().equals(get_aggregator("majority_vote").fit(answers).labels_.sort_index())
    answers.assign(task_id=answers["task"]).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(InvalidInputError, match="column\\(s\\) task twice after renaming"):
        aggregate_parquet(tmp_path / "b.parquet", get_aggregator("majority_vote"), tmp_path / "m.parquet",
                          engine="spark", rename={"task_id": "task"})  # fmt: skip


def test_spark_errors_are_crowdloop_errors_and_leave_no_cache(spark, tmp_path):
    """A file that is not Parquet, or labels that cannot be written, were Java tracebacks (exit
    code 1 in the CLI), and a failed run left its shards cached."""
    from crowdloop.errors import DataFileError
    from crowdloop.scale import aggregate_parquet

    (tmp_path / "text.parquet").write_text("task,worker,label\n1,a,x\n")
    with pytest.raises(DataFileError, match="text.parquet: cannot be read as parquet: .*"):
        aggregate_parquet(tmp_path / "text.parquet", get_aggregator("majority_vote"), tmp_path / "l.parquet",
                          engine="spark")  # fmt: skip
    load_dataset("wsd").answers.to_parquet(tmp_path / "a.parquet")
    (tmp_path / "file").write_text("not a directory")
    before = _cached_rdds(spark)
    with pytest.raises(DataFileError, match="cannot write the labels"):
        aggregate_parquet(tmp_path / "a.parquet", get_aggregator("majority_vote"), tmp_path / "file" / "l.parquet",
                          engine="spark")  # fmt: skip
    assert _cached_rdds(spark) <= before  # nothing the failed run cached is left (CI once saw 1 -> 0)


def test_a_session_aggregate_parquet_starts_is_stopped_and_a_bad_master_is_one_line(tmp_path):
    """In a fresh process (this one has the tests' session): the run's own session was left
    running; a master Spark cannot parse was a Java traceback."""
    import subprocess
    import sys

    load_dataset("wsd").answers.to_parquet(tmp_path / "a.parquet")
    script = f"""
from pyspark.sql import SparkSession
from crowdloop.errors import InvalidInputError
from crowdloop.quality import MajorityVote
from crowdloop.scale import aggregate_parquet
aggregate_parquet({str(tmp_path / "a.parquet")!r}, MajorityVote(), {str(tmp_path / "l.parquet")!r},
                  engine="spark", master="local[1]")
print("active after the run:", SparkSession.getActiveSession())
try:
    aggregate_parquet({str(tmp_path / "a.parquet")!r}, MajorityVote(), {str(tmp_path / "m.parquet")!r},
                      engine="spark", master="no-such-master")
except InvalidInputError as error:
    print("error:", error)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "active after the run: None" in lines
    error = next(line for line in lines if line.startswith("error:"))
    assert "Spark does not start with --master no-such-master: " in error and "no-such-master'" in error


def test_the_cli_shows_a_spark_failure_as_one_error_line_without_java_stacks(tmp_path):
    """A file that is not Parquet: Spark's log printed the Java stack of each failed task (a
    hundred lines) and the CLI a Python traceback, with exit code 1."""
    import subprocess
    import sys

    (tmp_path / "text.parquet").write_text("task,worker,label\n1,a,x\n")
    command = ["aggregate", str(tmp_path / "text.parquet"), "--engine", "spark", "--master", "local[1]"]
    done = subprocess.run([sys.executable, "-m", "crowdloop", *command, "--out", str(tmp_path / "l.parquet")],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "text.parquet: cannot be read as parquet" in done.stderr
    assert "Traceback" not in done.stderr and "\tat org.apache" not in done.stderr
