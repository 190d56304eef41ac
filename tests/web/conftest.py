"""Browser tests of the web UI: one `crowdloop serve` on SQLite and one headless Chromium per session.

The server comes from the tests' server helpers (:mod:`servers`). Chromium is Debian's (/usr/bin/chromium), driven by Playwright; the tests
skip without it, unless CROWDLOOP_REQUIRE_ALL=1.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servers import start_server
from support import require

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    database = tmp_path_factory.mktemp("web-db") / "crowdloop.db"
    running = start_server(f"sqlite:///{database}", tmp_path_factory.mktemp("web-logs"))
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
