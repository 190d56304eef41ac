r"""The crowd model behind the dynamic-overlap stop rule: Dawid-Skene with two-level shrinkage.

While answers are being bought, most workers have given only a handful of them, and a plain
Dawid-Skene fit would believe a worker who happened to agree twice. Each worker's confusion
matrix is therefore shrunk twice:

.. math::
    \theta_w = \frac{\sum_{(t,w,l)} p(z_t = l) + s_1 \bar\theta}{n_w + s_1}, \qquad
    \pi^{(w)}_{k\cdot} = \frac{c^{(w)}_{k\cdot} + s_2\, O(\theta_w)_{k\cdot}}{\sum_l c^{(w)}_{kl} + s_2}

first the worker's accuracy :math:`\theta_w` towards the crowd's :math:`\bar\theta` (which is
itself shrunk towards ``prior_accuracy``), then their confusion matrix (expected counts
:math:`c^{(w)}`) towards :math:`O(\theta_w)`: the crowd's pooled confusion matrix with its
diagonal moved by :math:`\theta_w - \bar\theta` and each row's errors spread as the crowd
spreads them (with ``crowd_confusion=False``: evenly, the one-coin matrix). Real crowds
confuse classes in pairs (two dog breeds; a neutral face for a sad one), and a stop rule that
assumed even errors would take two agreeing answers for far stronger evidence than they are.
A newcomer is the average worker; a worker with many answers gets their own matrix.

The accuracy shrinkage is strong on purpose (``accuracy_strength`` = 30 pseudo-answers). While
items have one to three answers each, EM credits the worker who settles a dispute with being
right, since the posterior follows the worker it already trusts: on ``dog``, after a dynamic
run at 1.7 answers per item, the trusted workers' estimated accuracy was 0.83 against 0.73 true
(and 0.76 against 0.70 even at a fixed random overlap of 3). An item then closed on one such
worker's answer at a stated 0.94 was right 74% of the time. Shrinkage does not cure this for
the busiest workers (with a hundred answers or more, ``dog``'s were still rated 0.90 against
0.78 true), and on ``dog`` the gain is within the noise: measured with 10 replay orders and a
check on fresh ones (``benchmarks/label_efficiency.py``), 30 met two of the six majority-vote
targets and two of the Dawid-Skene ones, 3 met none and three.

Posteriors are :math:`p(z_t = k) \propto \rho_k \prod \pi^{(w)}_{k l}`; gold tasks are clamped to their label.
The structure is that of :class:`crowdloop.quality.ShrunkDawidSkene`, kept here in a small
incremental form: between refits each new answer just adds its log-likelihood row to its task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from crowdloop.errors import InvalidParameterError


def _one_coin(accuracy: np.ndarray, k: int) -> np.ndarray:
    """(W, K, K) matrices with ``accuracy`` on the diagonal and the rest spread evenly."""
    off = (1.0 - accuracy) / (k - 1)
    return off[:, None, None] + np.eye(k)[None] * (accuracy - off)[:, None, None]


@dataclass
class ShrunkCrowdModel:
    """Incremental shrunk Dawid-Skene over integer-coded answers (tasks, workers, labels)."""

    n_classes: int
    prior_accuracy: float = 0.7
    accuracy_strength: float = 30.0
    confusion_strength: float = 6.0
    prior_strength: float = 20.0
    n_iter: int = 30
    tol: float = 1e-4
    crowd_confusion: bool = True
    crowd_confusion_strength: float = 10.0
    log_confusion_: np.ndarray = field(init=False, repr=False)
    crowd_confusion_: np.ndarray = field(init=False, repr=False)
    log_prior_: np.ndarray = field(init=False, repr=False)
    crowd_accuracy_: float = field(init=False)
    accuracy_: np.ndarray = field(init=False, repr=False)
    evidence_: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise InvalidParameterError(f"n_classes must be at least 2; got {self.n_classes}.")
        if not 0.0 < self.prior_accuracy < 1.0:
            raise InvalidParameterError(f"prior_accuracy must be in (0, 1); got {self.prior_accuracy}.")
        self.crowd_accuracy_ = self.prior_accuracy
        self.crowd_confusion_ = _one_coin(np.array([self.prior_accuracy]), self.n_classes)[0]
        self.log_prior_ = np.full(self.n_classes, -np.log(self.n_classes))
        self.log_confusion_ = np.zeros((0, self.n_classes, self.n_classes))
        self.accuracy_, self.evidence_ = np.zeros(0), np.zeros(0)

    def newcomer(self) -> np.ndarray:
        """Log confusion of a worker with no answers yet: the crowd's pooled confusion matrix."""
        return np.asarray(np.log(self._worker_prior(np.array([self.crowd_accuracy_]))[0]))

    def _worker_prior(self, accuracy: np.ndarray) -> np.ndarray:
        """(W, K, K) matrices a worker's counts are shrunk towards: the crowd's confusion pattern
        (which classes get mistaken for which), its diagonal moved by the worker's own accuracy."""
        if not self.crowd_confusion:
            return _one_coin(np.clip(accuracy, 0.02, 0.98), self.n_classes)
        crowd = self.crowd_confusion_
        shift = (accuracy - self.crowd_accuracy_)[:, None]
        diagonal = np.clip(np.diag(crowd)[None, :] + shift, 0.02, 0.98)  # (W, K)
        errors = crowd * (1.0 - np.eye(self.n_classes))
        errors = errors / errors.sum(axis=1, keepdims=True)  # (K, K): where a row's mistakes go
        matrices = errors[None] * (1.0 - diagonal)[:, :, None]
        idx = np.arange(self.n_classes)
        matrices[:, idx, idx] = diagonal
        return np.asarray(matrices)

    def skill_bar(self, quantile: float | None, min_evidence: float) -> float:
        """The accuracy below which ``quantile`` of the assessed workers' answers fall (0 when there
        is no quantile or nobody has ``min_evidence`` answers on shared items yet).

        The "skip low-skill performers" bar rises and falls with the crowd, so a crowd of middling
        workers keeps its better half rather than everybody or nobody.
        """
        assessed = self.evidence_ >= min_evidence
        if quantile is None or not assessed.any():
            return 0.0
        acc, weight = self.accuracy_[assessed], self.evidence_[assessed]
        order = np.argsort(acc)
        cumulative = np.cumsum(weight[order]) / weight.sum()
        return float(acc[order][np.searchsorted(cumulative, quantile)])

    def held_back(self, bar: float, floor: float | None, min_evidence: float) -> np.ndarray:
        """Per worker: assessed on ``min_evidence`` answers and either below ``bar`` or closer to
        chance than ``floor`` of the way from chance to perfect. With most workers seen on only a
        few items each, labels bought from the better half are cheaper per unit of confidence."""
        chance = 1.0 / self.n_classes
        low = self.accuracy_ < bar
        if floor is not None:
            low |= self.accuracy_ < chance + floor * (1.0 - chance)
        return np.asarray(low & (self.evidence_ >= min_evidence))

    def worker_log_confusion(self, worker: int) -> np.ndarray:
        if worker < len(self.log_confusion_):
            return np.asarray(self.log_confusion_[worker])
        return self.newcomer()

    def fit(
        self,
        tasks: np.ndarray,
        workers: np.ndarray,
        labels: np.ndarray,
        n_tasks: int,
        gold: np.ndarray | None = None,
    ) -> np.ndarray:
        """Re-estimate the workers from all answers; returns the (n_tasks, K) posteriors.

        ``gold[t]`` is a task's known class or -1. Every fit starts from the plain vote, as
        Dawid-Skene does: starting from the previous fit would let one bad early fit (a class
        prior swung too far, or labels switched wholesale) carry on into every later one.
        """
        n_workers = int(workers.max()) + 1 if len(workers) else 0
        self._grow(n_workers)
        known = np.zeros(n_tasks, dtype=bool) if gold is None else gold >= 0
        informative = ((np.bincount(tasks, minlength=n_tasks) >= 2) | known)[tasks]
        posteriors = self._clamp(_vote_shares(tasks, labels, n_tasks, self.n_classes), gold)
        for _ in range(self.n_iter):
            before = self.log_confusion_
            self._m_step(workers, labels, posteriors[tasks] * informative[:, None], n_workers)
            self._prior_from(posteriors, np.bincount(tasks, minlength=n_tasks) >= 2)
            posteriors = self._clamp(_softmax(self.log_scores(tasks, workers, labels, n_tasks)), gold)
            if float(np.abs(self.log_confusion_ - before[:n_workers]).max(initial=0.0)) < self.tol:
                break
        return posteriors

    def log_scores(self, tasks: np.ndarray, workers: np.ndarray, labels: np.ndarray, n_tasks: int) -> np.ndarray:
        """Unnormalised log posteriors: prior plus each answer's log-likelihood row."""
        self._grow(int(workers.max()) + 1 if len(workers) else 0)
        rows = self.log_confusion_[workers, :, labels]  # (N, K)
        scores = np.tile(self.log_prior_, (n_tasks, 1))
        for k in range(self.n_classes):
            scores[:, k] += np.bincount(tasks, weights=rows[:, k], minlength=n_tasks)
        return scores

    def _grow(self, n_workers: int) -> None:
        extra = n_workers - len(self.log_confusion_)
        if extra > 0:
            fresh = np.broadcast_to(self.newcomer(), (extra, self.n_classes, self.n_classes))
            self.log_confusion_ = np.concatenate([self.log_confusion_, fresh])

    def _m_step(self, workers: np.ndarray, labels: np.ndarray, truth: np.ndarray, n_workers: int) -> None:
        k = self.n_classes
        counts = np.zeros((n_workers, k, k))
        cell = workers * k + labels
        for true in range(k):
            weights = truth[:, true]
            counts[:, true, :] = np.bincount(cell, weights=weights, minlength=n_workers * k).reshape(n_workers, k)
        right = np.einsum("wkk->w", counts)
        answered = counts.sum(axis=(1, 2))
        self.crowd_accuracy_ = float((right.sum() + 10 * self.prior_accuracy) / (answered.sum() + 10))
        pooled = counts.sum(axis=0) + self.crowd_confusion_strength * _one_coin(np.array([self.prior_accuracy]), k)[0]
        self.crowd_confusion_ = pooled / pooled.sum(axis=1, keepdims=True)
        accuracy = (right + self.accuracy_strength * self.crowd_accuracy_) / (answered + self.accuracy_strength)
        self.accuracy_, self.evidence_ = accuracy, answered
        shrunk = counts + self.confusion_strength * self._worker_prior(accuracy)
        self.log_confusion_ = np.log(shrunk / shrunk.sum(axis=2, keepdims=True))

    def _prior_from(self, posteriors: np.ndarray, informative: np.ndarray) -> None:
        """Class shares from the tasks with two answers or more, held near uniform by ``prior_strength``
        pseudo-tasks per class: early on, a skewed prior outvotes weak worker evidence, which makes
        the workers look worse, which skews the prior further."""
        mean = posteriors[informative].sum(axis=0) + self.prior_strength
        self.log_prior_ = np.log(mean / mean.sum())

    @staticmethod
    def _clamp(rows: np.ndarray, gold: np.ndarray | None) -> np.ndarray:
        """Rows whose ``gold`` code is known become one-hot on it."""
        if gold is None:
            return rows
        known = gold >= 0
        if known.any():
            rows = rows.copy()
            rows[known] = 0.0
            rows[np.flatnonzero(known), gold[known]] = 1.0
        return rows


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))


def _vote_shares(tasks: np.ndarray, labels: np.ndarray, n_tasks: int, n_classes: int) -> np.ndarray:
    votes = np.zeros((n_tasks, n_classes))
    np.add.at(votes, (tasks, labels), 1.0)
    votes += 1e-9
    return np.asarray(votes / votes.sum(axis=1, keepdims=True))
