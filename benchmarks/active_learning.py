"""Active learning on the replayed `product` crowd: labels needed to match random selection.

    python benchmarks/active_learning.py [--seeds 0 1 2] [--strategies random margin ...]
                                         [--retrain-every 500] [--pool-items N]

Protocol (the same for every strategy):

* items: `product`'s 8,315 product pairs (``text``, ``text_b``); a fixed 25% of them
  (``HELD_OUT_SEED``) is held out: never offered, never trained on, only scored;
* crowd: the recorded answers on the other items, replayed (:class:`crowdloop.sim.ReplayedCrowd`:
  a worker gives the answer they really gave, only on items they answered);
* budget: every recorded answer on the pool items; each run buys all of it, so every strategy
  ends on the same answers and differs only in the order it buys them;
* policy: :class:`crowdloop.sim.active.ActiveLearning`, logistic regression on the pair
  features, retrained every ``--retrain-every`` labels on all answers bought so far, at most
  3 answers an item; ``--targets crowd`` (the default) learns from the answers themselves
  (Raykar EM started from Dawid-Skene), ``--targets labels`` from Dawid-Skene soft labels;
* score: the accuracy against gold of each retrained model on the held-out items, averaged
  over ``--seeds`` (the seed drives the replay order, the random strategy and the start);
* the target: random selection's accuracy with the whole budget; for each strategy, the
  fewest labels (as a fraction of the budget) at which its mean accuracy reaches it.

Writes ``benchmarks/results/active_learning.md`` and ``.json``.
"""

from __future__ import annotations

import os

# One BLAS thread: the logistic regression's lbfgs steps are small, and on a shared machine
# OpenBLAS's threads fight each other (a fit takes 5x as long). Set before numpy loads.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from _common import RESULTS, SHARED_DATASETS, machine, markdown  # noqa: E402
from crowdloop.datasets import load_dataset  # noqa: E402
from crowdloop.learning import STRATEGIES, FeatureSpec, Featurizer, TrainedModel  # noqa: E402
from crowdloop.sim import ReplayedCrowd, run_in_process  # noqa: E402
from crowdloop.sim.active import ActiveLearning, item_frame  # noqa: E402

HELD_OUT_SEED = 12345
HELD_OUT_SHARE = 0.25
TARGETS = {
    "labels": "Dawid-Skene soft labels of all answers",
    "crowd": (
        "all answers through the crowd model (Raykar EM: the classifier and each\n"
        "worker's confusion matrix together, started from Dawid-Skene), the answers"
    ),
}
TARGET_SHARE = 0.45
TOLERANCE = 0.005
"""Also reported: labels to come within this much accuracy of the reference (about ten held-out items)."""


class Setup:
    """The split, the crowd on the pool and one featurizer fitted on the pool items, shared by all runs."""

    def __init__(self, pool_items: int | None) -> None:
        data = load_dataset("product", SHARED_DATASETS)
        assert data.items is not None
        items = data.items.set_index("task")
        held_out = np.random.default_rng(HELD_OUT_SEED).random(len(items)) < HELD_OUT_SHARE
        pool = items.index[~held_out]
        if pool_items is not None:  # a quick run on part of the pool
            pool = pd.Index(np.random.default_rng(HELD_OUT_SEED + 1).permutation(pool)[:pool_items])
        self.answers = data.answers[data.answers["task"].isin(pool)]
        self.crowd = ReplayedCrowd(self.answers)
        self.items = items.loc[self.crowd.tasks]
        self.test = data.items[held_out].reset_index(drop=True)
        codes = {label: i for i, label in enumerate(self.crowd.labels)}
        self.test_truth = data.gold.reindex(self.test["task"]).map(codes).to_numpy()
        spec = FeatureSpec(pair=(("text", "text_b"),))
        self.featurizer = Featurizer(spec).fit(item_frame(self.items))
        self.budget = len(self.answers)

    def held_out_accuracy(self, model: TrainedModel) -> float:
        predicted = model.predict_proba(self.test).to_numpy().argmax(axis=1)
        return float(np.mean(predicted == self.test_truth))


def one_run(setup: Setup, strategy: str, seed: int, retrain_every: int, targets: str) -> dict[str, Any]:
    """Buy the whole budget under ``strategy``; the held-out accuracy after every retrain."""
    curve: list[tuple[int, float]] = []
    policy = ActiveLearning(strategy=strategy, retrain_every=retrain_every, max_overlap=3,
                            featurizer=setup.featurizer, targets=targets,
                            on_retrain=lambda n, model: curve.append((n, setup.held_out_accuracy(model))))  # fmt: skip
    started = time.perf_counter()
    result = run_in_process(setup.crowd, policy, items=setup.items, random_state=seed)
    result.summary()  # the final retrain, on every label bought
    return {"strategy": strategy, "seed": seed, "labels": len(result.answers), "curve": curve,
            "seconds": time.perf_counter() - started}  # fmt: skip


