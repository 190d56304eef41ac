"""MACE: each worker either knows the answer or spams with a habit of their own."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.special import digamma

from crowdloop.quality._data import EncodedAnswers, EncodedGold
from crowdloop.quality._kernels import (
    Progress,
    clamp_gold,
    iterate,
    log_prior_from,
    one_coin_log_scores,
    posteriors_from_log,
)
from crowdloop.quality._memory import Footprint
from crowdloop.quality._params import Interval, Options, RandomState, keyed_uniforms, start_seed
from crowdloop.quality.base import BaseClassificationAggregator

Params = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Weight of knowing and of spamming per worker, spam strategies (workers x labels), log class prior."""


class MACE(BaseClassificationAggregator):
    r"""Multi-Annotator Competence Estimation.

    Worker :math:`w` knows the answer with probability :math:`\theta_w` and then
    gives the true label; otherwise they spam, drawing a label from their own
    distribution :math:`\xi_w`:

    .. math:: p(l \mid z = k) = \theta_w [l = k] + (1 - \theta_w)\, \xi_{w l}

    Fitted by variational Bayes with priors :math:`\theta_w \sim
    \mathrm{Beta}(\beta, \alpha)` and :math:`\xi_w \sim \mathrm{Dirichlet}(10)`
    (the paper's and Crowd-Kit's defaults). True labels are uniform as in the
    paper, or with ``learn_class_prior=True`` follow class proportions learned
    like Dawid-Skene's (better when classes are unbalanced). The likelihood
    has local optima, so ``n_restarts`` random starts run ``restart_iter`` steps
    each and the best (by marginal likelihood) is run to convergence. A worker's
    start is drawn from their id and ``random_state`` (:func:`keyed_uniforms`), not
    from where their rows are, so the row order of the answers never moves a label
    (Crowd-Kit's does, and ours once did: a shuffle of the rows moved up to 50 of
    ``product``'s 8,315 labels).
    ``skills_`` is :math:`\mathbb{E}[\theta_w]`.

    Reference: D. Hovy, T. Berg-Kirkpatrick, A. Vaswani, E. Hovy, "Learning whom
    to trust with MACE", NAACL-HLT 2013.

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"),
        ...                         "label": [0, 0, 1, 1, 1, 1]})
        >>> MACE().fit(answers).labels_.tolist()
        [0, 1]
    """

    _footprint = Footprint(task_classes=2.3, worker_classes=6.5, per_answer=70)

    _parameter_constraints: ClassVar[dict[str, object]] = {
        "n_restarts": Interval(int, 1, None),
        "restart_iter": Interval(int, 1, None),
        "n_iter": Interval(int, 1, None),
        "tol": Interval(float, 0, None),
        "alpha": Interval(float, 0, None, "neither"),
        "beta": Interval(float, 0, None, "neither"),
        "strategy_prior": Interval(float, 0, None, "neither"),
        "learn_class_prior": Options((True, False)),
        "random_state": RandomState(),
    }

    def __init__(
        self,
        n_restarts: int = 10,
        restart_iter: int = 10,
        n_iter: int = 50,
        tol: float = 1e-6,
        alpha: float = 0.5,
        beta: float = 0.5,
        strategy_prior: float = 10.0,
        learn_class_prior: bool = False,
        random_state: int | np.random.Generator | None = 0,
    ) -> None:
        self.n_restarts = n_restarts
        self.restart_iter = restart_iter
        self.n_iter = n_iter
        self.tol = tol
        self.alpha = alpha
        self.beta = beta
        self.strategy_prior = strategy_prior
        self.learn_class_prior = learn_class_prior
        self.random_state = random_state

    def _fit(self, data: EncodedAnswers, gold: EncodedGold, progress: Progress | None) -> np.ndarray:
        seed = start_seed(self.random_state)
        best = self._best_start(data, gold, seed)
        params, posteriors, _, done = self._run(data, gold, best, self.n_iter, self.tol, progress)
        know, spam, strategy, _ = params
        self.n_iter_ = self.restart_iter + done  # the restarts' steps, then the final run's (as crowdloop.scale counts)
        self.skills_ = pd.Series(know / (know + spam), index=data.workers.rename("worker"), name="skill")
        self.spam_strategies_ = pd.DataFrame(
            strategy, index=data.workers.rename("worker"), columns=data.classes.rename("label")
        )
        return posteriors

    def _best_start(self, data: EncodedAnswers, gold: EncodedGold, seed: int) -> Params:
        """The start whose short run ends with the highest likelihood (the first of equals).

        Only the best one's parameters are kept while the others run: all the runs' posteriors,
        tasks x classes each, used to be held until the last had finished.
        """
        best, best_loglik = self._short_run(data, gold, seed, 0)
        for restart in range(1, self.n_restarts):
            params, loglik = self._short_run(data, gold, seed, restart)
            if loglik > best_loglik:
                best, best_loglik = params, loglik
        return best

    def _short_run(self, data: EncodedAnswers, gold: EncodedGold, seed: int, restart: int) -> tuple[Params, float]:
        start = self._random_start(data.workers, data.n_classes, seed, restart)
        params, _, loglik, _ = self._run(data, gold, start, self.restart_iter, 0.0, None)
        return params, loglik

    @staticmethod
    def _random_start(workers: pd.Index, n_classes: int, seed: int, restart: int) -> Params:
        """Start ``restart``: each worker's draws depend on their id, not on where their rows are."""
        draws = keyed_uniforms(workers, seed, restart, 2 + n_classes)
        draws *= 0.5  # in place, here and below: workers x classes arrays, the same numbers
        draws += 1.0
        know = draws[:, 1] / draws[:, :2].sum(axis=1)
        strategy = draws[:, 2:]
        strategy /= strategy.sum(axis=1, keepdims=True)
        uniform = np.full(n_classes, -np.log(n_classes))
        return know, 1.0 - know, strategy, uniform

    def _run(
        self,
        data: EncodedAnswers,
        gold: EncodedGold,
        params: Params,
        n_iter: int,
        tol: float,
        progress: Progress | None,
    ) -> tuple[Params, np.ndarray, float, int]:
        """EM from ``params``; return params, posteriors, log-likelihood, iterations."""
        current = [params]

        def step() -> float:
            posteriors, loglik = self._e_step(data, gold, current[0])
            current[0] = self._m_step(data, posteriors, current[0])
            return loglik / data.n_answers

        done = iterate(step, n_iter, tol, progress)
        posteriors, loglik = self._e_step(data, gold, current[0])
        return current[0], posteriors, loglik, done

    @staticmethod
    def _answer_likelihoods(data: EncodedAnswers, params: Params) -> tuple[np.ndarray, np.ndarray]:
        """Per answer: p(label | it is the true class) and p(label | it is not)."""
        know, spam_weight, strategy, _ = params
        spam = spam_weight[data.worker] * strategy[data.worker, data.label]
        return know[data.worker] + spam, spam

    def _e_step(self, data: EncodedAnswers, gold: EncodedGold, params: Params) -> tuple[np.ndarray, float]:
        posteriors, loglik = mace_posteriors(data, params)
        return clamp_gold(posteriors, gold), loglik

    def _m_step(self, data: EncodedAnswers, posteriors: np.ndarray, params: Params) -> Params:
        """Variational update of knowing rates and spam strategies from expected counts."""
        n_know, spam_counts = mace_counts(data, posteriors, params)
        totals = posteriors.sum(axis=0, keepdims=True)
        return self._update(n_know, data.worker_answer_counts - n_know, spam_counts, totals, params)

    def _update(
        self, n_know: np.ndarray, n_spam: np.ndarray, spam_counts: np.ndarray, totals: np.ndarray, params: Params
    ) -> Params:
        """Parameters from summed expected counts (also used on partition sums by ``crowdloop.scale``)."""
        know, spam = _beta_exp_logs(n_know + self.beta, n_spam + self.alpha)
        strategy = _dirichlet_exp_log(spam_counts + self.strategy_prior)
        log_prior = log_prior_from(totals) if self.learn_class_prior else params[3]
        return know, spam, strategy, log_prior


