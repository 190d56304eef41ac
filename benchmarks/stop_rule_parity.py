"""Does the platform's dynamic overlap buy what the simulator's does? Replayed crowds over HTTP.

    python benchmarks/stop_rule_parity.py [--datasets temp,bluebird] [--seeds 3] [--target 0.95]
                                          [--database sqlite|postgresql]

``benchmarks/label_efficiency.py`` measures :class:`crowdloop.sim.DynamicOverlap` in process.
This script replays the same recorded crowds against a real ``crowdloop serve`` (the SDK, one
worker account per recorded worker, a replayed worker skipping items they never answered) with
the same policy's project settings, and runs the in-process policy on the same replay seeds:
labels per item and label accuracy against gold, side by side. The two differ by design in a
few places: the platform refits at each automatic aggregation (every 50 answers, or a tenth of
them) in a child process, so some answers come in before the refit that would have counted
them; it hands out items in queue order, not most-answered first; it has no worker pool for
dense crowds; and its final labels are its aggregation's (the default aggregator).
Writes ``benchmarks/results/stop_rule_parity.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from _common import RESULTS, SHARED_DATASETS, machine, markdown
from crowdloop.datasets import load_dataset
from crowdloop.sim import DynamicOverlap, ReplayedCrowd, run_in_process, run_over_http
from platform_load import start_server, throwaway_database

ADMIN_TOKEN = "stop-rule-parity-admin"


def one_dataset(name: str, seeds: list[int], target: float, url: str) -> list[dict[str, Any]]:
    data = load_dataset(name, SHARED_DATASETS)
    rows = []
    for seed in seeds:
        started = time.perf_counter()
        http = run_over_http(url, ADMIN_TOKEN, ReplayedCrowd(data.answers), DynamicOverlap(target), random_state=seed)
        http_seconds = time.perf_counter() - started
        local = run_in_process(ReplayedCrowd(data.answers), DynamicOverlap(target), random_state=seed)
        over, inside = http.summary(data.gold), local.summary(data.gold)
        rows.append({"dataset": name, "seed": seed,
                     "platform_accuracy": over["label_accuracy"], "platform_labels_per_item": over["labels_per_item"],
                     "sim_accuracy": inside["label_accuracy"], "sim_labels_per_item": inside["labels_per_item"],
                     "platform_seconds": http_seconds})  # fmt: skip
        shown = {key: round(value, 4) if isinstance(value, float) else value for key, value in rows[-1].items()}
        print(json.dumps(shown), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="temp,bluebird")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as workdir, throwaway_database(args.database, Path(workdir)) as db:
        server = start_server(db.url, ADMIN_TOKEN, 1, Path(workdir))
        try:
            for name in args.datasets.split(","):
                rows += one_dataset(name, list(range(args.seeds)), args.target, server.url)
        finally:
            server.stop()
    frame = pd.DataFrame(rows)
    summary = frame.groupby("dataset", sort=False).agg(
        seeds=("seed", "count"), platform_accuracy=("platform_accuracy", "mean"),
        platform_labels_per_item=("platform_labels_per_item", "mean"), sim_accuracy=("sim_accuracy", "mean"),
        sim_labels_per_item=("sim_labels_per_item", "mean"), platform_seconds=("platform_seconds", "mean"),
    ).reset_index()  # fmt: skip
    header = (f"# Dynamic overlap on the platform against the simulator\n\nMachine: {machine()}\n\n"
              f"`python benchmarks/stop_rule_parity.py --datasets {args.datasets} --seeds {args.seeds} "
              f"--target {args.target} --database {args.database}`, {time.perf_counter() - started:.0f} s. "
              "Each row: means over the replay seeds; the platform replays the crowd over HTTP against "
              "`crowdloop serve`, the simulator runs `DynamicOverlap` in process on the same seeds.\n\n")  # fmt: skip
    text = header + markdown(summary) + "\n\n## Each run\n\n" + markdown(frame) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stop_rule_parity.md").write_text(text)
    (RESULTS / "stop_rule_parity.json").write_text(json.dumps({"machine": machine(), "runs": rows}, indent=1))
    means = frame[["platform_accuracy", "platform_labels_per_item", "sim_accuracy", "sim_labels_per_item"]].mean()
    print(f"platform: accuracy {means.platform_accuracy:.4f} at {means.platform_labels_per_item:.2f} labels/item; "
          f"simulator: {means.sim_accuracy:.4f} at {means.sim_labels_per_item:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
