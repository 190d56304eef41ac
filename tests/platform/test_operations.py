"""What an operator sees of a real `crowdloop serve`: its answers and its log while the database is down."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from conftest import ADMIN_TOKEN, start_server
from support import TcpRelay, postgres_available, postgres_database, require

SECRET = "S3cretPW"


def _wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/api/v1/health", timeout=30)


def test_a_database_that_goes_away_is_a_503_and_one_line_until_it_is_back(tmp_path: Path) -> None:
    """Every request, health included, was a 500 ``InternalError`` with a traceback of some 100
    lines in the log, and the webhook dispatcher added a traceback every second. Health must say
    503 (a load balancer drains the instance) and the server must serve again by itself."""
    require(postgres_available(), "PostgreSQL does not answer on 127.0.0.1:5432")
    with postgres_database() as direct:
        relay = TcpRelay(("127.0.0.1", 5432))
        name = direct.rsplit("/", 1)[1]
        # psycopg takes a password in the query; trust authentication ignores it, the log must not show it
        url = f"postgresql://postgres@127.0.0.1:{relay.port}/{name}?password={SECRET}"
        server = start_server(url, tmp_path)
        try:
            me = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            assert httpx.get(f"{server.url}/api/v1/me", headers=me).status_code == 200
            relay.cut()
            for _ in range(3):
                down = _health(server.url)
                assert down.status_code == 503, down.text
                assert down.json()["error"] == "DatabaseUnavailableError" and down.headers["Retry-After"] == "5"
            refused = httpx.get(f"{server.url}/api/v1/me", headers=me)
            assert (refused.status_code, refused.json()["error"]) == (503, "DatabaseUnavailableError")
            time.sleep(2)  # the webhook dispatcher's rounds fail meanwhile
            relay.restore()
            assert _wait_for(lambda: _health(server.url).status_code == 200)
            assert httpx.get(f"{server.url}/api/v1/me", headers=me).json()["name"] == "admin"
        finally:
            server.stop()
            relay.close()
    log = server.log.read_text()
    assert "Traceback" not in log and "InternalError" not in log, log
    assert SECRET not in log and "password=***" in log, log
    unavailable = [line for line in log.splitlines() if "database unavailable" in line]
    assert len(unavailable) >= 4 and all(" WARNING crowdloop.api.app: " in line for line in unavailable), log
    assert "GET /api/v1/health answered 503" in unavailable[0]
    assert "webhook dispatch round failed: the database is unavailable" in log
