"""Truth inference at 10M and 100M answers: local in memory, local streamed, Spark local[2].

    python benchmarks/scale.py [--sizes 10000000,100000000] [--engines memory,stream,spark] [--workdir DIR]

Synthetic crowds (5 classes, 2,000 workers, a fifth spammers, overlap 5) written
to Parquet in chunks by ``crowdloop.sim.parquet.write_synthetic_parquet``. Each
run is a fresh process; peak memory is the largest summed RSS of that process
and its children (Spark's JVM), sampled every 0.2 s. Dawid-Skene, default
hyper-parameters. Writes ``benchmarks/results/scale.md`` and ``scale.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from _common import RESULTS, machine, markdown
from crowdloop.quality import DawidSkene
from crowdloop.sim.parquet import write_synthetic_parquet

ENGINES = ["memory", "stream", "spark"]
ANCHOR = "spark-crowd (Rodrigo et al.): Dawid-Skene on 100M labels in 703 s on one node, 426 s on 3 nodes / 30 cores"


def tree_rss_mb(pid: int) -> float:
    """Summed RSS of ``pid`` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        parents[child], rss[child] = int(fields[1]), int(fields[21])
    family, grew = {pid}, True
    while grew:
        extra = {c for c, p in parents.items() if p in family} - family
        family |= extra
        grew = bool(extra)
    return sum(rss.get(p, 0) for p in family) * 4096 / 2**20


class PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.running = 0.0, True

    def run(self) -> None:
        import os

        while self.running:
            self.peak = max(self.peak, tree_rss_mb(os.getpid()))
            time.sleep(0.2)


def one_run(engine: str, path: str, out: str) -> dict[str, float]:
    """In a child process: prepare, fit, write labels; time each part."""
    sampler = PeakSampler()
    sampler.start()
    ticks: list[float] = []
    started = time.perf_counter()
    estimator = DawidSkene()
    if engine == "memory":
        answers = pd.read_parquet(path)
        prepared = time.perf_counter()
        estimator.fit(answers, progress=lambda i, c: ticks.append(time.perf_counter()))
        estimator.labels_.rename("label").reset_index().to_parquet(out)
    elif engine == "stream":
        from crowdloop.scale import ParquetShards, stream_aggregate

        work = Path(out).with_suffix(".work")
        shards = ParquetShards.prepare(path, work)
        prepared = time.perf_counter()
        stream_aggregate(shards, estimator, out, progress=lambda i, c: ticks.append(time.perf_counter()))
        shutil.rmtree(work)
    else:
        from crowdloop.scale import SparkShards, fit_sharded, spark_session

        spark = spark_session("local[2]", driver_memory="5g")
        shards = SparkShards.from_answers(spark, path)
        prepared = time.perf_counter()
        fit = fit_sharded(estimator, shards, progress=lambda i, c: ticks.append(time.perf_counter()))
        shards.labels(fit).drop("probas").write.mode("overwrite").parquet(out)
        spark.stop()
    total = time.perf_counter() - started
    sampler.running = False
    per_iter = (ticks[-1] - prepared) / len(ticks)
    return {"prepare_s": prepared - started, "iterations": estimator.n_iter_, "s_per_iteration": per_iter,
            "total_s": total, "peak_mb": sampler.peak}  # fmt: skip


