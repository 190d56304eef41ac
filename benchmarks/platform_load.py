"""Platform throughput: item import and the worker's answer cycle, over HTTP, on PostgreSQL and SQLite.

    python benchmarks/platform_load.py [--sizes 10000,100000,1000000] [--concurrency 1,10,100] [--seconds 15]
                                  [--database postgresql|sqlite|postgresql,sqlite] [--server-workers 1,2]
                                  [--parts import,answers] [--output benchmarks/results/platform.md]

Each database is a throwaway one (PostgreSQL at 127.0.0.1:5432 as user postgres, dropped at the
end; SQLite in a temporary directory) served by a real ``crowdloop serve`` process on 127.0.0.1.

Import: for each size a project (3 labels, overlap exactly 3) gets random 16-word texts. The last
``min(size, --import-items)`` items go through the service layer in batches of 5,000: the first
``min(--inprocess-items, half)`` by calling ``crowdloop.crowd.items.import_items`` in this process
on the database (one transaction per batch, as a request), the rest by HTTP with the SDK's
``import_items`` (the user-facing path). Items before them are bulk-loaded with ``COPY`` (SQLite:
``executemany``), untimed, with the same data, content hashes, MinHash signatures and LSH band keys;
so the import rates are those of a project already holding that many items. Each timed import
stops after ``--import-seconds`` and the remainder is bulk-loaded.

Answer cycles: ``N`` simulated workers (asyncio, one httpx connection and token each, in this
process, which shares the machine's cores with the server and the database) loop on *next task*
then *submit* for ``--seconds`` or until their share of the project's capacity is used. Latency
is measured in the client around each request. Writes ``benchmarks/results/platform.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's ``platform``, which ``_common`` and ``uuid`` import:
# take the benchmarks folder off the path until the real one is loaded.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
import platform  # noqa: E402, F401  (the standard library's, cached in sys.modules)

sys.path.insert(0, str(_HERE))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sqlalchemy import select  # noqa: E402

from _common import RESULTS, ROOT, machine, markdown  # noqa: E402
from crowdloop.client import Client  # noqa: E402
from crowdloop.crowd.dedup import (  # noqa: E402
    content_hash,
    item_text,
    lsh_band_keys,
    minhash_signatures,
    pack_signatures,
)
from crowdloop.crowd.items import import_items  # noqa: E402
from crowdloop.crowd.near_duplicates import NEAR_BANDS, NEAR_PERM  # noqa: E402
from crowdloop.ports import free_port  # noqa: E402
from crowdloop.storage.db import make_engine, session_factory, unit_of_work  # noqa: E402
from crowdloop.storage.lsh import add_band_keys  # noqa: E402
from crowdloop.storage.models import Item, User  # noqa: E402

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BATCH = 5_000
LABELS = ["positive", "negative", "neutral"]
OVERLAP = 3
WORDS_PER_ITEM = 16
PARTS = ("import", "answers")
"""What a run measures (``--parts``): the import alone needs no simulated workers."""
TICKS = os.sysconf("SC_CLK_TCK")
REQUEST_TIMEOUT = 30.0
"""A simulated worker gives up on a request after this many seconds (counted as an error)."""
WARM_UP = 10.0
"""Seconds the workers get for their warm-up cycle before the timed run starts regardless."""
GRACE = 5.0
"""Seconds after the run's end for requests in flight; those still out then are cut and counted."""


# ---------------------------------------------------------------- data


