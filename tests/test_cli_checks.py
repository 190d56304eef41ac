"""The command line refuses what cannot work before it starts: a port in use, an option out of
range, a path it cannot write, a database it cannot open. Each is one line and an exit code from
README's table, not a hang, a traceback or an error after minutes of work."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest


def crowdloop(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crowdloop", *args], capture_output=True, text=True, timeout=timeout)


def one_line(done: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert done.returncode == code, done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something listens on (and never answers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_port_in_use_says_so_before_serving(taken_port, tmp_path, workers):
    """It printed "crowdloop serving ..." and ended with exit 3 ("not fitted"), or a traceback with --workers 2."""
    done = crowdloop("serve", "--port", str(taken_port), "--workers", workers,
                     "--database-url", f"sqlite:///{tmp_path / 'db.sqlite'}")  # fmt: skip
    one_line(done, 2, f"port {taken_port} is in use on 127.0.0.1")
    assert "crowdloop serving" not in done.stderr


@pytest.mark.parametrize(("option", "value"), [("--port", "99999"), ("--port", "0"), ("--workers", "0")])
def test_serve_refuses_a_port_or_worker_count_out_of_range(option, value):
    """--port 99999 listened nowhere for ever; --workers 0 printed "0 process(es)"."""
    done = crowdloop("serve", option, value, timeout=60)
    assert done.returncode == 2 and f"Invalid value for '{option}'" in done.stderr, done.stderr
