"""Label efficiency of dynamic overlap on replayed real crowds.

    python benchmarks/label_efficiency.py [--seeds 5] [--datasets rte,temp,...]

For each data set with at least 7 recorded answers per item, the recorded crowd is replayed
(each worker gives the answer they really gave, only on the items they saw; workers turn up
in proportion to their recorded answers, in an order drawn from the seed). Fixed overlap 5
buys five answers per item, labelled by majority vote (MV) and by Dawid-Skene (DS). Dynamic
overlap (:class:`crowdloop.sim.DynamicOverlap`, default settings) is run at a rising series of
confidence targets; the cheapest target whose accuracy, averaged over the same seeds, reaches
fixed-5 MV's (resp. DS's) gives the labels per item dynamic overlap needs to match it.

A small data set is noisy per run (one replay of bluebird's 108 items moves by 0.08), so each
data set gets at least ``--seeds`` replay orders and as many more as it takes to replay some
8,000 items in all. Picking the cheapest of many targets on the same orders favours a lucky
target, so the matching targets are confirmed, cheapest first, each on its own block of as many
fresh orders (with fixed overlap 5 run again on that block): the first that holds there gives
the labels per item, and a target that fails is reported with the one that replaced it. A
target just above the prior accuracy sits on a cliff (a lone answer closes an item or not
depending on the first refits), which is why the cheapest match is not always the one that holds.
Writes ``benchmarks/results/label_efficiency.md`` and ``.json``.

``--qualification N --control-share S``: in each replay order a random share ``S`` of the items
becomes control tasks with known labels, and dynamic overlap gives each worker up to ``N`` of
them first (a qualification test, :class:`crowdloop.sim.DynamicOverlap`'s ``qualification``).
Control items are left out of every accuracy, fixed overlap 5's included, and every answer to
them is counted: labels per item are all labels bought over the items left. Writes
``label_efficiency_qualified.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from _common import RESULTS, SHARED_DATASETS, machine, markdown
from crowdloop.datasets import Dataset, load_dataset
from crowdloop.quality import DawidSkene, MajorityVote
from crowdloop.sim import DynamicOverlap, FixedOverlap, ReplayedCrowd, label_accuracy, run_in_process
from crowdloop.sim.driver import control_sample

DATASETS = ["rte", "temp", "dog", "face", "wsd", "bluebird"]
TARGETS = [0.6, 0.7, 0.72, 0.75, 0.78, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995]
TARGET_MV, TARGET_DS = 2.0, 2.5
ITEMS_REPLAYED = 8000
CONFIRMATIONS = 5  # matching targets confirmed at most, each on its own fresh orders


@dataclass(frozen=True)
class Setup:
    """Control tasks and the qualification test (none by default)."""

    control_share: float = 0.0
    qualification: int = 0

    def control(self, gold: pd.Series, seed: int) -> pd.Index:
        """The control items of replay order ``seed`` (none without a share), as ``crowdloop simulate`` draws them."""
        return control_sample(gold, self.control_share, seed).index if self.control_share else pd.Index([])


SETUP = Setup()


def fixed_five(data: Dataset, seeds: list[int]) -> dict[str, float]:
    mv, ds = [], []
    for seed in seeds:
        run = run_in_process(ReplayedCrowd(data.answers), FixedOverlap(5), random_state=seed)
        scored = data.gold.index.difference(SETUP.control(data.gold, seed))
        mv.append(label_accuracy(MajorityVote().fit(run.answers).labels_, data.gold, scored))
        ds.append(label_accuracy(DawidSkene().fit(run.answers).labels_, data.gold, scored))
    return {"mv": float(np.mean(mv)), "ds": float(np.mean(ds))}


def dynamic_at(data: Dataset, target: float, seeds: list[int]) -> dict[str, float]:
    accuracy, per_item, seconds = [], [], []
    for seed in seeds:
        started = time.perf_counter()
        control = data.gold.loc[SETUP.control(data.gold, seed)]
        policy = DynamicOverlap(target, qualification=SETUP.qualification)
        run = run_in_process(ReplayedCrowd(data.answers), policy, gold=control, random_state=seed)
        summary = run.summary(data.gold)
        accuracy.append(summary["label_accuracy"])
        per_item.append(summary["labels_per_item"])
        seconds.append(time.perf_counter() - started)
    return {"target": target, "accuracy": float(np.mean(accuracy)), "accuracy_sd": float(np.std(accuracy)),
            "labels_per_item": float(np.mean(per_item)), "seconds": float(np.mean(seconds))}  # fmt: skip


def matches(sweep: list[dict[str, float]], reference: float) -> list[dict[str, float]]:
    """The targets whose mean accuracy reaches ``reference``, cheapest (fewest labels per item) first."""
    matching = [row for row in sweep if row["accuracy"] >= reference - 1e-12]
    return sorted(matching, key=lambda row: row["labels_per_item"])


def replay_orders(n_items: int, minimum: int) -> int:
    """Replay orders for a data set: at least ``minimum``, and enough to replay ``ITEMS_REPLAYED`` items."""
    return max(minimum, -(-ITEMS_REPLAYED // n_items))


def confirm(
    data: Dataset,
    candidates: list[dict[str, float]],
    blocks: list[list[int]],
    fixed: Callable[[int], dict[str, float]],
    which: str,
) -> list[dict[str, Any]]:
    """Candidates rerun, cheapest first, each on its own block of fresh orders against fixed overlap 5
    on that block (``fixed(k)``, the k-th block's; ``which``: "mv" or "ds"), until one reaches it; one
    confirmation per candidate tried."""
    tried = []
    for k, (match, seeds) in enumerate(zip(candidates, blocks, strict=False)):  # at most one per block
        reference = fixed(k)[which]
        again = dynamic_at(data, match["target"], seeds)
        holds = again["accuracy"] >= reference - 1e-12
        tried.append({"target": match["target"], "accuracy": again["accuracy"],
                      "labels_per_item": again["labels_per_item"], "reference": reference, "holds": holds})  # fmt: skip
        if holds:
            break
    return tried


def one_dataset(name: str, minimum_seeds: int) -> dict[str, Any]:
    data = load_dataset(name, SHARED_DATASETS)
    per_item = data.answers.groupby("task").size()
    n = replay_orders(len(per_item), minimum_seeds)
    seeds = list(range(n))
    reference = fixed_five(data, seeds)
    sweep: list[dict[str, float]] = []
    for target in TARGETS:
        sweep.append(dynamic_at(data, target, seeds))
        row = sweep[-1]
        print(f"  {name} target {target}: accuracy {row['accuracy']:.4f}, {row['labels_per_item']:.3f} labels/item")
        if row["accuracy"] >= max(reference.values()) and row["labels_per_item"] > TARGET_DS:
            break  # both references matched; higher targets only cost more
    blocks = [list(range(n * k, n * (k + 1))) for k in range(1, CONFIRMATIONS + 1)]
    fixed = functools.cache(lambda k: fixed_five(data, blocks[k]))  # a block's fixed-5 serves both MV and DS
    mv, ds = matches(sweep, reference["mv"]), matches(sweep, reference["ds"])
    return {"dataset": name, "items": len(per_item), "min_answers_per_item": int(per_item.min()),
            "median_answers_per_item": float(per_item.median()), "orders": n, "fixed5_mv": reference["mv"],
            "fixed5_ds": reference["ds"], "confirm_mv": confirm(data, mv, blocks, fixed, "mv"),
            "confirm_ds": confirm(data, ds, blocks, fixed, "ds"), "sweep": sweep}  # fmt: skip


def _cell(tried: list[dict[str, Any]], limit: float) -> tuple[str, str, str]:
    """Labels per item needed (the confirmed target), the confirmations, and whether within ``limit``."""
    if not tried:
        return "not reached", "-", "no"
    checks = "; ".join(
        f"t={t['target']}: {t['accuracy']:.4f} vs {t['reference']:.4f} at {t['labels_per_item']:.2f}"
        + ("" if t["holds"] else " (fails)")
        for t in tried
    )
    held = tried[-1]
    if not held["holds"]:
        return f"not confirmed ({len(tried)} tried)", checks, "no"
    return (
        f"{held['labels_per_item']:.2f} (t={held['target']})",
        checks,
        "yes" if held["labels_per_item"] <= limit else "no",
    )


def render(results: list[dict[str, Any]], minimum: int, took: float) -> str:
    rows = []
    for r in results:
        mv_cell, mv_check, mv_ok = _cell(r["confirm_mv"], TARGET_MV)
        ds_cell, ds_check, ds_ok = _cell(r["confirm_ds"], TARGET_DS)
        rows.append([r["dataset"], r["items"], r["orders"], r["fixed5_mv"], mv_cell, mv_check, mv_ok,
                     r["fixed5_ds"], ds_cell, ds_check, ds_ok])  # fmt: skip
    table = pd.DataFrame(rows, columns=["data set", "items", "orders", "fixed-5 MV acc",
                                        "labels/item to match MV", "confirmed on fresh orders", f"<= {TARGET_MV}",
                                        "fixed-5 DS acc", "labels/item to match DS", "confirmed on fresh orders ",
                                        f"<= {TARGET_DS}"])  # fmt: skip
    sweeps = "\n\n".join(f"**{r['dataset']}**\n\n" + markdown(pd.DataFrame(r["sweep"])) for r in results)
    title, options = "", ""
    if SETUP.qualification:
        title = f", with a qualification test of {SETUP.qualification} control tasks"
        options = f" --qualification {SETUP.qualification} --control-share {SETUP.control_share}"
        note = (f"In each order a random {SETUP.control_share:.1%} of the items are control tasks: left out of "
                "every accuracy (fixed overlap 5's too), and every answer to them counted in the labels per item "
                "(labels bought over the items left). ")  # fmt: skip
    return (f"# Label efficiency of dynamic overlap on replayed crowds{title}\n\nMachine: {machine()}\n\n"
            f"`python benchmarks/label_efficiency.py --seeds {minimum}{options}`: {note if options else ''}"
            f"At least {minimum} replay orders per "
            f"data set, more for small ones (column orders), {took:.0f} s in all. Accuracies are means over the "
            "replay orders, against the gold. *Confirmed on fresh orders*: the targets that match, "
            f"cheapest first (at most {CONFIRMATIONS}), each run again with fixed overlap 5 on its own block of as "
            "many new orders (dynamic accuracy vs fixed-5 accuracy, at dynamic labels/item), until one holds; "
            "the labels per item are that target's on its fresh orders.\n\n"
            f"{markdown(table)}\n\n## Sweeps (dynamic overlap, mean over replay orders)\n\n{sweeps}\n")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="the least replay orders per data set")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--qualification", type=int, default=0, help="control tasks in each worker's test")
    parser.add_argument("--control-share", type=float, default=0.0, help="share of the items that are control tasks")
    args = parser.parse_args()
    if args.qualification and not 0 < args.control_share < 1:
        parser.error("--qualification needs --control-share between 0 and 1.")
    global SETUP
    SETUP = Setup(args.control_share, args.qualification)
    started = time.perf_counter()
    results = [one_dataset(name, args.seeds) for name in args.datasets.split(",")]
    took = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    text = render(results, args.seeds, took)
    stem = "label_efficiency_qualified" if SETUP.qualification else "label_efficiency"
    (RESULTS / f"{stem}.md").write_text(text)
    payload = {"machine": machine(), "minimum_seeds": args.seeds, "seconds": took, "setup": asdict(SETUP),
               "results": results}  # fmt: skip
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
