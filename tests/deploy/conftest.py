"""Fixtures of the deploy tests: models trained on the real ``product`` matching crowd, and a
real ``crowdloop serve`` process that can be killed and restarted on the same port and file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from crowdloop.learning import FeatureSpec, Featurizer, TrainedModel, train_model
from crowdloop.ports import free_port
from deploy.helpers import Serve

TRAIN, EVAL = 1500, 300


@pytest.fixture(scope="session")
def product(shared_dataset):
    """(train items, evaluation items, gold) from ../shared/datasets/product, a seeded sample."""
    data = shared_dataset("product")
    sample = data.items.sample(TRAIN + EVAL, random_state=0).reset_index(drop=True)
    return sample.head(TRAIN).reset_index(drop=True), sample.tail(EVAL).reset_index(drop=True), data.gold


@pytest.fixture(scope="session")
def product_featurizer(product) -> Featurizer:
    train, _, _ = product
    return Featurizer(FeatureSpec.infer(train)).fit(train)


@pytest.fixture(scope="session")
def trained(product, product_featurizer) -> Callable[..., TrainedModel]:
    """``trained(family, **params)``: a model of that family on the product crowd's gold labels (cached)."""
    cache: dict[tuple[str, tuple[tuple[str, Any], ...]], TrainedModel] = {}
    train, _, gold = product

    def make(family: str = "logreg", **params: Any) -> TrainedModel:
        key = (family, tuple(sorted(params.items())))
        if key not in cache:
            cache[key] = train_model(train, gold, featurizer=product_featurizer, family=family, params=params or None)
        return cache[key]

    return make


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    root = tmp_path_factory.mktemp("edge-server")
    running = Serve(free_port(), f"sqlite:///{root / 'crowdloop.db'}", root / "data", root).start()
    yield running
    running.kill()
