"""A real `crowdloop serve` on a SQLite file for the simulation tests (:mod:`servers`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from servers import start_server


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    database = f"sqlite:///{tmp_path_factory.mktemp('db') / 'crowdloop.db'}"
    running = start_server(database, tmp_path_factory.mktemp("logs"))
    yield running
    running.stop()
