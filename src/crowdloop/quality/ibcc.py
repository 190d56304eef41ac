"""IBCC: Bayesian Dawid-Skene with Dirichlet priors, fitted by variational Bayes."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.special import digamma

from crowdloop.quality._data import EncodedAnswers, EncodedGold
from crowdloop.quality._kernels import (
    Progress,
    clamp_gold,
    confusion_counts,
    confusion_log_scores,
    normalize_rows,
    posteriors_from_log,
)
from crowdloop.quality._memory import Footprint
from crowdloop.quality._params import Interval
from crowdloop.quality.dawid_skene import DawidSkene


class IBCC(DawidSkene):
    r"""Independent Bayesian Classifier Combination, by variational Bayes.

    Dawid-Skene's model with conjugate priors on every parameter:

    .. math::
        \kappa \sim \mathrm{Dir}(\nu_0), \quad
        \pi^{(w)}_{k\cdot} \sim \mathrm{Dir}(\alpha_{0,k\cdot}), \quad
        z_t \sim \mathrm{Cat}(\kappa), \quad l_{tw} \sim \mathrm{Cat}(\pi^{(w)}_{z_t \cdot})

    with :math:`\alpha_{0,kk} =` ``prior_correct`` and :math:`\alpha_{0,kl} =`
    ``prior_wrong`` off the diagonal. The mean-field posterior alternates

    .. math::
        \log q(z_t = k) = \mathbb{E}[\log \kappa_k]
            + \sum_{(t,w,l)} \mathbb{E}[\log \pi^{(w)}_{kl}], \qquad
        \alpha^{(w)}_{kl} = \alpha_{0,kl} + \sum_{(t,w,l)} q(z_t = k)

    where :math:`\mathbb{E}[\log \pi_{kl}] = \psi(\alpha_{kl}) - \psi(\sum_m \alpha_{km})`.
    The priors keep a worker with few answers close to "better than chance"
    instead of letting EM fit a degenerate confusion matrix to them, which is where
    plain Dawid-Skene collapses (e.g. ``cf``: many workers with a handful of answers).
    ``errors_`` holds the posterior mean confusion matrices.

    Reference: H.-C. Kim and Z. Ghahramani, "Bayesian classifier combination",
    AISTATS 2012; E. Simpson et al., "Dynamic Bayesian combination of multiple
    imperfect classifiers", 2013.

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"),
        ...                         "label": [0, 0, 1, 1, 1, 1]})
        >>> IBCC().fit(answers).labels_.tolist()
        [0, 1]
    """

    _footprint = Footprint(confusion=2.2, task_classes=4.3, per_answer=58)

    _parameter_constraints: ClassVar[dict[str, object]] = {
        "n_iter": Interval(int, 1, None),
        "tol": Interval(float, 0, None),
        "prior_correct": Interval(float, 0, None, "neither"),
        "prior_wrong": Interval(float, 0, None, "neither"),
        "class_prior": Interval(float, 0, None, "neither"),
    }

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        prior_correct: float = 2.0,
        prior_wrong: float = 1.0,
        class_prior: float = 1.0,
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.prior_correct = prior_correct
        self.prior_wrong = prior_wrong
        self.class_prior = class_prior

    def _fit(self, data: EncodedAnswers, gold: EncodedGold, progress: Progress | None) -> np.ndarray:
        self._prior = self._confusion_prior(data.n_classes)
        return super()._fit(data, gold, progress)

    def _confusion_prior(self, n_classes: int) -> np.ndarray:
        eye = np.eye(n_classes)
        return self.prior_correct * eye + self.prior_wrong * (1 - eye)

    def _m_step(self, data: EncodedAnswers, posteriors: np.ndarray) -> None:
        alpha = confusion_counts(data, posteriors)
        alpha += self._prior  # in place, as every workers x classes² array of the fit
        self._alpha = alpha
        self._nu = posteriors.sum(axis=0) + self.class_prior
        self._log_prior = np.log(self._nu / self._nu.sum())

    def _e_step(self, data: EncodedAnswers, gold: EncodedGold) -> tuple[np.ndarray, float]:
        expected_log_pi = digamma(self._alpha)
        expected_log_pi -= digamma(self._alpha.sum(axis=2, keepdims=True))
        expected_log_kappa = digamma(self._nu) - digamma(self._nu.sum())
        scores = confusion_log_scores(data, expected_log_pi)
        scores += expected_log_kappa
        posteriors, loglik = posteriors_from_log(scores)
        return clamp_gold(posteriors, gold), loglik

    def _store_workers(self, data: EncodedAnswers) -> None:
        """The posterior mean confusion matrices, from the last M-step's counts: made once here,
        not at every step (where nothing read them), they are one workers x classes² array less."""
        self._confusion = normalize_rows(self._alpha)
        super()._store_workers(data)
