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
    """Refuse, saying why, a run whose tests xdist would spread one by one (see below): one with
    another ``--dist`` than loadgroup (``-n 2`` alone means ``--dist load``), or under pytest 9.2."""
    if hasattr(config, "workerinput"):
        return  # a worker of a run the controller already checked
    dist = config.getoption("dist", None)
    if config.getoption("numprocesses", None) and dist != "loadgroup":
        raise pytest.UsageError(
            f"--dist {dist} does not keep together the tests that need one process (a file's tests, some of "
            "which build on the ones before; tests/web and tests/deploy, which share a server, Chromium and a "
            "model; the Spark tests): run with --dist loadgroup (the README's pytest -n 2 --dist loadgroup)."
        )
    if dist == "loadgroup" and Version(pytest.__version__) >= Version("9.2.0.dev0"):
        raise pytest.UsageError(
            f"pytest-xdist cannot keep a file's tests together under pytest {pytest.__version__} "
            "(pytest-dev/pytest-xdist#1386), and some tests build on the ones before them in their file: "
            'install "pytest<9.2" (as pyproject.toml asks), or run with -n 0.'
        )


SHARED_SESSION_DIRECTORIES = ("tests/web/", "tests/deploy/")
"""Directories whose files share session fixtures (a server and Chromium; a trained model cache):
kept on one worker, they are made once."""


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marks into groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``-n 2 --dist loadgroup``, the README's test command), keep each test
    file on one worker, every file with a Spark test on one, and each of
    :data:`SHARED_SESSION_DIRECTORIES` on one: a file's module-scoped fixtures (a server, a trained
    model, the demo's run) are then made once, not once per worker, one Spark session serves the
    run, and a file's tests run in their order (some build on the ones before, as in one process).
    Spread test by test, 12 tests of two files failed on a model an earlier test had trained.

    xdist groups by appending ``@group`` to a worker's node ids, which pytest 9.2 no longer lets it
    do (pytest-dev/pytest-xdist#1386): the tests were then spread one by one, silently, and 7 of
    those 12 failed in CI. pyproject.toml keeps pytest below 9.2, and :func:`pytest_configure`
    refuses a newer one."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    spark_files = {_file(item) for item in items if item.get_closest_marker("spark")}
    for item in items:
        path = _file(item)
        shared = next((folder for folder in SHARED_SESSION_DIRECTORIES if path.startswith(folder)), None)
        item.add_marker(pytest.mark.xdist_group("spark" if path in spark_files else shared or path))


def _file(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]
