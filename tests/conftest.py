"""Shared fixtures. Tests that need a part a fresh clone lacks skip with a reason,
unless CROWDLOOP_REQUIRE_ALL=1 (set by .ci/run), which turns those skips into failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from crowdloop.datasets import Dataset, load_dataset
from support import require

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_dataset():
    """Loader for the full collection in ../shared/datasets (skips when absent)."""
    cache: dict[str, Dataset] = {}

    def load(name: str) -> Dataset:
        require(
            SHARED_DATASETS.is_dir(),
            f"../shared/datasets not found next to the checkout ({SHARED_DATASETS}); "
            "these tests use the full data-set collection",
        )
        if name not in cache:
            cache[name] = load_dataset(name, SHARED_DATASETS)
        return cache[name]

    return load
