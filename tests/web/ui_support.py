"""Helpers of the browser tests (importable: the test directory is on the path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
"""Where the tests leave the screenshots the README shows."""


def sign_in(page: Any, url: str, token: str) -> None:
    """Sign in through the form, with the keyboard."""
    page.goto(f"{url}/ui/")
    page.fill("#token", token)
    page.press("#token", "Enter")
    page.wait_for_selector("#projects:not([hidden])")


def wait_until(page: Any, condition: Any, what: str, timeout: float = 10.0) -> None:
    """Poll ``condition()`` from Python (the pages' Content-Security-Policy forbids Playwright's eval'd predicates)."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(10)
