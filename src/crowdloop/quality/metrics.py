"""Agreement and accuracy metrics for crowd answers (pure functions, pandas in)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from crowdloop.errors import EmptyInputError, InvalidInputError, InvalidParameterError
from crowdloop.quality._data import EncodedAnswers, check_answers, encode_answers, gold_series


def accuracy_on_gold(labels: pd.Series, gold: Any) -> float:
    """Share of gold tasks whose aggregated label equals the gold label.

    Only tasks present in both count; no overlap at all is an error, not 0.

    Example:
        >>> import pandas as pd
        >>> accuracy_on_gold(pd.Series({"t1": "a", "t2": "b"}), pd.Series({"t1": "a", "t2": "a"}))
        0.5
    """
    truth = gold_series(gold)
    common = truth.index.intersection(labels.index)
    if common.empty:
        raise EmptyInputError("no task has both a label and a gold label.")
    return float(_same(labels.loc[common], truth.loc[common]).mean())


def errors_on_gold(values: pd.Series, gold: Any) -> dict[str, float]:
    """Mean absolute and root mean squared error of numeric labels against gold values.

    Only tasks present in both count, as for :func:`accuracy_on_gold`.

    Example:
        >>> import pandas as pd
        >>> errors_on_gold(pd.Series({"t1": 1.0, "t2": 5.0}), pd.Series({"t1": 2, "t2": 2}))
        {'gold_mae': 2.0, 'gold_rmse': 2.23606797749979}
    """
    truth = gold_series(gold)
    common = truth.index.intersection(values.index)
    if common.empty:
        raise EmptyInputError("no task has both a label and a gold value.")
    try:
        error = values.loc[common].to_numpy(dtype=float) - truth.loc[common].to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"numeric gold values must be numbers: {exc}") from None
    return {"gold_mae": float(np.abs(error).mean()), "gold_rmse": float(np.sqrt((error**2).mean()))}


def _same(left: pd.Series, right: pd.Series) -> np.ndarray:
    """Element-wise equality that treats 1 and "1" alike (CSV gold vs. int labels)."""
    equal = left.to_numpy() == right.to_numpy()
    if not equal.all():
        equal |= left.astype(str).to_numpy() == right.astype(str).to_numpy()
    return np.asarray(equal)


def worker_accuracy_on_gold(answers: pd.DataFrame, gold: Any) -> pd.DataFrame:
    """Per worker: number of answers on gold tasks and the share that were right."""
    frame = check_answers(answers)
    truth = gold_series(gold)
    on_gold = frame[frame["task"].isin(truth.index)]
    right = _same(on_gold["label"], truth.reindex(on_gold["task"]))
    table = pd.DataFrame({"worker": on_gold["worker"].to_numpy(), "right": right})
    grouped = table.groupby("worker", sort=True)["right"]
    return pd.DataFrame({"n_gold": grouped.size(), "accuracy": grouped.mean()})


def worker_agreement(answers: pd.DataFrame, labels: pd.Series) -> pd.Series:
    """Each worker's share of answers equal to the aggregated label of the task."""
    frame = check_answers(answers)
    known = frame[frame["task"].isin(labels.index)]
    agree = _same(known["label"], labels.reindex(known["task"]))
    table = pd.DataFrame({"worker": known["worker"].to_numpy(), "agree": agree})
    return table.groupby("worker", sort=True)["agree"].mean().rename("agreement")


def fleiss_kappa(answers: pd.DataFrame) -> float:
    r"""Fleiss' kappa, generalised to a varying number of answers per task.

    .. math:: \kappa = \frac{\bar P - P_e}{1 - P_e}, \quad
        P_t = \frac{\sum_k n_{tk}^2 - n_t}{n_t (n_t - 1)}, \quad P_e = \sum_k p_k^2

    Each worker counts once per task (their last answer); tasks with fewer than two workers are
    left out. Reference: J. L. Fleiss,
    "Measuring nominal scale agreement among many raters", 1971.
    """
    counts = _paired_counts(answers)
    n = counts.sum(axis=1)
    per_task = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    shares = counts.sum(axis=0) / counts.sum()
    expected = float((shares**2).sum())
    if expected >= 1.0:
        return 1.0
    return float((per_task.mean() - expected) / (1.0 - expected))


def krippendorff_alpha(answers: pd.DataFrame, level: Literal["nominal", "interval"] = "nominal") -> float:
    r"""Krippendorff's alpha from the coincidence matrix of the answers.

    .. math:: \alpha = 1 - (n - 1)\,
        \frac{\sum_{c,k} o_{ck}\, \delta^2_{ck}}{\sum_{c,k} n_c n_k\, \delta^2_{ck}}

    with :math:`\delta^2_{ck} = [c \ne k]` (``nominal``) or :math:`(c - k)^2`
    (``interval``, numeric labels). Each worker counts once per task (their last
    answer); tasks with fewer than two workers are left out. Reference:
    K. Krippendorff, "Computing Krippendorff's alpha-reliability", 2011.
    """
    if level not in ("nominal", "interval"):
        raise InvalidParameterError(f"level must be 'nominal' or 'interval'; got {level!r}.")
    counts, classes = _paired_counts(answers, with_classes=True)
    per_task = counts.sum(axis=1)
    coincidence = (counts / (per_task - 1)[:, None]).T @ counts
    coincidence -= np.diag((counts / (per_task - 1)[:, None]).sum(axis=0))
    totals = coincidence.sum(axis=1)
    delta = _distance(classes, level)
    expected = float(totals @ delta @ totals)
    if expected == 0.0:
        return 1.0
    return float(1.0 - (totals.sum() - 1) * float((coincidence * delta).sum()) / expected)


def _distance(classes: pd.Index, level: str) -> np.ndarray:
    if level == "nominal":
        return 1.0 - np.eye(len(classes))
    numbers = pd.to_numeric(pd.Series(classes), errors="coerce")
    if numbers.isna().any():  # pandas said 'Unable to parse string "no" at position 0'
        words = [repr(label) for label in pd.Series(classes)[numbers.isna()].head(3)]
        raise InvalidInputError(
            f"the interval level needs numeric labels; {', '.join(words)} "
            f"{'is not a number' if len(words) == 1 else 'are not numbers'} (the nominal level takes categories)."
        )
    values = numbers.to_numpy(dtype=float)
    return np.asarray((values[:, None] - values[None, :]) ** 2)


def _paired_counts(answers: pd.DataFrame, with_classes: bool = False) -> Any:
    """Task x label counts of tasks that two or more distinct workers answered.

    Agreement is between annotators, so each worker counts once per task, with their last answer
    in the frame's order: counting repeats made one worker who answered a task three times look
    like three annotators in full agreement (alpha 1.0 where no two workers shared a task).
    """
    data = encode_answers(answers)
    kept = _last_per_worker_and_task(data)
    flat = data.task[kept] * data.n_classes + data.label[kept]
    counts = np.bincount(flat, minlength=data.n_tasks * data.n_classes).reshape(data.n_tasks, data.n_classes)
    counts = counts[counts.sum(axis=1) >= 2].astype(float)
    if len(counts) == 0:
        raise EmptyInputError(
            "agreement needs at least one task answered by two or more distinct workers "
            "(a worker's repeated answers on a task count once)."
        )
    return (counts, data.classes) if with_classes else counts


def _last_per_worker_and_task(data: EncodedAnswers) -> np.ndarray:
    """Positions of each worker's last answer on each task, in the answers' order."""
    pair = data.task.astype(np.int64) * data.n_workers + data.worker
    _, from_end = np.unique(pair[::-1], return_index=True)
    return np.sort(len(pair) - 1 - from_end)