def mean_curves(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Mean held-out accuracy per strategy (columns) at each number of labels (rows)."""
    rows = [{"strategy": r["strategy"], "seed": r["seed"], "labels": n, "accuracy": a}
            for r in runs for n, a in r["curve"]]  # fmt: skip
    frame = pd.DataFrame(rows)
    return frame.pivot_table(index="labels", columns="strategy", values="accuracy", aggfunc="mean")


def labels_to_match(curves: pd.DataFrame, reference: float) -> dict[str, int | None]:
    """For each strategy, the fewest labels at which its mean accuracy reaches ``reference``."""
    out: dict[str, int | None] = {}
    for strategy in curves.columns:
        reached = curves.index[curves[strategy].to_numpy() >= reference - 1e-12]
        out[str(strategy)] = int(reached.min()) if len(reached) else None
    return out


def write(setup: Setup, args: argparse.Namespace, runs: list[dict[str, Any]]) -> None:
    curves = mean_curves(runs)
    reference = float(curves["random"].dropna().iloc[-1]) if "random" in curves else float("nan")
    needed = labels_to_match(curves, reference)
    near = labels_to_match(curves, reference - TOLERANCE)
    shares = {s: (None if n is None else n / setup.budget) for s, n in needed.items()}
    summary = pd.DataFrame([{"strategy": s, "labels to match random @100%": needed[s],
                             "share of budget": _share(needed[s], setup.budget),
                             f"target <= {TARGET_SHARE:.0%}": shares[s] is not None and shares[s] <= TARGET_SHARE,
                             f"share to come within {TOLERANCE}": _share(near[s], setup.budget)}
                            for s in curves.columns])  # fmt: skip
    shown = curves.copy()
    shown.insert(0, "share", [f"{n / setup.budget:.0%}" for n in shown.index])
    shown = shown.reset_index().round(4)
    payload = {"machine": machine(), "targets": args.targets, "budget": setup.budget, "pool_items": len(setup.items),
               "held_out_items": len(setup.test), "seeds": args.seeds, "retrain_every": args.retrain_every,
               "reference_accuracy": reference, "labels_to_match": needed, "share_to_match": shares,
               "tolerance": TOLERANCE, "labels_to_come_within_tolerance": near,
               "runs": runs}  # fmt: skip
    (RESULTS / "active_learning.json").write_text(json.dumps(payload, indent=2))
    text = f"""# Active learning on `product`

Recorded by `python benchmarks/active_learning.py` on {machine()}.

Protocol (identical for every strategy): 8,315 product pairs; a fixed {HELD_OUT_SHARE:.0%}
(seed {HELD_OUT_SEED}, {len(setup.test)} items) held out, never offered, never trained on; the
crowd's recorded answers on the {len(setup.items)} pool items are replayed (a worker is only
offered items they answered). **Budget: all {setup.budget:,} recorded answers on the pool**;
every run buys all of them, at most 3 per item, so the strategies differ only in the order.
Logistic regression on the pair features (TF-IDF of both sides, shared terms, similarities),
retrained every {args.retrain_every} labels on {TARGETS[args.targets]} bought so
far (the same learner for every strategy, random included); score: its accuracy against gold
on the held-out items, mean over seeds {args.seeds} (replay order, random draws). Majority class
share on the held-out items: {np.mean(setup.test_truth == 0):.4f}.

Random selection with the whole budget: **{reference:.4f}**. Labels each strategy needs to
reach it (issue 5 target: at most {TARGET_SHARE:.0%} of the budget):

{markdown(summary)}

Learning curves (mean held-out accuracy by labels bought):

{markdown(shown)}
"""
    (RESULTS / "active_learning.md").write_text(text)
    print(text)


def _share(labels: int | None, budget: int) -> str:
    return "not reached" if labels is None else f"{labels / budget:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--retrain-every", type=int, default=500)
    parser.add_argument("--pool-items", type=int, help="Quick run: only this many pool items.")
    parser.add_argument(
        "--targets",
        choices=["labels", "crowd"],
        default="crowd",
        help="What every model learns from: Dawid-Skene soft labels, or the answers (Raykar EM).",
    )
    args = parser.parse_args()
    setup = Setup(args.pool_items)
    runs = []
    for strategy in args.strategies:
        for seed in args.seeds:
            runs.append(one_run(setup, strategy, seed, args.retrain_every, args.targets))
            labels, accuracy = runs[-1]["curve"][-1]
            print(f"{strategy} seed {seed}: {accuracy:.4f} at {labels} labels, {runs[-1]['seconds']:.0f}s", flush=True)
    write(setup, args, runs)


if __name__ == "__main__":
    main()
