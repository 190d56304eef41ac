"""One call from answers to a labelled table: what the CLI and the API both run."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crowdloop.errors import EmptyInputError, InvalidParameterError
from crowdloop.quality._data import encode_answers, encode_gold, gold_series
from crowdloop.quality._kernels import Progress
from crowdloop.quality.base import BaseAggregator, BaseClassificationAggregator
from crowdloop.quality.metrics import accuracy_on_gold, errors_on_gold, worker_accuracy_on_gold


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
    max_memory_mb: float | None = None,
) -> AggregationResult:
    """Fit ``aggregator`` on ``answers`` and tabulate labels, workers and statistics.

    ``gold`` alone is used to measure: for categorical methods ``stats["accuracy"]`` on the gold
    tasks and each worker's accuracy on gold, for numeric ones the labels' mean absolute and
    root mean squared error against the gold values (``gold_mae``, ``gold_rmse``). With
    ``fit_gold`` the fit also clamps the gold tasks (better worker estimates, and the gold
    labels in the output); the measures are then taken by 5-fold cross-fitting, each fold of
    gold held out while the rest is clamped, so they are never the trivial perfect score.
    ``fit_gold`` without ``gold`` is an error: it used to be silently ignored.
    ``max_memory_mb`` bounds a categorical fit's estimated peak memory (see
    :meth:`BaseClassificationAggregator.fit`; default: a share of the memory available).
    """
    if fit_gold and gold is None:
        raise InvalidParameterError(
            "fit_gold (--fit-gold) needs gold (--gold GOLD): there are no known labels to clamp."
        )
    started = time.perf_counter()
    _fit(aggregator, answers, gold if fit_gold else None, progress, max_memory_mb)
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
    if gold is not None:
        stats.update(_gold_coverage(gold, aggregator.labels_.index))
        stats.update(_gold_measures(answers, aggregator, gold, fit_gold, max_memory_mb, progress))
    return AggregationResult(labels, _worker_table(answers, aggregator, gold), stats)


def _fit(
    aggregator: BaseAggregator,
    answers: pd.DataFrame,
    gold: Any,
    progress: Progress | None = None,
    max_memory_mb: float | None = None,
) -> BaseAggregator:
    """``fit``, with the memory limit where the method has one (categorical: memory grows with the classes)."""
    if isinstance(aggregator, BaseClassificationAggregator):
        return aggregator.fit(answers, gold, progress=progress, max_memory_mb=max_memory_mb)
    return aggregator.fit(answers, gold, progress=progress)


def _gold_coverage(gold: Any, tasks: pd.Index) -> dict[str, Any]:
    """How many gold tasks the measures rest on (``gold_scored`` of ``gold_tasks``) and the ids of
    those without answers (``gold_unanswered``): they used to be dropped without a word, so ids
    zero-padded in one file and not the other scored a handful of tasks as if they were all."""
    truth = gold_series(gold)
    unanswered = truth.index[~truth.index.isin(tasks)]
    return {"gold_tasks": len(truth), "gold_scored": len(truth) - len(unanswered), "gold_unanswered": list(unanswered)}


def _gold_measures(
    answers: pd.DataFrame,
    aggregator: BaseAggregator,
    gold: Any,
    fit_gold: bool,
    max_memory_mb: float | None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Accuracy (categorical) or errors (numeric) of the labels on gold; cross-fitted with ``fit_gold``.

    Numeric gold used to be read and then ignored: no measure, no error.
    """
    categorical = isinstance(aggregator, BaseClassificationAggregator)
    if categorical and not fit_gold:  # the same check --fit-gold makes: a gold label nobody can give scores nonsense
        encode_gold(gold, encode_answers(answers))
    labels = (
        cross_fitted_labels(answers, aggregator, gold, max_memory_mb=max_memory_mb, progress=progress)
        if fit_gold
        else aggregator.labels_
    )
    if categorical:
        return {"accuracy": accuracy_on_gold(labels, gold)}
    return errors_on_gold(labels, gold)


def cross_fitted_labels(
    answers: pd.DataFrame,
    aggregator: BaseAggregator,
    gold: Any,
    folds: int = 5,
    seed: int = 0,
    *,
    max_memory_mb: float | None = None,
    progress: Progress | None = None,
) -> pd.Series:
    """Each answered gold task's label from a fit that clamps the other folds' gold, not its own.
    ``progress`` hears each fold's iterations (its count starts again at each fold): without it
    a spinner stood still through the five fits, most of a ``--fit-gold`` run."""
    truth = gold_series(gold)
    truth = truth[truth.index.isin(answers["task"])]
    if truth.empty:
        raise EmptyInputError("no gold task has answers: nothing can be measured on gold.")
    fold_of = np.random.default_rng(seed).permutation(len(truth)) % min(folds, len(truth))
    parts: list[pd.Series] = []
    for fold in np.unique(fold_of):
        held_out = truth.index[fold_of == fold]
        labels: pd.Series = _fit(aggregator.clone(), answers, truth[fold_of != fold], progress, max_memory_mb).labels_
        parts.append(labels[labels.index.isin(held_out)])
    cross_fitted: pd.Series = pd.concat(parts)
    return cross_fitted


def cross_fitted_accuracy(
    answers: pd.DataFrame, aggregator: BaseAggregator, gold: Any, folds: int = 5, seed: int = 0
) -> float:
    """Accuracy on gold when each gold task's own label is hidden from the fit."""
    return accuracy_on_gold(cross_fitted_labels(answers, aggregator, gold, folds, seed), gold)


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
        skill = skills.reindex(table.index)
        if skill.isna().any():  # ids of mixed kinds (2 and "a") are the fit's as text: 2 had no skill
            skill = skill.fillna(pd.Series(skills.reindex(table.index.map(str)).to_numpy(), index=table.index))
        table["skill"] = skill
    if gold is not None and isinstance(aggregator, BaseClassificationAggregator):
        on_gold = worker_accuracy_on_gold(answers, gold)
        table = table.join(on_gold.rename(columns={"accuracy": "gold_accuracy"}))
    return table.reset_index()