class Texts:
    """Random texts of 16 words from a 5,000-word made-up vocabulary: distinct, no near duplicates."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        self.vocab = ["".join(self.rng.choice(letters, size=self.rng.integers(3, 10))) for _ in range(5_000)]

    def batch(self, n: int) -> list[dict[str, Any]]:
        words = self.rng.integers(0, len(self.vocab), size=(n, WORDS_PER_ITEM)).tolist()
        vocab = self.vocab
        return [{"data": {"text": " ".join([vocab[w] for w in row])}} for row in words]


# ---------------------------------------------------------------- databases and servers


@dataclass
class Database:
    kind: str
    url: str
    name: str = ""
    path: Path | None = None


@contextlib.contextmanager
def throwaway_database(kind: str, workdir: Path) -> Iterator[Database]:
    """A fresh database, dropped (PostgreSQL) or deleted (SQLite) afterwards."""
    if kind == "sqlite":
        path = workdir / "crowdloop-bench.db"
        yield Database(kind, f"sqlite:///{path}", path=path)
        return
    from sqlalchemy import create_engine, text

    name = "crowdloop_bench_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield Database(kind, f"postgresql://postgres@127.0.0.1:5432/{name}", name=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Server:
    """A running ``crowdloop serve`` process (and its uvicorn worker processes)."""

    url: str
    process: subprocess.Popen[bytes]
    workers: int
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def pids(self) -> list[int]:
        """The serve process and its children (uvicorn's worker processes with ``--workers N``)."""
        return [self.process.pid, *_children(self.process.pid)]


def start_server(database_url: str, admin_token: str, workers: int, log_dir: Path) -> Server:
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    env = {**os.environ, "CROWDLOOP_ADMIN_TOKEN": admin_token}
    command = [sys.executable, "-m", "crowdloop", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--database-url", database_url, "--workers", str(workers)]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"crowdloop serve exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                server = Server(url, process, workers, log)
                if workers > 1:  # every worker process must be up before timing starts
                    _wait_for_children(process.pid, workers, deadline)
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"crowdloop serve did not start in 60 s:\n{log.read_text()}")


def _wait_for_children(pid: int, workers: int, deadline: float) -> None:
    while time.monotonic() < deadline and len(_children(pid)) < workers:
        time.sleep(0.2)
    time.sleep(2)  # the workers import the app after they appear


def _children(pid: int) -> list[int]:
    """Direct and indirect child processes of ``pid``, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds so far of these processes."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def postgres_pids() -> list[int]:
    """Every PostgreSQL process on the machine (backends, WAL writer, checkpointer...)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


# ---------------------------------------------------------------- import


def bulk_load(db: Database, project_id: int, rows: list[dict[str, Any]]) -> None:
    """Untimed set-up: items straight into the tables, as the service would store them, with
    their MinHash signatures and LSH band keys, so a timed import compares with all of them."""
    now = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    signatures = minhash_signatures([item_text(row["data"]) for row in rows], num_perm=NEAR_PERM)
    hashes = [content_hash(row["data"]) for row in rows]
    records = [
        (project_id, json.dumps(row["data"], ensure_ascii=False), key, now, packed)
        for row, key, packed in zip(rows, hashes, pack_signatures(signatures), strict=True)
    ]
    columns = ("project_id, data, content_hash, created_at, minhash, is_gold, gold_label, priority, answer_count, "
               "reserved, done, source")  # fmt: skip
    if db.kind == "sqlite":
        assert db.path is not None
        with contextlib.closing(sqlite3.connect(db.path, timeout=60)) as connection, connection:
            connection.executemany(
                f"INSERT INTO items ({columns}) VALUES (?, ?, ?, ?, ?, 0, 'null', 0.0, 0, 0, 0, 'import')", records
            )
    else:
        import psycopg

        copy_sql = f"COPY items ({columns}) FROM STDIN"
        with (
            psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db.name}") as connection,
            connection.cursor() as cursor,
            cursor.copy(copy_sql) as copy,
        ):
            for record in records:
                copy.write_row((*record, False, "null", 0.0, 0, 0, False, "import"))
    _bulk_band_keys(db, project_id, hashes, lsh_band_keys(signatures, NEAR_BANDS))


def _bulk_band_keys(db: Database, project_id: int, hashes: list[str], keys: np.ndarray) -> None:
    """The band keys of bulk-loaded items, found again by content hash, through the repository."""
    engine = make_engine(db.url, pool_size=1)
    try:
        with unit_of_work(session_factory(engine)) as session:
            query = select(Item.id, Item.content_hash).where(Item.project_id == project_id)
            ids = dict(session.execute(query.order_by(Item.id.desc()).limit(len(hashes))).tuples().all())
            by_hash = {key: item_id for item_id, key in ids.items()}
            add_band_keys(session, project_id, np.array([by_hash[key] for key in hashes], dtype=np.int64), keys)
    finally:
        engine.dispose()


