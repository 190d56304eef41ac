"""One call from answers to a labelled table: what the CLI and the API both run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crowdloop.errors import EmptyInputError
from crowdloop.quality._data import encode_answers, encode_gold, gold_series
from crowdloop.quality._kernels import Progress
from crowdloop.quality.base import BaseAggregator, BaseClassificationAggregator
from crowdloop.quality.metrics import accuracy_on_gold, worker_accuracy_on_gold


@dataclass
class AggregationResult:
    """Labels (``task, label[, confidence]``), a worker table and run statistics."""

    labels: pd.DataFrame
    workers: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


def aggregate(
    answers: pd.DataFrame,
    aggregator: BaseAggregator,
    gold: Any = None,
    *,
    fit_gold: bool = False,
    progress: Progress | None = None,
) -> AggregationResult:
    """Fit ``aggregator`` on ``answers`` and tabulate labels, workers and statistics.

    ``gold`` alone is used to measure: ``stats["accuracy"]`` on the gold tasks and
    each worker's accuracy on gold. With ``fit_gold`` the fit also clamps the gold
    tasks (better worker estimates, and the gold labels in the output); the
    accuracy is then measured by 5-fold cross-fitting, each fold of gold held out
    while the rest is clamped, so it is never the trivial 100%.
    """
    started = time.perf_counter()
    aggregator.fit(answers, gold if fit_gold else None, progress=progress)
    seconds = time.perf_counter() - started
    labels = _label_table(aggregator)
    stats: dict[str, Any] = {
        "method": type(aggregator).__name__,
        "tasks": len(labels),
        "workers": int(answers["worker"].nunique()),
        "answers": len(answers),
        "iterations": getattr(aggregator, "n_iter_", None),
        "seconds": seconds,
    }
    if gold is not None and isinstance(aggregator, BaseClassificationAggregator):
        if not fit_gold:  # the same check --fit-gold makes: a gold label nobody can give scores nonsense
            encode_gold(gold, encode_answers(answers))
        stats["accuracy"] = (
            cross_fitted_accuracy(answers, aggregator, gold) if fit_gold else accuracy_on_gold(aggregator.labels_, gold)
        )
    return AggregationResult(labels, _worker_table(answers, aggregator, gold), stats)


def cross_fitted_accuracy(
    answers: pd.DataFrame, aggregator: BaseAggregator, gold: Any, folds: int = 5, seed: int = 0
) -> float:
    """Accuracy on gold when each gold task's own label is hidden from the fit."""
    truth = gold_series(gold)
    truth = truth[truth.index.isin(answers["task"])]
    if truth.empty:
        raise EmptyInputError("no gold task has answers: accuracy cannot be measured.")
    fold_of = np.random.default_rng(seed).permutation(len(truth)) % min(folds, len(truth))
    right = 0.0
    for fold in np.unique(fold_of):
        held_out = truth[fold_of == fold]
        fitted = aggregator.clone().fit(answers, truth[fold_of != fold])
        right += accuracy_on_gold(fitted.labels_, held_out) * len(held_out)
    return right / len(truth)


def _label_table(aggregator: BaseAggregator) -> pd.DataFrame:
    labels: pd.Series = aggregator.labels_
    table = pd.DataFrame({"task": labels.index, "label": labels.to_numpy()})
    if isinstance(aggregator, BaseClassificationAggregator):
        probas = aggregator.probas_.to_numpy()
        table["confidence"] = probas[np.arange(len(probas)), np.argmax(probas, axis=1)]
    return table


def _worker_table(answers: pd.DataFrame, aggregator: BaseAggregator, gold: Any) -> pd.DataFrame:
    table = answers.groupby("worker", sort=True).size().rename("answers").to_frame()
    skills = getattr(aggregator, "skills_", None)
    if skills is not None:
        table["skill"] = skills.reindex(table.index)
    if gold is not None and isinstance(aggregator, BaseClassificationAggregator):
        on_gold = worker_accuracy_on_gold(answers, gold)
        table = table.join(on_gold.rename(columns={"accuracy": "gold_accuracy"}))
    return table.reset_index()
