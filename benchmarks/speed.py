"""Speed and memory of the aggregators on synthetic crowds, Crowd-Kit beside.

    python benchmarks/speed.py [--sizes 100000,1000000,10000000] [--crowdkit-python PY]

Synthetic answers as in ``shared/peers.md``: 5 classes, 2,000 workers of varied
quality (a fifth of them spammers), overlap 5. Every fit runs in a fresh
process so its peak memory (max RSS, data included) is its own. Writes
``benchmarks/results/speed.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from _common import RESULTS, find_crowdkit_python, machine, markdown, run_crowdkit
from crowdloop.quality import get_aggregator
from crowdloop.quality.metrics import accuracy_on_gold
from crowdloop.sim import synthetic_answers

OURS = {  # answers -> methods timed at that size
    100_000: ["majority_vote", "wawa", "dawid_skene", "one_coin_dawid_skene", "glad", "mace", "default"],
    1_000_000: ["majority_vote", "wawa", "dawid_skene", "one_coin_dawid_skene", "glad", "mace", "default"],
    10_000_000: ["majority_vote", "dawid_skene", "one_coin_dawid_skene"],
}
CROWDKIT = {
    100_000: ["MajorityVote", "Wawa", "DawidSkene", "OneCoinDawidSkene", "GLAD", "MACE"],
    1_000_000: ["MajorityVote", "Wawa", "DawidSkene", "OneCoinDawidSkene"],
}
CROWDKIT_OF = {"MajorityVote": "majority_vote", "Wawa": "wawa", "DawidSkene": "dawid_skene",
               "OneCoinDawidSkene": "one_coin_dawid_skene", "GLAD": "glad", "MACE": "mace"}  # fmt: skip


def crowd(n_answers: int) -> tuple[pd.DataFrame, pd.Series]:
    data = synthetic_answers(n_tasks=n_answers // 5, n_workers=2000, n_classes=5, overlap=5)
    return data.answers, data.gold


def one_fit(n_answers: int, method: str) -> dict[str, float]:
    """Runs in a child process: generate, fit, report seconds, accuracy and peak memory."""
    answers, gold = crowd(n_answers)
    started = time.perf_counter()
    labels = get_aggregator(method).fit(answers).labels_
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "accuracy": accuracy_on_gold(labels, gold), "peak_mb": peak}


def measure(n_answers: int, method: str) -> dict[str, float]:
    child = [sys.executable, __file__, "--one", str(n_answers), method]
    done = subprocess.run(child, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


PeerResults = dict[tuple[int, str], dict[str, float | str]]


def crowdkit_rows(python: str, sizes: list[int], workdir: Path) -> PeerResults:
    results: PeerResults = {}
    for size in sizes:
        if size not in CROWDKIT:
            continue
        answers, gold = crowd(size)
        path = workdir / f"answers_{size}.parquet"
        answers.to_parquet(path)
        for method in CROWDKIT[size]:
            out = workdir / "labels.csv"
            run = run_crowdkit(python, {"answers": str(path), "method": method, "out": str(out)}, 300)
            key = (size, CROWDKIT_OF[method])
            if "error" in run:
                results[key] = {"error": str(run["error"])}
            else:
                labels = pd.read_csv(out).set_index("task")["label"]
                results[key] = {"seconds": float(run["seconds"]), "accuracy": accuracy_on_gold(labels, gold)}
            print(f"crowd-kit {size:>10,} {method:18s} {results[key]}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--crowdkit-python")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_fit(int(args.one[0]), args.one[1])))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for size in sizes:
        for method in OURS.get(size, ["dawid_skene"]):
            result = measure(size, method)
            rows.append({"answers": size, "method": method, **result})
            print(f"crowdloop {size:>10,} {method:22s} {result}", flush=True)
    python = find_crowdkit_python(args.crowdkit_python)
    with tempfile.TemporaryDirectory() as tmp:
        theirs = crowdkit_rows(python, sizes, Path(tmp)) if python else {}
    report = render(rows, theirs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "speed.md").write_text(report)
    print(report)


def render(rows: list[dict], theirs: PeerResults) -> str:
    table = []
    for row in rows:
        peer = theirs.get((row["answers"], row["method"]), {})
        peer_seconds = peer.get("seconds")
        table.append({
            "answers": f"{row['answers']:,}", "method": row["method"],
            "crowdloop s": round(row["seconds"], 2), "accuracy": row["accuracy"],
            "peak MB": round(row["peak_mb"]),
            "Crowd-Kit s": peer.get("error", round(peer_seconds, 2) if peer_seconds else "not run"),
            "Crowd-Kit accuracy": peer.get("accuracy", "–"),
            "speed-up": f"{peer_seconds / row['seconds']:.0f}x" if peer_seconds else "–",
        })  # fmt: skip
    return "\n".join([
        "# Truth inference: speed",
        "",
        f"Machine: {machine()}.",
        "",
        "Synthetic crowds (5 classes, 2,000 workers, a fifth spammers, overlap 5). Each crowdloop fit runs",
        "in a fresh process; `peak MB` is that process's max RSS, data included. Crowd-Kit 1.4.2 runs in",
        "its own environment on the same answers, timed inside its process (T/O: over 300 s).",
        "Regenerate with `python benchmarks/speed.py --crowdkit-python PY`.",
        "",
        markdown(pd.DataFrame(table)),
    ]) + "\n"  # fmt: skip


if __name__ == "__main__":
    main()
