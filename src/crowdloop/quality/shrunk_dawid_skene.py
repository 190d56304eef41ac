"""Dawid-Skene with each confusion matrix shrunk towards a two-parameter worker model."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from crowdloop.quality._data import EncodedAnswers
from crowdloop.quality._kernels import confusion_counts, log_prior_from, normalize_rows
from crowdloop.quality._params import Interval
from crowdloop.quality.dawid_skene import DawidSkene


class ShrunkDawidSkene(DawidSkene):
    r"""Dawid-Skene whose confusion matrices are pulled towards a MACE-shaped fit.

    Full Dawid-Skene gives every worker :math:`K(K-1)` free parameters and
    overfits workers with few answers or many classes; one-coin models underfit
    workers with real class-specific habits. This model keeps the full matrix but
    adds ``strength`` pseudo-answers per true class drawn from a simple fit of the
    same worker, "knows with probability :math:`\theta_w`, else answers from a
    habit :math:`\xi_w`" (MACE's worker model), whose own parameters are in turn
    shrunk towards the crowd's (``population_strength`` pseudo-answers):

    .. math::
        \pi^{(w)}_{k\cdot} \propto N^{(w)}_{k\cdot} + \epsilon
            + s \left(\theta_w e_k + (1 - \theta_w)\, \xi_w\right)

    where :math:`N^{(w)}_{kl}` are the expected counts of the E-step. A worker with
    a handful of answers gets the crowd's habits, one with hundreds their own
    full matrix, and everyone in between a blend.

    References: Dawid and Skene (1979); Hovy et al., "Learning whom to trust with
    MACE" (2013) for the worker model used as the shrinkage target.

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"),
        ...                         "label": [0, 0, 1, 1, 1, 1]})
        >>> ShrunkDawidSkene().fit(answers).labels_.tolist()
        [0, 1]
    """

    _parameter_constraints: ClassVar[dict[str, object]] = {
        **DawidSkene._parameter_constraints,
        "strength": Interval(float, 0, None),
        "population_strength": Interval(float, 0, None),
    }

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        smoothing: float = 0.01,
        strength: float = 3.0,
        population_strength: float = 3.0,
    ) -> None:
        super().__init__(n_iter=n_iter, tol=tol, smoothing=smoothing)
        self.strength = strength
        self.population_strength = population_strength

    def _m_step(self, data: EncodedAnswers, posteriors: np.ndarray) -> None:
        counts = confusion_counts(data, posteriors)
        theta, habit = know_or_habit_params(counts, self.population_strength)
        counts += self.smoothing
        add_know_or_habit(counts, self.strength, theta, habit)
        self._confusion = normalize_rows(counts, inplace=True)
        self._log_prior = log_prior_from(posteriors, smoothing=1e-6)


def add_know_or_habit(counts: np.ndarray, strength: float, theta: np.ndarray, habit: np.ndarray) -> np.ndarray:
    r"""``counts`` plus ``strength`` times :math:`\theta_w e_k + (1 - \theta_w) \xi_w`, in place.

    Off the diagonal the target is :math:`(1 - \theta_w) \xi_{wl}`, on it :math:`\theta_w` more.
    The dense ``(W, K, K)`` target this used to build, and its scaled copy and sum, were three
    more workers x classes² arrays; the sums here are bit for bit the ones they gave (the
    target's zeros and ones were exact).
    """
    spam = (1 - theta)[:, None] * habit  # (W, K): the target off the diagonal, per observed label
    idx = np.arange(counts.shape[1])
    diagonal = counts[:, idx, idx] + strength * (theta[:, None] + spam)
    counts += (strength * spam)[:, None, :]
    counts[:, idx, idx] = diagonal
    return counts


def know_or_habit_params(
    counts: np.ndarray, population_strength: float, n_steps: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    r"""Each worker's :math:`\theta_w` ``(W,)`` and habit :math:`\xi_w` ``(W, K)`` from confusion counts.

    A few EM steps on the counts (a correct diagonal answer was "known" with
    probability :math:`\theta / (\theta + (1 - \theta)\xi_l)`), each worker's
    :math:`\theta_w, \xi_w` smoothed towards the crowd's.
    """
    n_workers, k, _ = counts.shape
    diagonal = np.einsum("wkk->wk", counts)
    answered = counts.sum(axis=1)  # (W, observed label)
    totals = answered.sum(axis=1)
    theta, habit = np.full(n_workers, 0.7), np.full((n_workers, k), 1.0 / k)
    for _ in range(n_steps):
        knew = diagonal * theta[:, None] / (theta[:, None] + (1 - theta[:, None]) * habit)
        known, spam = knew.sum(axis=1), answered - knew
        crowd_theta = (known.sum() + 1.0) / (totals.sum() + 2.0)
        crowd_habit = (spam.sum(axis=0) + 1.0) / (spam.sum() + k)
        theta = (known + population_strength * crowd_theta) / (totals + population_strength)
        habit = (spam + population_strength * crowd_habit) / (spam.sum(axis=1, keepdims=True) + population_strength)
    return theta, habit