def accuracy(out: Path, gold: Path) -> float:
    labels = pd.read_parquet(out, columns=["task", "label"]).set_index("task")["label"]
    truth = pd.read_parquet(gold).set_index("task")["label"]
    return float((labels == truth.reindex(labels.index)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000000,100000000")
    parser.add_argument("--engines", default="memory,stream,spark")
    parser.add_argument("--workdir", default="/tmp/crowdloop-scale", help="where inputs are generated and runs write "
                        "(only what this run creates there is removed)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the generated Parquet files for the next run")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(*args.one)))
        return
    rows = []
    with Scratch(Path(args.workdir), keep=args.keep) as work:
        for size in [int(s) for s in args.sizes.split(",")]:
            path, gold = work.input(f"answers-{size}.parquet"), work.input(f"gold-{size}.parquet")
            if not path.exists():
                write_synthetic_parquet(path, size, gold_path=gold)
                work.made(path, gold)
            for engine in args.engines.split(","):
                if engine == "memory" and size > 20_000_000:
                    print(f"skip memory at {size:,}: about 16 GB at 100M (1.6 GB at 10M), over the 8 GB budget")
                    continue
                out = work.output(f"labels-{engine}-{size}.parquet")
                child = [sys.executable, __file__, "--one", engine, str(path), str(out)]
                done = subprocess.run(child, capture_output=True, text=True, check=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append({"answers": size, "engine": engine, **result, "accuracy": accuracy(out, gold)})
                print(rows[-1], flush=True)
    rows = merged_with_recorded(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    (RESULTS / "scale.md").write_text(render(rows))
    print(render(rows))


class Scratch:
    """``--workdir`` without harm to what was there: the inputs this run generates (kept for the
    next run with ``--keep``) and a ``run-*`` directory of its outputs, removed at the end; the
    directory itself only if this run made it and it is empty. It used to ``rm -rf`` the whole
    ``--workdir``, whatever else it held."""

    def __init__(self, root: Path, keep: bool = False) -> None:
        self.root, self.keep = root, keep
        self.created_root = not root.exists()
        self.generated: list[Path] = []
        self.run: Path | None = None

    def __enter__(self) -> Scratch:
        self.root.mkdir(parents=True, exist_ok=True)
        self.run = Path(tempfile.mkdtemp(prefix="run-", dir=self.root))
        return self

    def input(self, name: str) -> Path:
        """A generated input's place: shared between runs, so ``--keep`` can save regenerating it."""
        return self.root / name

    def output(self, name: str) -> Path:
        assert self.run is not None, "use Scratch in a with block"
        return self.run / name

    def made(self, *paths: Path) -> None:
        """Record inputs this run wrote (only those are removed)."""
        self.generated.extend(paths)

    def __exit__(self, *exc: object) -> None:
        if self.keep:
            return
        if self.run is not None:
            shutil.rmtree(self.run, ignore_errors=True)
        for path in self.generated:
            path.unlink(missing_ok=True)
        if self.created_root and not any(self.root.iterdir()):
            self.root.rmdir()


def merged_with_recorded(rows: list[dict]) -> list[dict]:
    """This run's rows plus the recorded rows of sizes and engines it did not run.

    Each row keeps the machine line of its own run, so a table assembled over
    several runs still says when and under what load each number was taken.
    """
    stamp = machine()
    fresh = {(row["answers"], row["engine"]): {**row, "machine": stamp} for row in rows}
    recorded_path = RESULTS / "scale.json"
    recorded = json.loads(recorded_path.read_text()).get("rows", []) if recorded_path.exists() else []
    kept = [row for row in recorded if "machine" in row and (row["answers"], row["engine"]) not in fresh]
    return sorted(kept + list(fresh.values()), key=lambda row: (row["answers"], ENGINES.index(row["engine"])))


def render(rows: list[dict]) -> str:
    table = pd.DataFrame(rows).drop(columns="machine")
    table = table.round({"prepare_s": 1, "s_per_iteration": 2, "total_s": 1, "peak_mb": 0, "accuracy": 4})
    machines = sorted({f"- {row['answers']:,} / {row['engine']}: {row['machine']}" for row in rows})
    return "\n".join([
        "# Truth inference at scale",
        "",
        "Machine and load of each row's run:",
        "",
        *machines,
        "",
        "Dawid-Skene on synthetic crowds (5 classes, 2,000 workers, overlap 5), Parquet written in chunks.",
        "`prepare_s`: reading (memory) or partitioning the file (stream: on local disk; spark: encode and cache);",
        "`peak_mb`: largest summed RSS of the run's process tree. Regenerate with `python benchmarks/scale.py`.",
        f"Published anchor: {ANCHOR}.",
        "",
        markdown(table),
        "",
        *targets(rows),
    ]) + "\n"  # fmt: skip


def targets(rows: list[dict]) -> list[str]:
    """Issue 7's targets, read off the rows: 100M through the local engine in under 300 s, Spark within 3x."""
    total = {(row["answers"], row["engine"]): row["total_s"] for row in rows}
    lines = ["Targets (issue 7):", ""]
    for size in sorted({row["answers"] for row in rows}):
        local = min((total[size, e] for e in ("memory", "stream") if (size, e) in total), default=None)
        if local is None:
            continue
        if size >= 100_000_000:
            lines.append(f"- {size:,} answers through the local engine: {local:.0f} s (target < 300 s: "
                         f"{'met' if local < 300 else 'not met'}).")  # fmt: skip
        if (size, "spark") in total:
            ratio = total[size, "spark"] / local
            lines.append(f"- Spark local[2] at {size:,}: {ratio:.1f}x the local engine (target <= 3x: "
                         f"{'met' if ratio <= 3 else 'not met'}).")  # fmt: skip
    return lines


if __name__ == "__main__":
    main()
