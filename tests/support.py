"""Helpers shared by the test modules (importable as ``support``: tests/ is on pythonpath)."""

from __future__ import annotations

import os

import pytest


def require(condition: bool, reason: str) -> None:
    """Skip (on a user's machine) or fail (in CI) when a needed part is missing."""
    if condition:
        return
    if os.environ.get("CROWDLOOP_REQUIRE_ALL") == "1":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)
