"""Real servers for the tests: `crowdloop serve` processes on a SQLite file and on a throwaway
PostgreSQL database (skipped with a reason when PostgreSQL does not answer, unless
CROWDLOOP_REQUIRE_ALL=1). tests/platform and tests/monitoring import their fixtures from here.

A module of its own name: test modules imported these from ``conftest``, and which directory's
conftest that name meant depended on the order the directories were collected in (a run of
tests/platform with tests/monitoring failed to import ``ADMIN_TOKEN``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from crowdloop.client import Client
from crowdloop.ports import free_port
from support import postgres_available, postgres_database, require

START_TIMEOUT_S = 120  # generous: a loaded 2-core machine can take long to import and migrate
ADMIN_TOKEN = "cl_test_admin_" + uuid.uuid4().hex


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database per test module and backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'crowdloop.db'}"
        return
    require(postgres_available(), "PostgreSQL does not answer on 127.0.0.1:5432")
    with postgres_database() as url:
        yield url


@dataclass
class Server:
    """A running `crowdloop serve` process."""

    url: str
    database_url: str
    process: subprocess.Popen[bytes]
    log: Path
    admin: Client = field(init=False)
    admin_token: str = ADMIN_TOKEN

    def __post_init__(self) -> None:
        self.admin = Client(self.url, self.admin_token)

    def client(self, token: str) -> Client:
        return Client(self.url, token)

    def user(self, name: str, role: str) -> tuple[dict[str, object], Client]:
        created = self.admin.create_user(f"{name}-{uuid.uuid4().hex[:6]}", role)
        return created, self.client(str(created["token"]))

    def stop(self) -> None:
        self.admin.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(
    database_url: str, log_dir: Path, workers: int = 1, env: dict[str, str] | None = None,
    wait: float = START_TIMEOUT_S,
) -> Server:  # fmt: skip
    """``crowdloop serve`` on ``database_url``, with ``env`` added to the environment, once it answers
    (in ``wait`` seconds: N processes on 2 busy cores take longer than one)."""
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    env = {
        **os.environ,
        "CROWDLOOP_ADMIN_TOKEN": ADMIN_TOKEN,
        "CROWDLOOP_DATA_DIR": str(log_dir / "data"),
        "CROWDLOOP_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1",  # the tests' receivers listen here
        **(env or {}),
    }
    command = [sys.executable, "-m", "crowdloop", "serve", "--port", str(port), "--database-url", database_url,
               "--workers", str(workers)]  # fmt: skip
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"crowdloop serve exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return Server(url, database_url, process, log)
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"crowdloop serve did not start in {wait:.0f} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(database_url, tmp_path_factory.mktemp("logs"))
    yield running
    running.stop()
