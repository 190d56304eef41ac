"""A real `crowdloop serve` on a SQLite file for the simulation tests (the platform tests' server code)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _platform_fixtures() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "platform" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_platform_server_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules.get(spec.name) or importlib.util.module_from_spec(spec)
    if spec.name not in sys.modules:
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    platform = _platform_fixtures()
    database = f"sqlite:///{tmp_path_factory.mktemp('db') / 'crowdloop.db'}"
    running = platform.start_server(database, tmp_path_factory.mktemp("logs"))
    running.admin_token = platform.ADMIN_TOKEN
    yield running
    running.stop()