@dataclass
class ImportRun:
    path: str
    before: int
    items: int = 0
    seconds: float = 0.0
    batches: list[float] = field(default_factory=list)


def import_http(client: Client, project_id: int, texts: Texts, n: int, before: int, budget: float) -> ImportRun:
    run = ImportRun("HTTP (SDK import_items)", before)
    deadline = time.perf_counter() + budget
    while run.items < n and time.perf_counter() < deadline:
        rows = texts.batch(min(BATCH, n - run.items))
        started = time.perf_counter()
        report = client.import_items(project_id, rows)
        run.batches.append(time.perf_counter() - started)
        run.items += int(report["created"])
    run.seconds = sum(run.batches)
    return run


def import_in_process(
    database_url: str, requester_id: int, project_id: int, texts: Texts, n: int, before: int, budget: float
) -> ImportRun:
    run = ImportRun("in-process (items.import_items)", before)
    engine = make_engine(database_url)
    factory = session_factory(engine)
    deadline = time.perf_counter() + budget
    try:
        while run.items < n and time.perf_counter() < deadline:
            rows = texts.batch(min(BATCH, n - run.items))
            started = time.perf_counter()
            with unit_of_work(factory) as session:
                actor = session.get(User, requester_id)
                assert actor is not None
                report = import_items(session, actor, project_id, rows)
            run.batches.append(time.perf_counter() - started)
            run.items += report.created
    finally:
        engine.dispose()
    run.seconds = sum(run.batches)
    return run


@dataclass
class BenchProject:
    size: int
    project_id: int
    imports: list[ImportRun]
    bulk_loaded: int


def build_project(
    db: Database, requester: Client, requester_id: int, size: int, args: argparse.Namespace
) -> BenchProject:
    """A project of ``size`` items: bulk-loaded head, then timed in-process and HTTP imports."""
    project = requester.create_project(
        name=f"bench-{size}", labels=LABELS, min_overlap=OVERLAP, max_overlap=OVERLAP, lease_seconds=600
    )
    project_id = int(project["id"])
    texts = Texts(seed=size)
    timed = min(size, args.import_items) if "import" in args.parts else 0  # answers alone: all set-up
    inprocess = min(args.inprocess_items, timed // 2)
    bulk = size - timed
    _bulk(db, project_id, texts, bulk)
    imports = []
    if inprocess:
        imports.append(import_in_process(db.url, requester_id, project_id, texts, inprocess, bulk, args.import_seconds))
    done = bulk + sum(run.items for run in imports)
    if size > done:
        imports.append(import_http(requester, project_id, texts, size - done, done, args.import_seconds))
        done += imports[-1].items
    if done < size:  # a timed import ran out of time: fill up untimed
        _bulk(db, project_id, texts, size - done)
        bulk += size - done
    for run in imports:
        print(f"  import {run.path:32s} {run.items:>9,} items into {run.before:>9,} in {run.seconds:6.1f} s: "
              f"{run.items / max(run.seconds, 1e-9):8,.0f} items/s", flush=True)  # fmt: skip
    if db.kind == "postgresql":
        analyze(db)
    requester.start(project_id)
    return BenchProject(size, project_id, imports, bulk)


def analyze(db: Database, vacuum: bool = False) -> None:
    """Fresh planner statistics (and the visibility map), as autovacuum keeps them on a live system.

    Right after a large import autovacuum has not yet run: ``next_task``'s candidate query is then
    planned as a nested loop over every open item and the worker's assignments (about 250 ms at
    10,000 items after 200 answers, against 0.3 ms once analysed), and autovacuum catching up on a
    fresh 950,000 rows would share the two cores with the timed import.
    """
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db.name}", autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE" if vacuum else "ANALYZE")


