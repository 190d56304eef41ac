"""Dawid-Skene and its one-coin variant: EM over workers' confusion matrices."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from crowdloop.quality._data import EncodedAnswers, EncodedGold
from crowdloop.quality._kernels import (
    Progress,
    clamp_gold,
    confusion_counts,
    confusion_log_scores,
    iterate,
    log_confusion,
    log_prior_from,
    normalize_rows,
    one_coin_log_scores,
    posteriors_from_log,
    vote_counts,
    worker_agreement,
)
from crowdloop.quality._memory import Footprint
from crowdloop.quality._params import Interval
from crowdloop.quality.base import BaseClassificationAggregator


class DawidSkene(BaseClassificationAggregator):
    r"""Each worker has a confusion matrix; EM learns them with the true labels.

    .. math::
        p(z_t = k \mid \text{answers}) \propto \rho_k \prod_{(t, w, l)} \pi^{(w)}_{k l}

    The M-step sets :math:`\pi^{(w)}_{kl}` to the expected share of worker
    :math:`w`'s answers with true class :math:`k` that said :math:`l` (plus
    ``smoothing`` pseudo-counts), and :math:`\rho` to the mean posterior. EM starts
    from the majority vote and stops when the log-likelihood per answer changes by
    less than ``tol``.

    Maximum likelihood has no brake on workers with one or two answers: EM may
    explain a lone answer by a worker who always gives that label, which says
    nothing about the task. :class:`ShrunkDawidSkene`, :class:`IBCC` and the
    default aggregator regularise exactly this.

    Reference: A. P. Dawid and A. M. Skene, "Maximum likelihood estimation of
    observer error-rates using the EM algorithm", Applied Statistics 28(1), 1979.

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"),
        ...                         "label": ["x", "x", "y", "y", "y", "x"]})
        >>> DawidSkene().fit(answers).labels_.tolist()
        ['x', 'y']
    """

    _footprint = Footprint(confusion=2.2, task_classes=4.3, per_answer=58)

    _parameter_constraints: ClassVar[dict[str, object]] = {
        "n_iter": Interval(int, 1, None),
        "tol": Interval(float, 0, None),
        "smoothing": Interval(float, 0, None),
    }

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        smoothing: float = 0.01,
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing

    def _fit(self, data: EncodedAnswers, gold: EncodedGold, progress: Progress | None) -> np.ndarray:
        # in the dict only: a local name held the start's (tasks x classes) array to the end of the fit
        state = {"posteriors": clamp_gold(normalize_rows(vote_counts(data)), gold)}

        def step() -> float:
            self._m_step(data, state["posteriors"])
            state["posteriors"], loglik = self._e_step(data, gold)
            return loglik / data.n_answers

        self.n_iter_ = iterate(step, self.n_iter, self.tol, progress)
        self._store_workers(data)
        return state["posteriors"]

    def _m_step(self, data: EncodedAnswers, posteriors: np.ndarray) -> None:
        counts = confusion_counts(data, posteriors)
        counts += self.smoothing  # in place: each workers x classes² copy is the fit's largest array
        self._confusion = normalize_rows(counts, inplace=True)
        self._log_prior = log_prior_from(posteriors, smoothing=1e-6)

    def _e_step(self, data: EncodedAnswers, gold: EncodedGold) -> tuple[np.ndarray, float]:
        scores = confusion_log_scores(data, log_confusion(self._confusion))
        scores += self._log_prior
        posteriors, loglik = posteriors_from_log(scores)
        return clamp_gold(posteriors, gold), loglik

    def _store_workers(self, data: EncodedAnswers) -> None:
        """Expose ``errors_`` (rows: worker, observed label; columns: true label) and more."""
        self.priors_ = pd.Series(np.exp(self._log_prior), index=data.classes.rename("label"))
        self.errors_ = confusion_frame(self._confusion, data)
        diagonal = np.einsum("wkk->wk", self._confusion)
        self.skills_ = pd.Series(diagonal @ self.priors_.to_numpy(), index=data.workers.rename("worker"), name="skill")


def confusion_frame(confusion: np.ndarray, data: EncodedAnswers) -> pd.DataFrame:
    """``(worker, observed) x true`` frame of ``confusion[w, true, observed]`` (Crowd-Kit layout)."""
    k = data.n_classes
    flat = confusion.transpose(0, 2, 1).reshape(data.n_workers * k, k)
    index = pd.MultiIndex.from_product([data.workers, data.classes], names=["worker", "label"])
    return pd.DataFrame(flat, index=index, columns=data.classes.rename("label"))


class OneCoinDawidSkene(DawidSkene):
    r"""Dawid-Skene where each worker has one skill: right with probability :math:`s_w`.

    .. math::
        \pi^{(w)}_{kl} = s_w \text{ if } l = k, \quad \frac{1 - s_w}{K - 1} \text{ otherwise}

    The M-step sets :math:`s_w` to the worker's expected share of correct answers
    (with ``smoothing`` pseudo-counts, half right and half wrong). Fewer parameters
    than full Dawid-Skene, so it holds up when workers answer little.

    Reference: the "one-coin" model of D. Karger, S. Oh, D. Shah, "Iterative
    learning for reliable crowdsourcing systems", NIPS 2011; EM as in Crowd-Kit.

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"),
        ...                         "label": [1, 1, 0, 0, 0, 0]})
        >>> OneCoinDawidSkene().fit(answers).labels_.tolist()
        [1, 0]
    """

    _footprint = Footprint(task_classes=4.3, per_answer=62)

    def _m_step(self, data: EncodedAnswers, posteriors: np.ndarray) -> None:
        right = worker_agreement(data, posteriors) * data.worker_answer_counts
        skills = (right + self.smoothing) / (data.worker_answer_counts + 2 * self.smoothing)
        self._skill = np.clip(skills, 1e-6, 1 - 1e-6)
        self._log_prior = log_prior_from(posteriors, smoothing=1e-6)

    def _e_step(self, data: EncodedAnswers, gold: EncodedGold) -> tuple[np.ndarray, float]:
        skill = self._skill[data.worker]
        log_right = np.log(skill)
        log_wrong = np.log((1 - skill) / max(data.n_classes - 1, 1))
        scores = one_coin_log_scores(data, log_right, log_wrong)
        scores += self._log_prior
        posteriors, loglik = posteriors_from_log(scores)
        return clamp_gold(posteriors, gold), loglik

    def _store_workers(self, data: EncodedAnswers) -> None:
        """``skills_`` and ``priors_``; ``errors_`` is built when read (see :attr:`errors_`)."""
        self.priors_ = pd.Series(np.exp(self._log_prior), index=data.classes.rename("label"))
        self.skills_ = pd.Series(self._skill, index=data.workers.rename("worker"), name="skill")
        self._names = (data.workers, data.classes)

    @property  # DawidSkene's errors_ is set by fit; this one is derived from the skills when read
    def errors_(self) -> pd.DataFrame:  # type: ignore[override]
        """Confusion matrices implied by the skills (as :class:`DawidSkene`'s ``errors_``).

        Built on each read, not by ``fit``: they are workers x classes² numbers (800 MB for 100
        workers and 1,000 classes) that the fit never needs, which kept this model's memory
        from staying linear in the classes.
        """
        if "_names" not in self.__dict__:
            return self.__getattr__("errors_")  # type: ignore[no-any-return]  # raises NotFittedError
        workers, classes = self._names
        k = len(classes)
        flat = np.empty((len(workers) * k, k))  # row (worker, observed), column true: one allocation
        flat[:] = np.repeat((1 - self._skill) / max(k - 1, 1), k)[:, None]
        diagonal = flat.reshape(len(workers), k, k)
        diagonal[:, np.arange(k), np.arange(k)] = self._skill[:, None]
        index = pd.MultiIndex.from_product([workers, classes], names=["worker", "label"])
        return pd.DataFrame(flat, index=index, columns=classes.rename("label"))
