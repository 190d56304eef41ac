"""The worker page's responsiveness: time from a key press to the next item painted.

    python benchmarks/web.py [--items 120] [--read-ms 100,500] [--database sqlite|postgresql]

A real `crowdloop serve` (SQLite file, or a throwaway PostgreSQL database) and headless
Chromium (/usr/bin/chromium, driven by Playwright). One worker labels the project with the
keyboard: for each item the script waits ``read-ms`` (the worker reading), presses a label
key, and waits for the next item. The page itself measures, with ``performance.now()``, the
time from the key press (the key event's ``timeStamp``) to the first frame after the next item
is in the DOM (a ``requestAnimationFrame`` then a zero timeout); the script reads those
numbers. The page holds two leases (the item shown and the next one), so the next item is
already in memory; the answer is saved in the browser at once, sent after that frame, and the
following item leased once the answer is in. For comparison the table also
gives the durations, measured by the browser (Resource Timing), of the two requests a page
without prefetch would wait for in a row: the submit and the next-task call.
Writes ``benchmarks/results/web.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from _common import RESULTS, ROOT, machine
from crowdloop.client import Client
from crowdloop.ports import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
ADMIN = "cl_bench_admin_" + uuid.uuid4().hex


def start_server(database_url: str, log: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {**os.environ, "CROWDLOOP_ADMIN_TOKEN": ADMIN}
    command = [sys.executable, "-m", "crowdloop", "serve", "--port", str(port), "--database-url", database_url]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return url, process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"crowdloop serve did not start:\n{log.read_text()}")


def make_project(url: str, items: int) -> tuple[int, str]:
    admin = Client(url, ADMIN)
    owner = Client(url, str(admin.create_user(f"owner-{uuid.uuid4().hex[:6]}", "requester")["token"]))
    worker = admin.create_user(f"worker-{uuid.uuid4().hex[:6]}", "worker")
    project = owner.create_project(name="bench", labels=["no", "yes"], max_overlap=1, price=0.01)
    owner.import_items(project["id"], [{"data": {"text": f"sentence {i} " + "word " * 20}} for i in range(items)])
    owner.start(project["id"])
    return int(project["id"]), str(worker["token"])


def label_items(page: Any, count: int, read_ms: int) -> None:
    """Answer ``count`` items with the keyboard, reading each for ``read_ms``."""
    for index in range(count):
        shown = page.inner_text("#item")
        page.wait_for_timeout(read_ms)
        page.keyboard.press("1" if index % 2 else "2")
        deadline = time.monotonic() + 10
        while page.inner_text("#item") == shown:
            if time.monotonic() > deadline:
                raise RuntimeError("the next item did not show within 10 s")
            page.wait_for_timeout(2)


def run(url: str, browser: Any, items: int, read_ms: int) -> dict[str, Any]:
    project, token = make_project(url, items + 5)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{url}/ui/")
    page.fill("#token", token)
    page.press("#token", "Enter")
    page.wait_for_selector("#projects:not([hidden])")
    page.goto(f"{url}/ui/work.html?project={project}")
    page.wait_for_selector("#item .item")
    label_items(page, items, read_ms)
    page.wait_for_timeout(300)
    timings = page.evaluate("window.crowdloopTimings")
    requests = page.evaluate("performance.getEntriesByType('resource').map(e => [e.name, e.duration])")
    context.close()
    submit = [duration for name, duration in requests if name.endswith("/answer")]
    fetch = [duration for name, duration in requests if "/tasks/batch" in name]
    return {"read_ms": read_ms, "presses": len(timings), "timings": timings, "submit": submit, "fetch": fetch}


DESCRIPTION = (__doc__ or "").split("\n\n")[2].split("Writes")[0].strip().replace("\n", " ")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# Web UI: key press to next item painted",
        "",
        f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} when the run ended (other jobs share the cores).",
        "",
        DESCRIPTION,
        "",
        f"Database: {args.database}; {args.items} items answered per run. Regenerate with `python benchmarks/web.py`.",
        "Target of the issue: under 50 ms from key press to the next item, with the prefetch.",
        "",
        "| reading time per item | presses | next item painted p50 ms | p95 ms | max ms "
        "| submit request p50 ms | next-task request p50 ms | both in a row (no prefetch) p50 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        t, s, f = row["timings"], row["submit"], row["fetch"]
        lines.append(
            f"| {row['read_ms']} ms | {row['presses']} | {statistics.median(t):.1f} | {percentile(t, 0.95):.1f} "
            f"| {max(t):.1f} | {statistics.median(s):.1f} | {statistics.median(f):.1f} "
            f"| {statistics.median(s) + statistics.median(f):.1f} |"
        )
    return "\n".join(lines) + "\n"


def database_url(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    from sqlalchemy import create_engine, text

    name = "crowdloop_webbench_" + uuid.uuid4().hex[:8]
    admin = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--read-ms", default="100,500", help="reading times to simulate, comma separated")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--output", type=Path, default=RESULTS / "web.md")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        url, process = start_server(database_url(args.database, Path(tmp)), Path(tmp) / "serve.log")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                rows = [run(url, browser, args.items, int(ms)) for ms in args.read_ms.split(",")]
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=15)
    report = render(rows, args)
    print(report)
    args.output.write_text(report)


if __name__ == "__main__":
    main()
