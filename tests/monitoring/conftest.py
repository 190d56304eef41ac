"""The real-server fixtures of tests/platform, shared here (that conftest is not on this directory's path).

It is loaded by file path under its own module name: ``platform`` is also a standard-library module.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from crowdloop.ports import free_port

_PATH = Path(__file__).resolve().parent.parent / "platform" / "conftest.py"
_SPEC = importlib.util.spec_from_file_location("crowdloop_platform_fixtures", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
platform_fixtures = sys.modules.setdefault(_SPEC.name, importlib.util.module_from_spec(_SPEC))
if not hasattr(platform_fixtures, "start_server"):
    _SPEC.loader.exec_module(platform_fixtures)

database_url = platform_fixtures.database_url
server = platform_fixtures.server


@pytest.fixture(scope="session")
def admin_token() -> str:
    """The token the servers above make their first admin with."""
    return str(platform_fixtures.ADMIN_TOKEN)


def start_server_with(database_url: str, log_dir: Path, workers: int, env: dict[str, str], wait: float = 120) -> Any:
    """tests/platform's ``start_server`` with extra environment and a longer wait: N processes on 2 busy cores."""
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    command = [sys.executable, "-m", "crowdloop", "serve", "--port", str(port), "--database-url", database_url,
               "--workers", str(workers)]  # fmt: skip
    full_env = {**os.environ, **env, "CROWDLOOP_ADMIN_TOKEN": platform_fixtures.ADMIN_TOKEN}
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=full_env)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + wait
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return platform_fixtures.Server(url, database_url, process, log)
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"crowdloop serve did not answer in {wait:.0f} s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def start_server() -> Any:
    """:func:`start_server_with`, for servers with their own settings."""
    return start_server_with
