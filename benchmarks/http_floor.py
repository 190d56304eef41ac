"""The floor under the answer-cycle benchmark: what the HTTP stack alone costs on this machine.

    python benchmarks/http_floor.py [--workers 10] [--seconds 15]

``benchmarks/platform_load.py`` measures crowdloop's answer cycle (next task, then submit) with
simulated workers in the same process as the load generator, on the same two cores as the
server and the database. This script runs the very same client loop (asyncio, one httpx
connection per worker) against a bare FastAPI app under uvicorn, as ``crowdloop serve`` runs
it, whose two routes do no work at all: one returns a task-sized JSON body, the other reads a
submit-sized body and answers with a small one. Its CPU per cycle (client and server) is what
any Python service on FastAPI pays before touching a database, so it bounds the cycles per
second this machine can reach: two cores divided by the CPU a cycle needs. Writes
``benchmarks/results/http_floor.md`` with the bare stack's cycles/s and CPU per cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from _common import RESULTS, machine, markdown
from platform_load import cpu_seconds, free_port

APP = textwrap.dedent(
    """
    from fastapi import FastAPI
    from pydantic import BaseModel

    app = FastAPI()
    TASK = {"assignment_id": 1, "project_id": 1, "data": {"text": "word " * 16},
            "labels": ["positive", "negative", "neutral"], "instructions": "Pick one.",
            "expires_at": "2026-01-01T00:00:00Z", "gold": False}

    class Submit(BaseModel):
        label: str
        seconds: float | None = None

    @app.post("/api/v1/projects/{project_id}/tasks/next")
    def next_task(project_id: int) -> dict:
        return TASK

    @app.post("/api/v1/assignments/{assignment_id}/answer")
    def submit(assignment_id: int, body: Submit) -> dict:
        return {"answer_id": assignment_id, "status": "accepted", "duplicate": False}
    """
)


async def _worker(url: str, deadline: float, counts: list[int]) -> None:
    async with httpx.AsyncClient(base_url=f"{url}/api/v1", timeout=30.0) as http:
        while time.perf_counter() < deadline:
            task = (await http.post("/projects/1/tasks/next")).json()
            await http.post(f"/assignments/{task['assignment_id']}/answer", json={"label": "neutral", "seconds": 3.5})
            counts[0] += 1


async def _drive(url: str, workers: int, seconds: float) -> int:
    counts = [0]
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(_worker(url, deadline, counts) for _ in range(workers)))
    return counts[0]


def run(workers: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "bare_app.py").write_text(APP)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port),
                                   "--log-level", "warning"], cwd=folder)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(url)
            asyncio.run(_drive(url, workers, 2.0))  # warm-up
            server_before, client_before, began = cpu_seconds([server.pid]), time.process_time(), time.perf_counter()
            cycles = asyncio.run(_drive(url, workers, seconds))
            wall = time.perf_counter() - began
            server_cpu, client_cpu = cpu_seconds([server.pid]) - server_before, time.process_time() - client_before
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"workers": workers, "cycles_per_s": cycles / wall, "server_ms_per_cycle": 1000 * server_cpu / cycles,
            "client_ms_per_cycle": 1000 * client_cpu / cycles,
            "ceiling_cycles_per_s": 2.0 * cycles / (server_cpu + client_cpu)}  # fmt: skip


def _wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/docs", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("the bare uvicorn app did not start in 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    row = run(args.workers, args.seconds)
    import pandas as pd

    text = (f"# The HTTP floor: a bare FastAPI app, the answer cycle's client loop\n\nMachine: {machine()}\n\n"
            f"`python benchmarks/http_floor.py --workers {args.workers} --seconds {args.seconds:g}`\n\n"
            f"{markdown(pd.DataFrame([row]))}\n\n"
            "`ceiling_cycles_per_s` is two cores divided by the client's and the server's CPU per cycle: "
            "the most cycles per second this machine could serve with a server that did no work at all "
            "and a database that cost nothing.\n")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "http_floor.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
