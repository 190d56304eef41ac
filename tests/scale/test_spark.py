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