def _bulk(db: Database, project_id: int, texts: Texts, n: int) -> None:
    started = time.perf_counter()
    for start in range(0, n, 100_000):
        bulk_load(db, project_id, texts.batch(min(100_000, n - start)))
    if n and db.kind == "postgresql":
        analyze(db, vacuum=True)
    if n:
        print(f"  bulk-loaded {n:,} items in {time.perf_counter() - started:.1f} s (untimed set-up)", flush=True)


# ---------------------------------------------------------------- answer cycles


@dataclass
class CycleStats:
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    exhausted: int = 0
    in_flight: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclass
class Gate:
    """Workers warm up, start together, take no new task after ``deadline``."""

    start: asyncio.Event = field(default_factory=asyncio.Event)
    ready: int = 0
    deadline: float = float("inf")


async def _worker(url: str, token: str, project_id: int, cycles: int, gate: Gate, stats: CycleStats) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    rng = np.random.default_rng(int(token.encode().hex()[-8:], 16))
    async with httpx.AsyncClient(base_url=f"{url}/api/v1", headers=headers, timeout=REQUEST_TIMEOUT) as http:
        await _cycle(http, project_id, rng, stats, timed=False)  # warm-up: connection, standing row
        gate.ready += 1
        await gate.start.wait()
        done = 0
        while done < cycles and time.perf_counter() < gate.deadline:
            outcome = await _cycle(http, project_id, rng, stats, timed=True)
            if outcome == "exhausted":
                stats.exhausted += 1
                return
            done += outcome == "ok"


async def _cycle(
    http: httpx.AsyncClient, project_id: int, rng: np.random.Generator, stats: CycleStats, *, timed: bool
) -> str:
    """One next task then submit; latencies into ``stats`` unless it is the warm-up."""
    prefix = "" if timed else "warm-up "
    started = time.perf_counter()
    response = await _post(http, f"/projects/{project_id}/tasks/next", None, f"{prefix}next", stats)
    took = time.perf_counter() - started
    if response is None:
        return "error"
    if response.status_code == 204:
        return "exhausted"
    assignment_id = response.json()["assignment_id"]
    body = {"label": LABELS[int(rng.integers(len(LABELS)))], "seconds": float(rng.uniform(2, 20))}
    started = time.perf_counter()
    answer = await _post(http, f"/assignments/{assignment_id}/answer", body, f"{prefix}submit", stats)
    if answer is None:
        return "error"
    if timed:
        stats.next_ms.append(1000 * took)
        stats.submit_ms.append(1000 * (time.perf_counter() - started))
    return "ok"


async def _post(
    http: httpx.AsyncClient, path: str, body: dict[str, Any] | None, kind: str, stats: CycleStats
) -> httpx.Response | None:
    """The response, or None after counting the error (transport error, timeout, HTTP status)."""
    stats.in_flight += 1
    try:
        response = await http.post(path, json=body)
    except httpx.HTTPError as error:
        stats.error(f"{kind}: {type(error).__name__}")
        return None
    finally:
        stats.in_flight -= 1
    if response.status_code not in (200, 204):
        stats.error(f"{kind}: HTTP {response.status_code}")
        return None
    return response


async def _run_cycles(
    url: str, tokens: list[str], project_id: int, cycles_each: int, seconds: float, cpu: Any
) -> tuple[CycleStats, float, dict[str, float]]:
    """Warm up (at most WARM_UP s), run ``seconds``, then cut requests still out after GRACE s."""
    stats, gate = CycleStats(), Gate()
    tasks = [asyncio.create_task(_worker(url, t, project_id, cycles_each, gate, stats)) for t in tokens]
    warm_until = time.perf_counter() + WARM_UP
    while gate.ready + sum(t.done() for t in tasks) < len(tasks) and time.perf_counter() < warm_until:
        await asyncio.sleep(0.02)
    before = cpu()
    began = time.perf_counter()
    gate.deadline = began + seconds
    gate.start.set()
    _, pending = await asyncio.wait(tasks, timeout=seconds + GRACE)
    wall = time.perf_counter() - began
    used = cpu(before)
    cut = stats.in_flight
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    stats.in_flight = cut
    return stats, wall, used


