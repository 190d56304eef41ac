"""The real-server fixtures of tests/platform (:mod:`servers`), and the admin token those servers make."""

from __future__ import annotations

import pytest

from servers import ADMIN_TOKEN, database_url, server

__all__ = ["admin_token", "database_url", "server"]


@pytest.fixture(scope="session")
def admin_token() -> str:
    """The token the servers above make their first admin with."""
    return ADMIN_TOKEN
