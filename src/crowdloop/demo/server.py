"""A real ``crowdloop serve`` process on an SQLite file in the demo's directory."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from crowdloop.errors import CrowdloopError
from crowdloop.ports import ensure_port_free, free_port

START_TIMEOUT_S = 120.0


class LocalServer:
    """``crowdloop serve`` on ``sqlite:///<root>/crowdloop.db``, models under ``<root>/data``."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root, self.port = root, port or free_port()
        self.admin_token = "cl_demo_admin_" + secrets.token_hex(16)
        self.database_url = f"sqlite:///{root / 'crowdloop.db'}"
        self.log_path = root / "serve.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start the process and wait until it answers its health check.

        The port is checked first: another server on it answered the health check in the child's
        place, and the demo failed later on an "invalid or revoked token".
        """
        ensure_port_free("127.0.0.1", self.port)
        env = {**os.environ, "CROWDLOOP_ADMIN_TOKEN": self.admin_token, "CROWDLOOP_DATA_DIR": str(self.root / "data")}
        command = [sys.executable, "-m", "crowdloop", "serve", "--port", str(self.port), "--database-url",
                   self.database_url]  # fmt: skip
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise CrowdloopError(f"crowdloop serve exited with {self._process.returncode}; see {self.log_path}.")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise CrowdloopError(f"crowdloop serve did not start in {START_TIMEOUT_S:.0f} s; see {self.log_path}.")

    def stop(self) -> None:
        """Terminate the process (and wait for it)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(15)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