def answer_cycles(
    server: Server, db: Database, tokens: list[str], project: BenchProject, cycles_each: int, seconds: float
) -> dict[str, Any]:
    """Run the workers once; throughput, latency percentiles and where the CPU went."""

    def cpu(before: dict[str, dict[int, float]] | None = None) -> Any:
        now = {
            "server": {pid: cpu_seconds([pid]) for pid in server.pids()},
            "database": {pid: cpu_seconds([pid]) for pid in postgres_pids()} if db.kind == "postgresql" else {},
            "client": {0: time.process_time()},
        }
        if before is None:
            return now
        return {k: sum(v - before[k].get(pid, 0.0) for pid, v in now[k].items()) for k in now}

    stats, wall, used = asyncio.run(_run_cycles(server.url, tokens, project.project_id, cycles_each, seconds, cpu))

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    return {
        "cycles": len(stats.submit_ms), "seconds": wall, "cycles_per_s": len(stats.submit_ms) / wall,
        "next_p50": pct(stats.next_ms, 50), "next_p99": pct(stats.next_ms, 99),
        "submit_p50": pct(stats.submit_ms, 50), "submit_p99": pct(stats.submit_ms, 99),
        "server_cpu": used["server"] / wall, "database_cpu": used["database"] / wall,
        "client_cpu": used["client"] / wall, "errors": sum(stats.errors.values()), "error_kinds": stats.errors,
        "exhausted": stats.exhausted, "cut": stats.in_flight,
    }  # fmt: skip


# ---------------------------------------------------------------- the run


def run_database(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Everything on one throwaway database: projects, imports, then the answer cycles."""
    sizes = args.sizes if kind == "postgresql" else [s for s in args.sizes if s <= args.sqlite_max_items]
    server_workers = args.server_workers if kind == "postgresql" else [1]
    print(f"== {kind}: sizes {sizes}, server processes {server_workers}", flush=True)
    admin_token = "cl_bench_admin_" + uuid.uuid4().hex
    with tempfile.TemporaryDirectory() as tmp, throwaway_database(kind, Path(tmp)) as db:
        server = start_server(db.url, admin_token, server_workers[0], Path(tmp))
        try:
            with Client(server.url, admin_token, timeout=600) as admin:
                created = admin.create_user("bench-requester", "requester")
                tokens = [
                    str(admin.create_user(f"bench-worker-{i}", "worker")["token"]) for i in range(max(args.concurrency))
                ]
            with Client(server.url, str(created["token"]), timeout=600) as requester:
                projects = [build_project(db, requester, int(created["id"]), size, args) for size in sizes]
            cycles = []
            configs = len(server_workers) * len(args.concurrency)
            for workers in server_workers if "answers" in args.parts else []:
                if server.workers != workers:
                    server.stop()
                    server = start_server(db.url, admin_token, workers, Path(tmp))
                for project in projects:
                    share = min(args.max_cycles, project.size * OVERLAP // configs)
                    for concurrency in args.concurrency:
                        offset = server.log.stat().st_size
                        result = answer_cycles(
                            server, db, tokens[:concurrency], project, max(1, share // concurrency), args.seconds
                        )
                        trouble = result["errors"] or result["cut"]
                        if trouble:  # requests may still hang in the server: start afresh
                            server.stop()
                        else:
                            time.sleep(0.5)  # let the server write what went wrong
                        result["server_errors"] = server_errors(server.log, offset)
                        result |= {"server_workers": workers, "items": project.size, "concurrency": concurrency}
                        cycles.append(result)
                        _print_cycles(result)
                        if trouble:
                            server = start_server(db.url, admin_token, workers, Path(tmp))
        except BaseException:
            server.stop()
            print(f"crowdloop serve's log ends:\n{_tail(server.log, 40)}", file=sys.stderr)
            raise
        server.stop()
    return {"kind": kind, "projects": projects, "cycles": cycles}


def _tail(path: Path, lines: int) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _print_cycles(row: dict[str, Any]) -> None:
    print(
        f"  cycles: {row['server_workers']} process(es) {row['items']:>9,} items {row['concurrency']:>4} workers: "
        f"{row['cycles']:>6} in {row['seconds']:5.1f} s = {row['cycles_per_s']:6.1f}/s; "
        f"next p50/p99 {row['next_p50']:.1f}/{row['next_p99']:.1f} ms, "
        f"submit p50/p99 {row['submit_p50']:.1f}/{row['submit_p99']:.1f} ms; "
        f"CPU server {row['server_cpu']:.2f} db {row['database_cpu']:.2f} client {row['client_cpu']:.2f}; "
        f"errors {row['error_kinds']} cut {row['cut']} exhausted {row['exhausted']}; server {row['server_errors']}",
        flush=True,
    )


def server_errors(log: Path, offset: int) -> dict[str, int]:
    """What the server logged as failing since ``offset``: exceptions by kind, counted."""
    with log.open("rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("sqlalchemy.exc.") and not line.startswith("ERROR:    Exception"):
            continue
        kind = next((name for key, name in ERROR_KINDS.items() if key in line), None)
        if kind is None and line.startswith("sqlalchemy.exc."):
            kind = line.split(":", 1)[0].removeprefix("sqlalchemy.exc.")
        if kind is not None:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


ERROR_KINDS = {
    "DeadlockDetected": "deadlock",
    "QueuePool limit": "pool timeout",
    "database is locked": "database locked",
    "ERROR:    Exception": "500s",
}


def code_version() -> str:
    """The commit measured, and the application files that differed from it (work in progress)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True, cwd=ROOT)
    except OSError:
        return "unknown"
    changed = [line[3:] for line in dirty.stdout.splitlines()]
    suffix = f" with uncommitted changes to {', '.join(changed)}" if changed else ""
    return f"commit {commit.stdout.strip() or 'unknown'}{suffix}"


