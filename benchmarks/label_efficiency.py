"""Label efficiency of dynamic overlap on replayed real crowds.

    python benchmarks/label_efficiency.py [--seeds 5] [--datasets rte,temp,...]

For each data set with at least 7 recorded answers per item, the recorded crowd is replayed
(each worker gives the answer they really gave, only on the items they saw; workers turn up
in proportion to their recorded answers, in an order drawn from the seed). Fixed overlap 5
buys five answers per item, labelled by majority vote (MV) and by Dawid-Skene (DS). Dynamic
overlap (:class:`crowdloop.sim.DynamicOverlap`, default settings) is run at a rising series of
confidence targets; the cheapest target whose accuracy, averaged over the same seeds, reaches
fixed-5 MV's (resp. DS's) gives the labels per item dynamic overlap needs to match it.
Writes ``benchmarks/results/label_efficiency.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import pandas as pd

from _common import RESULTS, SHARED_DATASETS, machine, markdown
from crowdloop.datasets import Dataset, load_dataset
from crowdloop.quality import DawidSkene, MajorityVote
from crowdloop.sim import DynamicOverlap, FixedOverlap, ReplayedCrowd, label_accuracy, run_in_process

DATASETS = ["rte", "temp", "dog", "face", "wsd", "bluebird"]
TARGETS = [0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995]
TARGET_MV, TARGET_DS = 2.0, 2.5


def fixed_five(data: Dataset, seeds: list[int]) -> dict[str, float]:
    mv, ds = [], []
    for seed in seeds:
        run = run_in_process(ReplayedCrowd(data.answers), FixedOverlap(5), random_state=seed)
        mv.append(label_accuracy(MajorityVote().fit(run.answers).labels_, data.gold))
        ds.append(label_accuracy(DawidSkene().fit(run.answers).labels_, data.gold))
    return {"mv": float(np.mean(mv)), "ds": float(np.mean(ds))}


def dynamic_at(data: Dataset, target: float, seeds: list[int]) -> dict[str, float]:
    accuracy, per_item, seconds = [], [], []
    for seed in seeds:
        started = time.perf_counter()
        run = run_in_process(ReplayedCrowd(data.answers), DynamicOverlap(target), random_state=seed)
        summary = run.summary(data.gold)
        accuracy.append(summary["label_accuracy"])
        per_item.append(summary["labels_per_item"])
        seconds.append(time.perf_counter() - started)
    return {"target": target, "accuracy": float(np.mean(accuracy)), "accuracy_sd": float(np.std(accuracy)),
            "labels_per_item": float(np.mean(per_item)), "seconds": float(np.mean(seconds))}  # fmt: skip


def cheapest_match(sweep: list[dict[str, float]], reference: float) -> dict[str, float] | None:
    """The least labels per item among the targets whose mean accuracy reaches ``reference``."""
    matching = [row for row in sweep if row["accuracy"] >= reference - 1e-12]
    return min(matching, key=lambda row: row["labels_per_item"]) if matching else None


def one_dataset(name: str, seeds: list[int]) -> dict[str, Any]:
    data = load_dataset(name, SHARED_DATASETS)
    per_item = data.answers.groupby("task").size()
    reference = fixed_five(data, seeds)
    sweep: list[dict[str, float]] = []
    for target in TARGETS:
        sweep.append(dynamic_at(data, target, seeds))
        row = sweep[-1]
        print(f"  {name} target {target}: accuracy {row['accuracy']:.4f}, {row['labels_per_item']:.3f} labels/item")
        if row["accuracy"] >= max(reference.values()) and row["labels_per_item"] > TARGET_DS:
            break  # both references matched; higher targets only cost more
    mv, ds = cheapest_match(sweep, reference["mv"]), cheapest_match(sweep, reference["ds"])
    return {"dataset": name, "items": len(per_item), "min_answers_per_item": int(per_item.min()),
            "median_answers_per_item": float(per_item.median()), "fixed5_mv": reference["mv"],
            "fixed5_ds": reference["ds"], "match_mv": mv, "match_ds": ds, "sweep": sweep}  # fmt: skip


def _cell(match: dict[str, float] | None, limit: float) -> tuple[str, str]:
    if match is None:
        return "not reached", "no"
    return f"{match['labels_per_item']:.2f} (t={match['target']}, acc {match['accuracy']:.4f})", (
        "yes" if match["labels_per_item"] <= limit else "no"
    )


def render(results: list[dict[str, Any]], seeds: list[int], took: float) -> str:
    rows = []
    for r in results:
        mv_cell, mv_ok = _cell(r["match_mv"], TARGET_MV)
        ds_cell, ds_ok = _cell(r["match_ds"], TARGET_DS)
        rows.append([r["dataset"], r["items"], r["min_answers_per_item"], r["fixed5_mv"], mv_cell, mv_ok,
                     r["fixed5_ds"], ds_cell, ds_ok])  # fmt: skip
    table = pd.DataFrame(rows, columns=["data set", "items", "min answers/item", "fixed-5 MV acc",
                                        "dynamic labels/item to match MV", f"<= {TARGET_MV}", "fixed-5 DS acc",
                                        "dynamic labels/item to match DS", f"<= {TARGET_DS}"])  # fmt: skip
    sweeps = "\n\n".join(f"**{r['dataset']}**\n\n" + markdown(pd.DataFrame(r["sweep"])) for r in results)
    return (f"# Label efficiency of dynamic overlap on replayed crowds\n\nMachine: {machine()}\n\n"
            f"`python benchmarks/label_efficiency.py --seeds {len(seeds)}`: replay orders {seeds}, "
            f"{took:.0f} s in all. Accuracies are means over the replay orders, against the full gold.\n\n"
            f"{markdown(table)}\n\n## Sweeps (dynamic overlap, mean over replay orders)\n\n{sweeps}\n")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    started = time.perf_counter()
    results = [one_dataset(name, seeds) for name in args.datasets.split(",")]
    took = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    text = render(results, seeds, took)
    (RESULTS / "label_efficiency.md").write_text(text)
    payload = {"machine": machine(), "seeds": seeds, "seconds": took, "results": results}
    (RESULTS / "label_efficiency.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
