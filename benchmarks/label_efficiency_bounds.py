"""What knowing the workers would buy: dynamic overlap against oracles that read the gold.

    python benchmarks/label_efficiency_bounds.py [--seeds 5] [--datasets dog,face,...]

``label_efficiency.py`` measures dynamic overlap as it runs, estimating every worker from the
answers it bought. Where it misses its targets, this script says how much of the miss lies in
those estimates. On the same replay orders it runs three policies at a few confidence targets:

- *estimated*: :class:`crowdloop.sim.DynamicOverlap` as it is;
- *true routing*: the same, except that who is held back is decided by each worker's true
  accuracy (against gold, over everything they recorded) instead of the estimated one;
- *oracle*: true confusion matrices (and class shares) for both the routing and the posteriors.

The oracles' matrices are counted on all the recorded answers, the bought ones included, so
they are an upper bound, not a method. It also prints, for the estimated policy, how right the
items it labeled were against the confidence it stated, by how many answers they got: a
stated 0.95 that is right 77% of the time is the miss in one number. Writes
``benchmarks/results/label_efficiency_bounds.md`` and ``.json``.
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
from crowdloop.quality import MajorityVote
from crowdloop.quality.crowd_model import ShrunkCrowdModel
from crowdloop.sim import DynamicOverlap, FixedOverlap, ReplayedCrowd, label_accuracy, run_in_process

DATASETS = ["rte", "temp", "dog", "face", "wsd", "bluebird"]
TARGETS = [0.7, 0.8, 0.9]


class TrueSkills:
    """Each recorded worker's confusion matrix (Laplace-smoothed counts against gold), accuracy and
    number of gold-scored answers, in the replayed crowd's worker order; and the gold class shares."""

    def __init__(self, data: Dataset, crowd: ReplayedCrowd) -> None:
        labels = {label: k for k, label in enumerate(crowd.labels)}
        workers = {worker: w for w, worker in enumerate(crowd.workers)}
        scored = data.answers[data.answers["task"].isin(data.gold.index)]
        k = len(labels)
        counts = np.zeros((len(workers), k, k))
        truth = scored["task"].map(data.gold).map(labels).to_numpy(dtype=np.int64)
        given = scored["label"].map(labels).to_numpy(dtype=np.int64)
        np.add.at(counts, (scored["worker"].map(workers).to_numpy(dtype=np.int64), truth, given), 1.0)
        self.evidence = counts.sum(axis=(1, 2))
        self.accuracy = np.einsum("wkk->w", counts) / np.maximum(self.evidence, 1.0)
        smoothed = counts + 1.0
        self.log_confusion = np.log(smoothed / smoothed.sum(axis=2, keepdims=True))
        shares = np.bincount(data.gold.map(labels).to_numpy(dtype=np.int64), minlength=k) + 1.0
        self.log_prior = np.log(shares / shares.sum())


class TrueRouting(DynamicOverlap):
    """Dynamic overlap whose hold-back reads the workers' true accuracies; posteriors as estimated."""

    skills: TrueSkills

    def refit(self) -> None:
        super().refit()
        estimated = self.model.accuracy_, self.model.evidence_
        seen = len(estimated[0])
        self.model.accuracy_, self.model.evidence_ = self.skills.accuracy[:seen], self.skills.evidence[:seen]
        bar = self.model.skill_bar(self.exclude_quantile, self.min_evidence)
        self._held_back = self.model.held_back(bar, self.exclude_below, self.min_evidence)
        self.model.accuracy_, self.model.evidence_ = estimated


class Oracle(DynamicOverlap):
    """Dynamic overlap that knows every worker's confusion matrix and the class shares."""

    skills: TrueSkills

    def start(self, n_tasks: int, n_classes: int, **kwargs: Any) -> None:
        super().start(n_tasks, n_classes, **kwargs)
        self.model.log_confusion_ = self.skills.log_confusion.copy()
        self.model.log_prior_ = self.skills.log_prior.copy()
        self.model.accuracy_, self.model.evidence_ = self.skills.accuracy.copy(), self.skills.evidence.copy()
        self.scores = np.tile(self.model.log_prior_, (n_tasks, 1))

    def refit(self) -> None:
        tasks, workers, labels = self.answers()
        self.scores = self.model.log_scores(tasks, workers, labels, self.n_tasks)
        self._fitted_at = len(tasks)
        bar = self.model.skill_bar(self.exclude_quantile, self.min_evidence)
        self._held_back = self.model.held_back(bar, self.exclude_below, self.min_evidence)


def policy(kind: str, target: float, skills: TrueSkills) -> DynamicOverlap:
    chosen: DynamicOverlap = {"estimated": DynamicOverlap, "true routing": TrueRouting, "oracle": Oracle}[kind](target)
    chosen.skills = skills  # type: ignore[attr-defined]
    return chosen


def calibration(data: Dataset, runs: list[Any]) -> list[dict[str, Any]]:
    """Items the estimated policy labeled, by answers bought: stated confidence against share right."""
    rows = []
    for run in runs:
        bought = run.answers.groupby("task").size()
        common = run.labels.index.intersection(data.gold.index)
        right = run.labels.loc[common].astype(str) == data.gold.loc[common].astype(str)
        stated = run.confidence.loc[common].to_numpy()
        answers = bought.reindex(common).clip(upper=4).to_numpy()
        rows.append(pd.DataFrame({"answers": answers, "stated": stated, "right": right.to_numpy()}))
    frame = pd.concat(rows)
    table = frame.groupby("answers").agg(items=("right", "size"), stated=("stated", "mean"), right=("right", "mean"))
    table["share"] = table["items"] / table["items"].sum()
    records = table.reset_index().to_dict("records")
    return [{**row, "answers": "4+" if row["answers"] == 4 else str(row["answers"]), "items": int(row["items"])}
            for row in records]  # fmt: skip


