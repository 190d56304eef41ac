"""Fixtures of the crowd tests that need a database without a schema yet (migration tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import Engine

from crowdloop.storage.db import make_engine
from support import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database (no schema yet) on each backend."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'crowdloop.db'}"
        else:
            url = stack.enter_context(postgres_database())
        created = make_engine(url)
        stack.callback(created.dispose)
        yield created
