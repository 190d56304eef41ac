"""What an operator sees of a real `crowdloop serve`: its answers and its log while the database is
down, and its access log, in one process and in several."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from crowdloop.ports import free_port
from servers import ADMIN_TOKEN, start_server
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


ACCESS = re.compile(r"^\S+ \S+ INFO crowdloop\.access: (\S+) (\S+) (\d{3}) (\d+\.\d) ms user=(\S+)$", re.MULTILINE)


@pytest.mark.parametrize("workers", [1, 2])
def test_each_request_is_one_line_of_the_access_log(tmp_path: Path, workers: int) -> None:
    """There was no access log at all with one process, and uvicorn's own (the query string whole)
    with N; uvicorn logged at WARNING with one and INFO with N, whatever CROWDLOOP_LOG_LEVEL said."""
    server = start_server(f"sqlite:///{tmp_path / 'log.db'}", tmp_path, workers)
    try:
        me = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        user_id = httpx.get(f"{server.url}/api/v1/me?token=QuerySecret1&limit=5", headers=me).json()["id"]
        wrong = httpx.get(f"{server.url}/api/v1/projects", headers={"Authorization": "Bearer cl_WrongToken2"})
        assert wrong.status_code == 401
        assert httpx.get(f"{server.url}/api/v1/projects/987654321", headers=me).status_code == 404
        forged = "/x%0A2025-01-01 00:00:00 INFO crowdloop.access: POST /forged 200 1.0 ms user=1"
        assert (
            httpx.get(f"{server.url}{forged}?cl_BareToken3&ok=1").status_code == 404
        )  # the path, decoded, held a newline
        assert _wait_for(
            lambda: len(ACCESS.findall(server.log.read_text())) >= 4 and "/forged" in server.log.read_text(), 10
        )
    finally:
        server.stop()
    log = server.log.read_text()
    lines = {(method, target, status): user for method, target, status, _, user in ACCESS.findall(log)}
    assert lines[("GET", "/api/v1/me?limit&token", "200")] == str(user_id), log
    assert lines[("GET", "/api/v1/projects", "401")] == "anonymous", log
    assert lines[("GET", "/api/v1/projects/987654321", "404")] == str(user_id), log
    assert lines[("GET", "/api/v1/health", "200")] == "anonymous", log
    for secret in ("QuerySecret1", "cl_WrongToken2", "cl_BareToken3", ADMIN_TOKEN):
        assert secret not in log
    assert not re.search(r"^2025-01-01", log, re.MULTILINE), log  # no forged line of its own
    assert "GET /x\\n2025-01-01 00:00:00 INFO crowdloop.access: POST /forged 200 1.0 ms user=1??&ok 404" in log, log
    # uvicorn's own lines, at INFO and in crowdloop's format, in both modes
    assert re.search(r"^\S+ \S+ INFO uvicorn\.error: Application startup complete\.$", log, re.MULTILINE), log
    assert re.search(r"^\S+ \S+ INFO uvicorn\.error: (Finished server process|Shutting down)", log, re.MULTILINE), log


def test_at_warning_the_log_has_no_access_or_uvicorn_info_lines(tmp_path: Path) -> None:
    server = start_server(f"sqlite:///{tmp_path / 'quiet.db'}", tmp_path, 2, env={"CROWDLOOP_LOG_LEVEL": "warning"})
    try:
        assert httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).is_success
    finally:
        server.stop()
    log = server.log.read_text()
    assert " INFO " not in log and "crowdloop serving" in log, log


def test_what_counts_as_a_database_that_cannot_be_reached(tmp_path: Path) -> None:
    """A file SQLite cannot open and a refused PostgreSQL connection are the service's state (503);
    a statement that fails is not (a bug stays a 500 with its traceback)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from crowdloop.storage.db import database_unavailable, make_engine

    def error_of(url: str, statement: str = "SELECT 1") -> DBAPIError:
        engine = make_engine(url, pool_size=1)
        try:
            with engine.connect() as connection:
                connection.execute(text(statement))
        except DBAPIError as error:
            return error
        finally:
            engine.dispose()
        raise AssertionError(f"{statement} on {url} did not fail")

    assert database_unavailable(error_of(f"sqlite:///{tmp_path / 'no such folder' / 'x.db'}"))
    assert not database_unavailable(error_of(f"sqlite:///{tmp_path / 'x.db'}", "SELECT * FROM no_such_table"))
    require(postgres_available(), "PostgreSQL does not answer on 127.0.0.1:5432")
    port = free_port()  # nobody listens on it
    assert database_unavailable(error_of(f"postgresql://postgres@127.0.0.1:{port}/x"))
    with postgres_database() as url:
        assert not database_unavailable(error_of(url, "SELECT * FROM no_such_table"))
        assert not database_unavailable(error_of(url, "SELECT 1/0"))