TITLES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
VERSION = "unknown"


def render(results: list[dict[str, Any]], args: argparse.Namespace, started: float) -> str:
    lines = [
        "# Platform: import and answer-cycle throughput",
        "",
        f"Machine: {machine()}.",
        "",
        f"Code: {VERSION}.",
        "",
        "A real `crowdloop serve` (uvicorn) on 127.0.0.1 and a throwaway database; the load generator is",
        "this script, on the same cores. Projects have 3 labels and overlap exactly 3; items are random",
        f"{WORDS_PER_ITEM}-word texts. Import batches are {BATCH:,} rows; the items a project holds *before* a",
        "timed import were bulk-loaded with `COPY` (SQLite: `executemany`), untimed; on PostgreSQL the",
        "set-up then runs `VACUUM ANALYZE`, and `ANALYZE` again after the imports, as autovacuum would.",
        "Answer cycles: each simulated worker (asyncio + httpx, own token and connection) loops next task,",
        f"submit, for {args.seconds:g} s or its share of the project's capacity, after one untimed warm-up",
        f"cycle (the run starts anyway after {WARM_UP:g} s); latency is measured in the client, over the",
        "requests that succeeded. `client errors`: HTTP 5xx, dropped connections and requests unanswered",
        f"after {REQUEST_TIMEOUT:g} s; `cut at end`: requests still unanswered {GRACE:g} s after the run, abandoned",
        "(the server is then restarted); `server log`: what the server logged as failing during the run.",
        "CPU columns are cores busy on average (server processes, all PostgreSQL processes, this client).",
        "Targets of the issue: import at least 20,000 items/s into PostgreSQL; at least 500 answer",
        "cycles/s with p99 under 100 ms. `CPU ms/cycle` adds the server's, the database's and the client's",
        "CPU per cycle: two cores divided by it bound the cycles/s this machine can reach at all.",
        "`benchmarks/results/http_floor.md` measures the same client against a FastAPI app that does",
        "nothing, for what the HTTP stack alone costs.",
        f"Regenerate with `python benchmarks/platform_load.py` ({(time.time() - started) / 60:.0f} min for this run:",
        f"`--sizes {','.join(map(str, args.sizes))} --concurrency {','.join(map(str, args.concurrency))} "
        f"--seconds {args.seconds:g} --database {','.join(args.database)} --parts {','.join(args.parts)}`).",
    ]
    for result in results:
        title = TITLES[result["kind"]]
        imports = [
            {
                "project items": f"{project.size:,}", "path": run.path, "items held before": f"{run.before:,}",
                "items imported": f"{run.items:,}", "seconds": f"{run.seconds:.1f}",
                "items/s": f"{run.items / run.seconds:,.0f}" if run.seconds else "–",
                "median s per 5,000": f"{np.median(run.batches):.2f}" if run.batches else "–",
            }
            for project in result["projects"]
            for run in project.imports
        ]  # fmt: skip
        cycles = [
            {
                "server processes": row["server_workers"], "project items": f"{row['items']:,}",
                "workers": row["concurrency"], "cycles": row["cycles"], "seconds": f"{row['seconds']:.1f}",
                "cycles/s": f"{row['cycles_per_s']:.1f}",
                "next p50 ms": _ms(row["next_p50"]), "next p99 ms": _ms(row["next_p99"]),
                "submit p50 ms": _ms(row["submit_p50"]), "submit p99 ms": _ms(row["submit_p99"]),
                "CPU server": f"{row['server_cpu']:.2f}",
                "CPU db": f"{row['database_cpu']:.2f}" if result["kind"] == "postgresql" else "–",
                "CPU client": f"{row['client_cpu']:.2f}",
                "CPU ms/cycle": f"{cpu_ms_per_cycle(row):.1f}",
                "client errors": row["errors"], "cut at end": row["cut"],
                "server log": ", ".join(f"{k} {v}" for k, v in row["server_errors"].items()) or "–",
            }
            for row in result["cycles"]
        ]  # fmt: skip
        lines += ["", f"## {title}: import", "", markdown(pd.DataFrame(imports))]
        if cycles:
            lines += [
                "",
                f"## {title}: answer cycles (next task + submit over HTTP)",
                "",
                markdown(pd.DataFrame(cycles)),
            ]
    return "\n".join(lines) + "\n"