def one_dataset(name: str, seeds: list[int]) -> dict[str, Any]:
    data = load_dataset(name, SHARED_DATASETS)
    crowd = ReplayedCrowd(data.answers)
    skills = TrueSkills(data, crowd)
    fixed = [run_in_process(crowd, FixedOverlap(5), random_state=seed) for seed in seeds]
    reference = float(np.mean([label_accuracy(MajorityVote().fit(run.answers).labels_, data.gold) for run in fixed]))
    rows, closed, in_run = [], [], []
    for target in TARGETS:
        for kind in ("estimated", "true routing", "oracle"):
            policies = [policy(kind, target, skills) for _ in seeds]
            runs = [run_in_process(crowd, chosen, random_state=seed)
                    for chosen, seed in zip(policies, seeds, strict=True)]  # fmt: skip
            summaries = [run.summary(data.gold) for run in runs]
            rows.append({"target": target, "policy": kind,
                         "accuracy": float(np.mean([s["label_accuracy"] for s in summaries])),
                         "labels_per_item": float(np.mean([s["labels_per_item"] for s in summaries]))})  # fmt: skip
            print(f"  {name} t={target} {kind}: {rows[-1]['accuracy']:.4f} at {rows[-1]['labels_per_item']:.2f}")
            if kind == "estimated" and target == max(TARGETS):
                closed = calibration(data, runs)
                in_run = [skill_correlation(chosen.model.accuracy_, chosen.model.evidence_, skills)
                          for chosen in policies]  # fmt: skip
    full = ShrunkCrowdModel(len(crowd.labels))
    full.fit(*codes(data.answers, crowd), len(crowd.tasks))
    return {"dataset": name, "orders": len(seeds), "fixed5_mv": reference, "rows": rows, "calibration": closed,
            "skill_correlation_full": skill_correlation(full.accuracy_, full.evidence_, skills),
            "skill_correlation_in_run": float(np.nanmean(in_run))}  # fmt: skip


def codes(answers: pd.DataFrame, crowd: ReplayedCrowd) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recorded answers as (task, worker, label) codes in the replayed crowd's order."""
    tasks = {task: t for t, task in enumerate(crowd.tasks)}
    workers = {worker: w for w, worker in enumerate(crowd.workers)}
    labels = {label: k for k, label in enumerate(crowd.labels)}
    return tuple(answers[column].map(index).to_numpy(dtype=np.int64)  # type: ignore[return-value]
                 for column, index in (("task", tasks), ("worker", workers), ("label", labels)))  # fmt: skip


def skill_correlation(estimated: np.ndarray, evidence: np.ndarray, skills: TrueSkills) -> float:
    """Correlation of estimated and true accuracy over the workers with 5 or more answers on shared
    items: how well answers alone rank the workers (NaN with fewer than 3 such workers)."""
    seen = len(estimated)
    assessed = evidence >= 5
    if assessed.sum() < 3:
        return float("nan")
    return float(np.corrcoef(estimated[assessed], skills.accuracy[:seen][assessed])[0, 1])


def render(results: list[dict[str, Any]], seeds: int, took: float) -> str:
    parts = [f"# Label efficiency: what knowing the workers would buy\n\nMachine: {machine()}\n\n"
             f"`python benchmarks/label_efficiency_bounds.py --seeds {seeds}`: {seeds} replay orders per data set, "
             f"{took:.0f} s in all. *true routing*: who is held back is decided by true accuracies; *oracle*: true "
             "confusion matrices for routing and posteriors too (counted on every recorded answer, so an upper bound). "
             "Accuracy against the full gold, mean over the orders; fixed-5 MV on the same orders.\n"]  # fmt: skip
    for r in results:
        table = pd.DataFrame(r["rows"]).pivot(index="target", columns="policy")
        wide = pd.DataFrame({"target": table.index})
        for kind in ("estimated", "true routing", "oracle"):
            wide[kind] = [f"{a:.4f} at {n:.2f}" for a, n in zip(table["accuracy"][kind], table["labels_per_item"][kind],
                                                               strict=True)]  # fmt: skip
        calibrated = pd.DataFrame(r["calibration"])
        heading = f"## {r['dataset']} (fixed-5 MV {r['fixed5_mv']:.4f}, {r['orders']} orders)"
        ranking = (f"Estimated against true worker accuracy (correlation, workers with 5+ answers on shared items): "
                   f"{r['skill_correlation_full']:.2f} from every recorded answer, {r['skill_correlation_in_run']:.2f} "
                   f"from what the estimated policy bought at t={max(TARGETS)}.")  # fmt: skip
        parts.append(f"{heading}\n\n{markdown(wide)}\n\n{ranking}\n\n"
                     f"Items the estimated policy labeled at t={max(TARGETS)}, by answers bought:\n\n"
                     f"{markdown(calibrated)}\n")  # fmt: skip
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="replay orders per data set")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    args = parser.parse_args()
    started = time.perf_counter()
    seeds = list(range(args.seeds))
    results = [one_dataset(name, seeds) for name in args.datasets.split(",")]
    took = time.perf_counter() - started
    RESULTS.mkdir(exist_ok=True)
    text = render(results, args.seeds, took)
    (RESULTS / "label_efficiency_bounds.md").write_text(text)
    payload = {"machine": machine(), "seeds": args.seeds, "seconds": took, "results": results}
    (RESULTS / "label_efficiency_bounds.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    print(text)


if __name__ == "__main__":
    main()
