"""Helpers of the deploy tests (one module, imported by the conftest and the tests alike)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

START_TIMEOUT_S = 120
ADMIN_TOKEN = "cl_test_admin_" + uuid.uuid4().hex


def records(items: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in items.to_dict("records")]


@dataclass
class Serve:
    """A `crowdloop serve` process on a fixed port, database file and data directory."""

    port: int
    database_url: str
    data_dir: Path
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Serve:
        env = {**os.environ, "CROWDLOOP_ADMIN_TOKEN": ADMIN_TOKEN, "CROWDLOOP_DATA_DIR": str(self.data_dir)}
        log = (self.log_dir / f"serve-{time.monotonic_ns()}.log").open("wb")
        command = [sys.executable, "-m", "crowdloop", "serve", "--port", str(self.port),
                   "--database-url", self.database_url]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"crowdloop serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"crowdloop serve did not start in {START_TIMEOUT_S} s")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a machine dies."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(15)

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/api/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
        )
