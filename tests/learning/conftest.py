"""Fixtures of the learning tests: the bundled RTE crowd (800 sentence pairs) featurised once."""

from __future__ import annotations

import numpy as np
import pytest

from crowdloop.datasets import load_dataset
from crowdloop.learning import FeatureSpec, Featurizer


@pytest.fixture(scope="session")
def rte():
    return load_dataset("rte")


@pytest.fixture(scope="session")
def rte_split(rte):
    """(train items, test items): a seeded 75/25 split of the items."""
    test = np.random.default_rng(0).random(len(rte.items)) < 0.25
    return rte.items[~test].reset_index(drop=True), rte.items[test].reset_index(drop=True)


@pytest.fixture(scope="session")
def rte_featurizer(rte):
    """A small vocabulary (5,000 terms) keeps every fit in these tests fast."""
    return Featurizer(FeatureSpec.infer(rte.items), max_terms=5_000).fit(rte.items)
