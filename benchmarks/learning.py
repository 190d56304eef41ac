"""Models trained on crowd labels against gold: soft labels, Raykar EM, Dawid-Skene, gold itself.

    python benchmarks/learning.py [--datasets product rte] [--folds 4] [--trials 20]

For each categorical data set with item texts (``items.csv``), items are split into
``--folds`` seeded folds; for each fold, every method sees only the *other* folds' answers,
trains a logistic regression on the same features, and predicts the held-out fold, so each
item is scored once, by a model that never saw its answers. Pooled held-out predictions are
scored against gold (accuracy, macro-F1, log-loss, ECE). Methods:

* ``gold`` — trained on the gold labels: the ceiling; the gap to it is what the crowd costs;
* ``majority_vote``, ``dawid_skene`` — aggregate, take the hard label, train
  ("aggregate with Dawid-Skene, then train", the bar set by the Crowd-Kit paper);
* ``dawid_skene_soft``, ``default_soft`` — train on the posteriors (soft labels);
* ``raykar_mv``, ``raykar_ds`` — :class:`CrowdModel` (classifier and confusion matrices
  learned together), initialised with majority vote (as in the paper) or Dawid-Skene;
* ``dawid_skene_soft/torch_mlp`` — the same soft labels, the optional PyTorch network instead
  of logistic regression (only where torch is installed).

Then the speed target on ``product``: featurise + train on all items, and a 20-trial
:func:`tune` (all families, 3-fold CV). Writes ``benchmarks/results/learning.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

sys.path.append(str(Path(__file__).resolve().parent))
from _common import RESULTS, SHARED_DATASETS, machine, markdown
from crowdloop.datasets import load_dataset
from crowdloop.learning import CrowdModel, FeatureSpec, Featurizer, evaluate_probas, train_model, tune
from crowdloop.learning.torch_mlp import torch_installed
from crowdloop.quality import DawidSkene, DefaultAggregator, MajorityVote

METHODS = ["gold", "majority_vote", "dawid_skene", "dawid_skene_soft", "default_soft", "raykar_mv", "raykar_ds"]
if torch_installed():
    METHODS.append("dawid_skene_soft/torch_mlp")


def _labels(method: str, answers: pd.DataFrame, gold: pd.Series) -> Any:
    if method == "gold":
        return gold
    if method == "majority_vote":
        return MajorityVote().fit(answers).labels_
    if method == "dawid_skene":
        return DawidSkene().fit(answers).labels_
    if method == "dawid_skene_soft":
        return DawidSkene().fit(answers).probas_
    return DefaultAggregator().fit(answers).probas_


def _fold_probas(method: str, data: Any, featurizer: Featurizer, train: pd.DataFrame, test: pd.DataFrame) -> Any:
    answers = data.answers[data.answers["task"].isin(train["task"])]
    if method.startswith("raykar"):
        init = "majority_vote" if method == "raykar_mv" else "dawid_skene"
        return CrowdModel(init=init).fit(train, answers, featurizer=featurizer).predict_proba(test)
    labels_from, _, family = method.partition("/")
    labels = _labels(labels_from, answers, data.gold)
    return train_model(train, labels, featurizer=featurizer, family=family or "logreg").predict_proba(test)


def compare(name: str, n_folds: int) -> list[dict[str, Any]]:
    """Held-out metrics of every method on data set ``name``."""
    data = load_dataset(name, SHARED_DATASETS)
    items = data.items[data.items["task"].isin(data.gold.index)].reset_index(drop=True)
    featurizer = Featurizer(FeatureSpec.infer(items)).fit(items)
    folds = np.random.default_rng(0).permutation(len(items)) % n_folds
    rows = []
    for method in METHODS:
        started = time.perf_counter()
        parts = [_fold_probas(method, data, featurizer, items[folds != k], items[folds == k]) for k in range(n_folds)]
        scores = evaluate_probas(pd.concat(parts), data.gold)
        seconds = time.perf_counter() - started
        rows.append({"dataset": name, "method": method, **_summary(scores), "seconds": round(seconds, 1)})
        print(rows[-1], flush=True)
    return rows


def _summary(scores: dict[str, Any]) -> dict[str, Any]:
    keep = {k: scores[k] for k in ("n", "accuracy", "macro_f1", "log_loss", "ece")}
    return {**keep, "f1_per_class": {k: round(v["f1"], 4) for k, v in scores["per_class"].items()}}


def speed(n_trials: int) -> dict[str, Any]:
    """Seconds to featurise and train on all of ``product``, and for an ``n_trials`` search."""
    data = load_dataset("product", SHARED_DATASETS)
    posteriors = DefaultAggregator().fit(data.answers).probas_
    started, cpu = time.perf_counter(), time.process_time()
    featurizer = Featurizer(FeatureSpec.infer(data.items)).fit(data.items)
    featurised = time.perf_counter() - started
    train_model(data.items, posteriors, featurizer=featurizer)
    trained, trained_cpu = time.perf_counter() - started, time.process_time() - cpu
    cpu = time.process_time()
    result = tune(data.items, posteriors, n_trials=n_trials, featurizer=featurizer, gold=data.gold)
    search_cpu = time.process_time() - cpu
    trials = result.trials[["number", "family", "state", "score", "seconds"]]
    return {
        "items": len(data.items),
        "features": featurizer.n_features_,
        "featurize_seconds": round(featurised, 1),
        "featurize_and_train_seconds": round(trained, 1),
        "featurize_and_train_cpu_seconds": round(trained_cpu, 1),
        "search_seconds": round(result.seconds, 1),
        "search_cpu_seconds": round(search_cpu, 1),
        "load_average_after": os.getloadavg(),
        "search_trials": n_trials,
        "best": {"family": result.family, "params": result.params, "cv_score": result.score},
        "best_gold": _summary(result.gold or {}) | {"held_out": (result.gold or {}).get("held_out")},
        "trials": trials.to_dict("records"),
    }


def report(rows: list[dict[str, Any]], timing: dict[str, Any], where: str) -> str:
    frame = pd.DataFrame(rows)
    lines = ["# Learning from crowd labels", "", f"Machine: {where}", ""]
    for name, part in frame.groupby("dataset", sort=False):
        gold = part.loc[part["method"] == "gold", "accuracy"].iloc[0]
        table = part.assign(gap_to_gold=gold - part["accuracy"])
        cols = ["method", "accuracy", "macro_f1", "log_loss", "ece", "gap_to_gold", "seconds"]
        lines += [f"## {name} ({int(part['n'].iloc[0])} gold items, held-out folds)", "", markdown(table[cols]), ""]
    lines += [
        "## Speed on product",
        "",
        "```",
        json.dumps({k: v for k, v in timing.items() if k != "trials"}, indent=2, default=str),
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["product", "rte"])
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    where = f"{machine()}; load average at start {os.getloadavg()[0]:.1f}"
    timing = speed(args.trials)
    print(json.dumps({k: v for k, v in timing.items() if k != "trials"}, default=str), flush=True)
    rows = [row for name in args.datasets for row in compare(name, args.folds)]
    RESULTS.mkdir(exist_ok=True)
    payload = {"machine": where, "folds": args.folds, "comparison": rows, "speed": timing}
    (RESULTS / "learning.json").write_text(json.dumps(payload, indent=2, default=str))
    (RESULTS / "learning.md").write_text(report(rows, timing, where))
    print(report(rows, timing, where))


if __name__ == "__main__":
    main()
