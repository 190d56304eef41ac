"""Aggregators of numeric answers (ratings, scores)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from crowdloop.errors import InvalidInputError
from crowdloop.quality._data import _factorize, check_answers, gold_series
from crowdloop.quality._kernels import Progress, iterate
from crowdloop.quality._params import Interval
from crowdloop.quality.base import BaseAggregator


@dataclass(frozen=True)
class NumericAnswers:
    """Numeric answers as int codes and float values, plus known (gold) values."""

    task: np.ndarray
    worker: np.ndarray
    values: np.ndarray
    n_tasks: int
    n_workers: int
    gold_task: np.ndarray
    gold_value: np.ndarray

    def with_gold(self, estimate: np.ndarray) -> np.ndarray:
        """``estimate`` with the known tasks set to their gold values (in place)."""
        estimate[self.gold_task] = self.gold_value
        return estimate


class BaseNumericAggregator(BaseAggregator):
    """Aggregators of numeric answers: ``labels_`` is a float Series indexed by task.

    ``fit`` takes the same long frame (task, worker, label) with numeric labels (numbers, or text
    that is a number however written: ``00``, ``-0``, ``007``);
    ``gold`` (task -> value) fixes those tasks' values and sharpens the workers'
    estimates. Repeated answers all count.
    """

    def fit(self, answers: pd.DataFrame, gold: Any = None, *, progress: Progress | None = None) -> Self:
        """Learn from ``answers``; return ``self``."""
        self._validate_params()
        frame = check_answers(answers, numeric=True)
        task, tasks = _factorize(frame["task"], sort=False)
        worker, workers = _factorize(frame["worker"], sort=False)
        values = frame["label"].to_numpy(dtype=float)
        data = NumericAnswers(task, worker, values, len(tasks), len(workers), *_numeric_gold(gold, tasks))
        estimate = self._fit(data, progress)
        self.labels_ = pd.Series(estimate, index=tasks.rename("task"), name="label")
        self._set_worker_outputs(workers.rename("worker"))
        return self

    def fit_predict(self, answers: pd.DataFrame, gold: Any = None) -> pd.Series:
        """``fit`` then return ``labels_``."""
        return self.fit(answers, gold).labels_

    @abstractmethod
    def _fit(self, data: NumericAnswers, progress: Progress | None) -> np.ndarray:
        """Return one value per task."""

    def _set_worker_outputs(self, workers: pd.Index) -> None:
        """Expose per-worker attributes, for models that have them."""


def _numeric_gold(gold: Any, tasks: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Known values as (task codes, values); tasks absent from the answers are dropped."""
    if gold is None:
        return np.empty(0, np.int64), np.empty(0)
    series = gold_series(gold)
    codes = tasks.get_indexer(series.index)
    keep = codes >= 0
    try:
        values = series.to_numpy()[keep].astype(float)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"numeric gold values must be numbers: {error}") from None
    return codes[keep].astype(np.int64), values


class Mean(BaseNumericAggregator):
    """The mean of each task's answers.

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 2], "worker": ["a", "b", "a"],
        ...                         "label": [1.0, 3.0, 5.0]})
        >>> Mean().fit(answers).labels_.tolist()
        [2.0, 5.0]
    """

    def __init__(self) -> None:
        pass

    def _fit(self, data: NumericAnswers, progress: Progress | None) -> np.ndarray:
        sums = np.bincount(data.task, weights=data.values, minlength=data.n_tasks)
        return data.with_gold(sums / np.bincount(data.task, minlength=data.n_tasks))


class Median(BaseNumericAggregator):
    """The median of each task's answers: robust to a few wild answers.

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 1], "worker": ["a", "b", "c"],
        ...                         "label": [1.0, 2.0, 90.0]})
        >>> Median().fit(answers).labels_.tolist()
        [2.0]
    """

    def __init__(self) -> None:
        pass

    def _fit(self, data: NumericAnswers, progress: Progress | None) -> np.ndarray:
        medians = pd.Series(data.values).groupby(data.task).median()
        return data.with_gold(medians.reindex(range(data.n_tasks)).to_numpy(dtype=float))


