"""Shared fixtures. Tests that need a part a fresh clone lacks skip with a reason,
unless CROWDLOOP_REQUIRE_ALL=1 (set by .ci/run), which turns those skips into failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

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


def pytest_configure(config: pytest.Config) -> None:
    """Refuse, saying why, a run whose tests xdist would spread one by one (see below)."""
    if config.getoption("dist", None) == "loadgroup" and Version(pytest.__version__) >= Version("9.2.0.dev0"):
        raise pytest.UsageError(
            f"pytest-xdist cannot keep a file's tests together under pytest {pytest.__version__} "
            "(pytest-dev/pytest-xdist#1386), and some tests build on the ones before them in their file: "
            'install "pytest<9.2" (as pyproject.toml asks), or run with -n 0.'
        )


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marks into groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``-n 2 --dist loadgroup``, set in pyproject.toml), keep each test file
    on one worker and every Spark test on one: a file's module-scoped fixtures (a server, a trained
    model, the demo's run) are then made once, not once per worker, one Spark session serves them
    all, and a file's tests run in their order (some build on the ones before, as in one process).
    Spread test by test, 12 tests of two files failed on a model an earlier test had trained.

    xdist groups by appending ``@group`` to a worker's node ids, which pytest 9.2 no longer lets it
    do (pytest-dev/pytest-xdist#1386): the tests were then spread one by one, silently, and 7 of
    those 12 failed in CI. pyproject.toml keeps pytest below 9.2, and :func:`pytest_configure`
    refuses a newer one."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        group = "spark" if item.get_closest_marker("spark") else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
