"""GLAD: worker ability and task difficulty, learned together."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from crowdloop.quality._data import EncodedAnswers, EncodedGold
from crowdloop.quality._kernels import (
    Progress,
    clamp_gold,
    iterate,
    one_coin_log_scores,
    posteriors_from_log,
)
from crowdloop.quality._memory import Footprint
from crowdloop.quality._params import Interval
from crowdloop.quality.base import BaseClassificationAggregator


class GLAD(BaseClassificationAggregator):
    r"""Generative model of Labels, Abilities and Difficulties.

    A worker with ability :math:`\alpha_w` answers task :math:`t` of difficulty
    :math:`1/\beta_t` correctly with probability

    .. math:: p(l = z_t) = \sigma(\alpha_w \beta_t), \quad \beta_t = e^{b_t},

    and otherwise picks one of the :math:`K - 1` wrong labels uniformly. EM
    alternates the posterior of :math:`z_t` (E-step) with an ascent of the
    expected log-likelihood in :math:`\alpha` and :math:`b` (M-step: alternating
    vectorised Newton steps, ``m_step_max_iter`` rounds; Gaussian priors
    :math:`\alpha_w \sim N(1, 1)`, :math:`b_t \sim N(1, 1)`).
    Class priors are uniform, as in the paper.

    Reference: J. Whitehill, P. Ruvolo, T. Wu, J. Bergsma, J. Movellan, "Whose vote
    should count more: optimal integration of labels from labelers of unknown
    expertise", NIPS 2009.

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"),
        ...                         "label": [0, 0, 1, 1, 1, 1]})
        >>> GLAD().fit(answers).labels_.tolist()
        [0, 1]
    """

    _footprint = Footprint(task_classes=3.3, per_answer=66)

    _parameter_constraints: ClassVar[dict[str, object]] = {
        "n_iter": Interval(int, 1, None),
        "tol": Interval(float, 0, None),
        "m_step_max_iter": Interval(int, 1, None),
        "alpha_prior_mean": Interval(float, None, None),
        "beta_prior_mean": Interval(float, None, None),
    }

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        m_step_max_iter: int = 3,
        alpha_prior_mean: float = 1.0,
        beta_prior_mean: float = 1.0,
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.m_step_max_iter = m_step_max_iter
        self.alpha_prior_mean = alpha_prior_mean
        self.beta_prior_mean = beta_prior_mean

    def _fit(self, data: EncodedAnswers, gold: EncodedGold, progress: Progress | None) -> np.ndarray:
        params = np.concatenate(
            [
                np.full(data.n_workers, self.alpha_prior_mean),
                np.full(data.n_tasks, self.beta_prior_mean),
            ]
        )
        state = {"params": params, "posteriors": self._e_step(data, params, gold)}

        def step() -> float:
            state["params"], objective = self._m_step(data, state["posteriors"], state["params"])
            state["posteriors"] = self._e_step(data, state["params"], gold)
            return objective / data.n_answers

        self.n_iter_ = iterate(step, self.n_iter, self.tol, progress)
        alphas, log_betas = np.split(state["params"], [data.n_workers])
        self.alphas_ = pd.Series(alphas, index=data.workers.rename("worker"), name="alpha")
        self.betas_ = pd.Series(np.exp(log_betas), index=data.tasks.rename("task"), name="beta")
        self.skills_ = self.alphas_.rename("skill")
        return state["posteriors"]

    def _prior_means(self, data: EncodedAnswers) -> np.ndarray:
        """Abilities then log-difficulties at their prior means (also the starting point)."""
        alphas = np.full(data.n_workers, self.alpha_prior_mean)
        return np.concatenate([alphas, np.full(data.n_tasks, self.beta_prior_mean)])

    def _answer_terms(self, data: EncodedAnswers, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per answer: ``alpha * beta``, ``log p(right)``, ``log p(a given wrong label)``."""
        alphas, log_betas = np.split(params, [data.n_workers])
        betas = np.exp(log_betas)[data.task]
        x = alphas[data.worker] * betas
        log_right = -np.logaddexp(0.0, -x)
        log_wrong = -np.logaddexp(0.0, x) - np.log(max(data.n_classes - 1, 1))
        return x, log_right, log_wrong

    def _e_step(self, data: EncodedAnswers, params: np.ndarray, gold: EncodedGold) -> np.ndarray:
        _, log_right, log_wrong = self._answer_terms(data, params)
        posteriors, _ = posteriors_from_log(one_coin_log_scores(data, log_right, log_wrong))
        return clamp_gold(posteriors, gold)

    def _m_step(self, data: EncodedAnswers, posteriors: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, float]:
        """Raise the expected complete log-likelihood by alternating Newton steps.

        Given the task difficulties every ability is a separate concave 1-D problem,
        and the other way round, so each block takes one vectorised Fisher-scoring
        step (expected Hessian, always negative; steps capped at 1) per round.
        """
        right = posteriors[data.task, data.label]
        alphas, log_betas = np.split(params.copy(), [data.n_workers])
        for _ in range(self.m_step_max_iter):
            alphas += self._newton_step(data, right, alphas, log_betas, ability=True)
            log_betas += self._newton_step(data, right, alphas, log_betas, ability=False)
        params = np.concatenate([alphas, log_betas])
        return params, self._q(data, right, params)

    def _newton_step(
        self,
        data: EncodedAnswers,
        right: np.ndarray,
        alphas: np.ndarray,
        log_betas: np.ndarray,
        *,
        ability: bool,
    ) -> np.ndarray:
        """One Fisher-scoring step for all abilities (or all log-difficulties) at once."""
        betas = np.exp(log_betas)[data.task]
        x = alphas[data.worker] * betas
        sigma = 1.0 / (1.0 + np.exp(-x))
        # dx/dparam: beta for an ability, x itself for a log-difficulty
        slope = betas if ability else x
        index, size = (data.worker, data.n_workers) if ability else (data.task, data.n_tasks)
        current, mean = (alphas, self.alpha_prior_mean) if ability else (log_betas, self.beta_prior_mean)
        grad = np.bincount(index, weights=(right - sigma) * slope, minlength=size) - (current - mean)
        info = np.bincount(index, weights=sigma * (1 - sigma) * slope**2, minlength=size) + 1.0
        return np.asarray(np.clip(grad / info, -1.0, 1.0))

    def _q(self, data: EncodedAnswers, right: np.ndarray, params: np.ndarray) -> float:
        """Expected complete log-likelihood plus the Gaussian log-priors."""
        _, log_right, log_wrong = self._answer_terms(data, params)
        prior_mean = np.concatenate(
            [
                np.full(data.n_workers, self.alpha_prior_mean),
                np.full(data.n_tasks, self.beta_prior_mean),
            ]
        )
        deviation = params - prior_mean
        return float(right @ log_right + (1 - right) @ log_wrong) - 0.5 * float(deviation @ deviation)
