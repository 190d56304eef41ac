"""Iteration counts mean the same in every engine: a run reported as 20 iterations did 20."""

from __future__ import annotations

import pytest

from crowdloop.datasets import load_dataset
from crowdloop.quality import get_aggregator
from crowdloop.scale import fit_sharded, memory_shards


@pytest.mark.parametrize("method", ["mace", "default"])
def test_mace_counts_the_final_run_as_the_partitioned_engines_do(method):
    """Local MACE added the best restart's steps, not the final run's: 20 on ms where the
    partitioned fit (the stream and Spark engines' code) did and reported 34."""
    answers = load_dataset("ms").answers
    local = get_aggregator(method).fit(answers)
    sharded = fit_sharded(get_aggregator(method), memory_shards(answers, 3)).estimator
    assert local.n_iter_ == sharded.n_iter_
