"""Peak memory of each categorical method against its up-front estimate (the memory guard's check).

    python benchmarks/memory.py [--quick]

Synthetic answers (workers right 70% of the time, else a random label) at sizes where a different
term dominates: workers x classes² (the Dawid-Skene family's confusion matrices), tasks x classes,
workers x classes (MACE), answers. Every fit runs in a fresh process, twice: once for its peak RSS
(reset just before the fit) above the RSS before it (glibc's mmap threshold fixed, so memory freed
while the answers were made is not silently reused), once for the peak ``tracemalloc`` traces. The estimate
(``estimate_memory``) should be at or a little above the larger of the two. Writes
``benchmarks/results/memory.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from _common import RESULTS, machine, markdown
from crowdloop.quality import CATEGORICAL_METHODS, get_aggregator

SIZES = [  # answers, tasks, workers, classes; the methods whose estimate is under 4 GB run
    (2_000, 1_000, 100, 1_000),
    (2_000, 1_000, 100, 300),
    (20_000, 5_000, 400, 200),
    (300_000, 100_000, 100, 100),
    (200_000, 50_000, 50_000, 200),
    (1_000_000, 200_000, 20_000, 20),
    (2_000_000, 400_000, 2_000, 5),
]
QUICK = [(2_000, 1_000, 100, 300), (300_000, 100_000, 100, 100)]
MAX_ESTIMATE = 4 * 2**30


def answers(n_answers: int, n_tasks: int, n_workers: int, n_classes: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    task = np.arange(n_answers) % n_tasks
    truth = rng.integers(0, n_classes, n_tasks)
    label = np.where(rng.random(n_answers) < 0.7, truth[task], rng.integers(0, n_classes, n_answers))
    label[:n_classes] = np.arange(n_classes)  # every class answered
    worker = np.char.add("w", rng.integers(0, n_workers, n_answers).astype(str)).astype(object)
    return pd.DataFrame({"task": task, "worker": worker, "label": label})


def status_mb(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak RSS) of this process, from /proc/self/status."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) / 1024


def one_fit(method: str, sizes: tuple[int, int, int, int], traced: bool) -> dict[str, float]:
    """Runs in a child process: the fit's peak above what was in use before it."""
    frame = answers(*sizes)
    model = get_aggregator(method)
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := RSS: making the answers peaked higher
    before = status_mb("VmRSS")
    if traced:
        tracemalloc.start()
    model.fit(frame)
    if traced:
        return {"traced_mb": tracemalloc.get_traced_memory()[1] / 2**20}
    return {"rss_mb": status_mb("VmHWM") - before}


def measure(method: str, sizes: tuple[int, int, int, int], traced: bool) -> dict[str, float]:
    child = [sys.executable, __file__, "--one", method, ",".join(map(str, sizes))] + (["--traced"] if traced else [])
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    done = subprocess.run(child, capture_output=True, text=True, check=True, env=env)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="two sizes only")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        sizes = tuple(int(s) for s in args.one[1].split(","))
        print(json.dumps(one_fit(args.one[0], sizes, args.traced)))  # type: ignore[arg-type]
        return
    rows = []
    for sizes in QUICK if args.quick else SIZES:
        for method in CATEGORICAL_METHODS:
            estimate = get_aggregator(method).estimate_memory(*sizes) / 2**20
            if estimate * 2**20 > MAX_ESTIMATE:
                continue
            row = {"sizes": sizes, "method": method, "estimate_mb": estimate}
            row.update(measure(method, sizes, traced=False))
            row.update(measure(method, sizes, traced=True))
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = render(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory.md").write_text(report)
    print(report)


def render(rows: list[dict]) -> str:
    table = []
    for row in rows:
        peak = max(row["rss_mb"], row["traced_mb"])
        n, t, w, k = row["sizes"]
        table.append({
            "answers": f"{n:,}", "tasks": f"{t:,}", "workers": f"{w:,}", "classes": f"{k:,}", "method": row["method"],
            "peak RSS MB": round(row["rss_mb"]), "traced MB": round(row["traced_mb"]),
            "estimate MB": round(row["estimate_mb"]), "estimate / peak": f"{row['estimate_mb'] / peak:.2f}",
        })  # fmt: skip
    return "\n".join([
        "# Truth inference: peak memory against the up-front estimate",
        "",
        f"Machine: {machine()}.",
        "",
        "Each fit runs in a fresh process, twice: `peak RSS MB` is its peak RSS (`VmHWM`, reset just",
        "before the fit) above the RSS before it, which holds the answers (`MALLOC_MMAP_THRESHOLD_=131072`,",
        "so memory freed while they were made is not reused unseen); `traced MB` is the peak `tracemalloc`",
        "saw. `estimate MB` is `estimate_memory`, what the guard compares with the limit; `estimate / peak`",
        "is over the larger peak. Fits estimated over 4 GB are left out. Linux only (/proc). Regenerate",
        "with `python benchmarks/memory.py`.",
        "",
        markdown(pd.DataFrame(table)),
    ]) + "\n"  # fmt: skip


if __name__ == "__main__":
    main()