def mace_posteriors(data: EncodedAnswers, params: Params) -> tuple[np.ndarray, float]:
    """E-step: each task's posterior over classes and the data log-likelihood."""
    right, wrong = MACE._answer_likelihoods(data, params)
    scores = one_coin_log_scores(data, np.log(right), np.log(np.maximum(wrong, 1e-300)))
    scores += params[3]
    return posteriors_from_log(scores)


def mace_counts(data: EncodedAnswers, posteriors: np.ndarray, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """Expected answers each worker knew ``(W,)`` and spam counts ``(W, K)``: sums over answers."""
    right, wrong = MACE._answer_likelihoods(data, params)
    truth = posteriors[data.task, data.label]
    knowing = truth * (right - wrong) / right  # p(worker knew | answer)
    n_know = np.bincount(data.worker, weights=knowing, minlength=data.n_workers)
    flat = data.worker * data.n_classes + data.label
    size = data.n_workers * data.n_classes
    spam_counts = np.bincount(flat, weights=1.0 - knowing, minlength=size).astype(float)
    return n_know, spam_counts.reshape(data.n_workers, data.n_classes)


def _beta_exp_logs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``exp(E[log theta])`` and ``exp(E[log(1 - theta)])`` for theta ~ Beta(a, b)."""
    total = digamma(a + b)
    return np.asarray(np.exp(digamma(a) - total)), np.asarray(np.exp(digamma(b) - total))


def _dirichlet_exp_log(counts: np.ndarray) -> np.ndarray:
    """``exp(E[log xi])`` row-wise for xi ~ Dirichlet(counts) (in one workers x classes array)."""
    logs = np.asarray(digamma(counts))
    logs -= digamma(counts.sum(axis=1, keepdims=True))
    return np.asarray(np.exp(logs, out=logs))