class ReliabilityWeightedMean(BaseNumericAggregator):
    r"""Learns each worker's bias and noise, and weighs answers by reliability.

    Worker :math:`w` reports :math:`x = \mu_t + b_w + \varepsilon`,
    :math:`\varepsilon \sim N(0, \sigma_w^2)`. Alternating maximisation of the
    likelihood (starting from the mean):

    .. math::
        \mu_t = \frac{\sum (x - b_w) / \sigma_w^2}{\sum 1 / \sigma_w^2}, \quad
        b_w = \frac{\sum (x - \mu_t)}{n_w + \lambda}, \quad
        \sigma_w^2 = \frac{\sum (x - \mu_t - b_w)^2 + \nu s^2}{n_w + \nu}

    where :math:`\lambda` (``bias_shrinkage``) and :math:`\nu`
    (``variance_shrinkage``, towards the crowd's variance :math:`s^2`) keep
    workers with few answers close to the crowd. Biases are centred to mean zero
    (the scale's origin is the crowd's). ``biases_``, ``variances_`` and
    ``skills_`` (:math:`1/\sigma_w`) are per worker.

    Reference: Raykar et al., "Learning from crowds", JMLR 2010 (regression
    with annotator bias and precision); Welinder and Perona, CVPR workshops 2010.

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4],
        ...     "worker": list("abc") * 4,  # c is the noisy one
        ...     "label": [1.0, 1.2, 4.0, 5.0, 5.2, 2.0, 3.0, 3.1, 6.0, 7.0, 6.9, 9.5]})
        >>> ReliabilityWeightedMean().fit(answers).labels_.round(1).tolist()  # Mean: 2.1 4.1 4.0 7.8
        [1.7, 4.6, 3.7, 7.5]
    """

    _parameter_constraints: ClassVar[dict[str, object]] = {
        "n_iter": Interval(int, 1, None),
        "tol": Interval(float, 0, None),
        "bias_shrinkage": Interval(float, 0, None),
        "variance_shrinkage": Interval(float, 0, None),
    }

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-6,
        bias_shrinkage: float = 5.0,
        variance_shrinkage: float = 10.0,
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.bias_shrinkage = bias_shrinkage
        self.variance_shrinkage = variance_shrinkage

    def _fit(self, data: NumericAnswers, progress: Progress | None) -> np.ndarray:
        mu = Mean()._fit(data, None)
        self._counts = np.bincount(data.worker, minlength=data.n_workers).astype(float)
        self._crowd_var = max(float(np.var(data.values - mu[data.task])), 1e-9)
        self._bias = np.zeros(data.n_workers)
        self._var = np.full(data.n_workers, self._crowd_var)
        state = {"mu": mu}

        def step() -> float:
            state["mu"], loglik = self._step(data, state["mu"])
            return loglik

        self.n_iter_ = iterate(step, self.n_iter, self.tol, progress)
        return state["mu"]

    def _step(self, data: NumericAnswers, mu: np.ndarray) -> tuple[np.ndarray, float]:
        """Update biases and variances, then ``mu``; return it and the log-likelihood.

        Residuals are taken against the leave-one-out estimate (the task's other
        answers only), so a worker's own answer cannot make them look reliable.
        """
        w, counts = data.worker, self._counts
        precision = 1.0 / self._var[w]
        residual = data.values - self._leave_one_out(data, precision)
        bias = np.bincount(w, weights=residual, minlength=data.n_workers) / (counts + self.bias_shrinkage)
        bias -= bias @ counts / counts.sum()
        squared = np.bincount(w, weights=(residual - bias[w]) ** 2, minlength=data.n_workers)
        var = (squared + self.variance_shrinkage * self._crowd_var) / (counts + self.variance_shrinkage)
        self._bias, self._var = bias, np.maximum(var, 1e-9)
        precision = 1.0 / self._var[w]
        weighted = np.bincount(data.task, weights=(data.values - bias[w]) * precision, minlength=data.n_tasks)
        mu = data.with_gold(weighted / np.bincount(data.task, weights=precision, minlength=data.n_tasks))
        error = data.values - mu[data.task] - bias[w]
        loglik = -0.5 * float(np.mean(np.log(self._var[w]) + error**2 * precision))
        return mu, loglik

    def _leave_one_out(self, data: NumericAnswers, precision: np.ndarray) -> np.ndarray:
        """Per answer: the precision-weighted, bias-corrected mean of the task's other answers."""
        corrected = (data.values - self._bias[data.worker]) * precision
        total = np.bincount(data.task, weights=corrected, minlength=data.n_tasks)
        weight = np.bincount(data.task, weights=precision, minlength=data.n_tasks)
        others = weight[data.task] - precision
        alone = others <= 1e-12 * weight[data.task]
        loo = (total[data.task] - corrected) / np.where(alone, 1.0, others)
        return np.where(alone, data.values, loo)

    def _set_worker_outputs(self, workers: pd.Index) -> None:
        self.biases_ = pd.Series(self._bias, index=workers, name="bias")
        self.variances_ = pd.Series(self._var, index=workers, name="variance")
        self.skills_ = pd.Series(1.0 / np.sqrt(self._var), index=workers, name="skill")
