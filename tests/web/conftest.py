"""Browser tests of the web UI: one `crowdloop serve` on SQLite and one headless Chromium per session.

The server comes from the platform tests' helper (``tests/platform/conftest.py``, loaded here
under another name). Chromium is Debian's (/usr/bin/chromium), driven by Playwright; the tests
skip without it, unless CROWDLOOP_REQUIRE_ALL=1.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import require

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip


def _platform_helpers() -> Any:
    path = Path(__file__).resolve().parents[1] / "platform" / "conftest.py"
    spec = importlib.util.spec_from_file_location("crowdloop_test_servers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    helpers = _platform_helpers()
    database = tmp_path_factory.mktemp("web-db") / "crowdloop.db"
    running = helpers.start_server(f"sqlite:///{database}", tmp_path_factory.mktemp("web-logs"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require(CHROMIUM.exists(), "Chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    made = browser.new_context(viewport={"width": 1200, "height": 900})
    yield made
    made.close()


@pytest.fixture
def user(server: Any) -> Any:
    """A new user of a role: (id, token, SDK client)."""

    def make(role: str) -> tuple[int, str, Any]:
        created, client = server.user(f"{role}-{uuid.uuid4().hex[:6]}", role)
        return int(created["id"]), str(created["token"]), client

    return make
