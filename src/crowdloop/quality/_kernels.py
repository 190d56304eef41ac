"""Vectorised building blocks shared by the aggregators (numpy in, numpy out).

No Python loop runs over answers or tasks: every step is a ``bincount`` or a
sparse product over the integer codes of :class:`EncodedAnswers`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import logsumexp

from crowdloop.quality._data import EncodedAnswers, EncodedGold

Progress = Callable[[int, float], None]

TINY = 1e-300


def normalize_rows(matrix: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """Rows scaled to sum to 1; an all-zero row becomes uniform.

    ``inplace`` overwrites ``matrix`` (the same numbers): on confusion matrices, workers x
    classes², a copy is the largest array of the fit.
    """
    totals = matrix.sum(axis=-1, keepdims=True)
    if not inplace:
        uniform = np.full_like(matrix, 1.0 / matrix.shape[-1])
        return np.asarray(np.divide(matrix, totals, out=uniform, where=totals > 0))
    np.divide(matrix, totals, out=matrix, where=totals > 0)
    np.copyto(matrix, 1.0 / matrix.shape[-1], where=~(totals > 0))  # zero or NaN rows, as above
    return matrix


def posteriors_from_log(log_scores: np.ndarray) -> tuple[np.ndarray, float]:
    """Softmax of each row and the total log normaliser (the data log-likelihood).

    Shifted by the row maximum, in plain numpy: the same numbers as
    ``scipy.special.logsumexp`` at a fraction of its cost on many short rows
    (it runs once per EM iteration over every task). Rows without a finite
    maximum go through ``logsumexp``.
    """
    top = log_scores.max(axis=1, keepdims=True)
    if not np.isfinite(top).all():
        norm = logsumexp(log_scores, axis=1, keepdims=True)
        return np.exp(log_scores - norm), float(norm.sum())
    shifted = np.subtract(log_scores, top)
    np.exp(shifted, out=shifted)  # in place: one (tasks x classes) array fewer
    totals = shifted.sum(axis=1, keepdims=True)
    shifted /= totals
    return shifted, float((top + np.log(totals)).sum())


def clamp_gold(posteriors: np.ndarray, gold: EncodedGold) -> np.ndarray:
    """Set known tasks' posteriors to their one-hot true class (in place, returned)."""
    if len(gold):
        posteriors[gold.task] = 0.0
        posteriors[gold.task, gold.label] = 1.0
    return posteriors


def vote_counts(data: EncodedAnswers, weights: np.ndarray | None = None) -> np.ndarray:
    """``(n_tasks, n_classes)`` votes, each answer weighted by its worker's weight."""
    if weights is None:
        return data.task_label_counts
    flat = data.task * data.n_classes + data.label
    size = data.n_tasks * data.n_classes
    counts = np.bincount(flat, weights=weights[data.worker], minlength=size)
    return np.asarray(counts.reshape(data.n_tasks, data.n_classes), dtype=float)


def worker_agreement(data: EncodedAnswers, posteriors: np.ndarray) -> np.ndarray:
    """Each worker's expected share of answers that match the task's class."""
    matched = posteriors[data.task, data.label]
    hits = np.bincount(data.worker, weights=matched, minlength=data.n_workers)
    return np.asarray(hits / np.maximum(data.worker_answer_counts, 1.0))


def one_hot(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows of the identity for each code."""
    out = np.zeros((len(codes), n_classes))
    out[np.arange(len(codes)), codes] = 1.0
    return out


def confusion_counts(data: EncodedAnswers, posteriors: np.ndarray) -> np.ndarray:
    """Expected counts ``(n_workers, true class, observed label)`` (the DS M-step sums).

    A view of one C-ordered ``(W*K_obs, K_true)`` array: the layout every workers x classes²
    array of the Dawid-Skene family keeps (operate in place or with ufuncs, which keep it), so
    :func:`confusion_log_scores` and ``errors_`` reshape it without a copy.
    """
    k = data.n_classes
    counts = np.asarray(data.workerlabel_task @ posteriors)  # (W*K_obs, K_true)
    return counts.reshape(data.n_workers, k, k).transpose(0, 2, 1)


def confusion_log_scores(data: EncodedAnswers, log_confusion: np.ndarray) -> np.ndarray:
    """``(n_tasks, n_classes)`` sum over a task's answers of ``log pi[w, k, l]``."""
    k = data.n_classes
    flat = log_confusion.transpose(0, 2, 1).reshape(data.n_workers * k, k)  # no copy in that layout
    return np.asarray(data.task_workerlabel @ flat)


def log_confusion(confusion: np.ndarray) -> np.ndarray:
    """``log(max(confusion, 1e-300))`` in one new array of ``confusion``'s layout (not two)."""
    logs = np.maximum(confusion, 1e-300)
    return np.asarray(np.log(logs, out=logs))


def one_coin_log_scores(data: EncodedAnswers, log_right: np.ndarray, log_wrong: np.ndarray) -> np.ndarray:
    """Log scores when an answer's likelihood depends only on being right or wrong.

    ``log_right[i]`` / ``log_wrong[i]`` are answer i's log-likelihood if its label
    is / is not the true class; every class gets the wrong term, the answered
    label gets the difference on top.
    """
    k = data.n_classes
    base = np.bincount(data.task, weights=log_wrong, minlength=data.n_tasks)
    flat = data.task * k + data.label
    bonus = np.bincount(flat, weights=log_right - log_wrong, minlength=data.n_tasks * k)
    scores = bonus.reshape(data.n_tasks, k)
    scores += base[:, None]  # in place: one (tasks x classes) array, not two
    return scores


def log_prior_from(posteriors: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """Log class proportions estimated from posteriors, with additive smoothing."""
    totals = posteriors.sum(axis=0) + smoothing
    return np.asarray(np.log(totals / totals.sum()))


def iterate(step: Callable[[], float], n_iter: int, tol: float, progress: Progress | None) -> int:
    """Run ``step`` until its objective changes by less than ``tol``; return the count.

    ``step`` performs one full iteration (M then E) and returns the objective,
    normalised per answer so that ``tol`` means the same on any data size.
    """
    previous = -np.inf
    for iteration in range(1, n_iter + 1):
        objective = step()
        change = abs(objective - previous)
        if progress is not None:
            progress(iteration, change)
        if change < tol:
            return iteration
        previous = objective
    return n_iter