def cpu_ms_per_cycle(row: dict[str, Any]) -> float:
    """Milliseconds of CPU, on every process of the run (server, database, load generator), per cycle."""
    busy = row["server_cpu"] + row["database_cpu"] + row["client_cpu"]
    return 1000.0 * busy / row["cycles_per_s"] if row["cycles_per_s"] else float("nan")


def _ms(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:,.1f}"


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_ints, default=_ints("10000,100000,1000000"), help="items per project")
    parser.add_argument("--concurrency", type=_ints, default=_ints("1,10,100"), help="simulated workers")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each answer-cycle run")
    parser.add_argument("--database", type=lambda s: s.split(","), default=["postgresql", "sqlite"])
    parser.add_argument("--server-workers", type=_ints, default=_ints("1,2"), help="`serve --workers` (PostgreSQL)")
    parser.add_argument("--sqlite-max-items", type=int, default=100_000, help="largest SQLite project")
    parser.add_argument("--import-items", type=int, default=50_000, help="items per project imported timed")
    parser.add_argument("--inprocess-items", type=int, default=10_000, help="of which through the service directly")
    parser.add_argument("--import-seconds", type=float, default=150.0, help="time bound of each timed import")
    parser.add_argument("--max-cycles", type=int, default=50_000, help="answer cycles per run, at most")
    parser.add_argument("--parts", type=lambda s: s.split(","), default=list(PARTS), help="import and/or answers")
    parser.add_argument("--output", type=Path, default=RESULTS / "platform.md", help="where the report is written")
    args = parser.parse_args()
    unknown = set(args.database) - set(TITLES)
    if unknown:
        parser.error(f"unknown database {', '.join(sorted(unknown))}; use postgresql and/or sqlite")
    if not args.parts or set(args.parts) - set(PARTS):
        parser.error(f"--parts must name some of {', '.join(PARTS)}, got {','.join(args.parts)}")
    started = time.time()
    global VERSION
    VERSION = code_version()  # before the run: the files may change while it goes on
    results = [run_database(kind, args) for kind in args.database]
    report = render(results, args, started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
