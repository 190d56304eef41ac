"""Synthetic categorical answers from workers of varied quality (pure numpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crowdloop.errors import InvalidParameterError


@dataclass(frozen=True)
class SyntheticCrowd:
    """Answers, the true labels and each worker's accuracy."""

    answers: pd.DataFrame
    gold: pd.Series
    worker_accuracy: pd.Series


def synthetic_answers(
    n_tasks: int = 1000,
    n_workers: int = 100,
    n_classes: int = 5,
    overlap: int = 5,
    spammer_share: float = 0.2,
    random_state: int = 0,
) -> SyntheticCrowd:
    """Draw ``n_tasks * overlap`` answers from a Dawid-Skene crowd.

    Each task gets ``overlap`` distinct workers (chosen uniformly). Reliable
    workers are right with probability drawn from Beta(6, 2) and otherwise pick a
    wrong class at random; a ``spammer_share`` of workers answer uniformly at
    random. True classes are mildly unbalanced. Integer codes throughout, so ten
    million answers fit in a few hundred MB.
    """
    if not 1 <= overlap <= n_workers:
        raise InvalidParameterError(f"overlap must be in [1, n_workers={n_workers}]; got {overlap}.")
    if n_classes < 2 or n_tasks < 1:
        raise InvalidParameterError("need at least one task and two classes.")
    rng = np.random.default_rng(random_state)
    truth = rng.choice(n_classes, size=n_tasks, p=_class_shares(n_classes))
    accuracy = rng.beta(6, 2, size=n_workers)
    spammers = rng.random(n_workers) < spammer_share
    accuracy[spammers] = 1.0 / n_classes
    workers = _distinct_offsets(rng, n_tasks, n_workers, overlap).reshape(-1)
    tasks = np.repeat(np.arange(n_tasks), overlap)
    labels = _answer(rng, truth[tasks], accuracy[workers], n_classes)
    answers = pd.DataFrame({"task": tasks, "worker": workers, "label": labels})
    gold = pd.Series(truth, index=pd.RangeIndex(n_tasks, name="task"), name="label")
    return SyntheticCrowd(answers, gold, pd.Series(accuracy, name="accuracy"))


def _class_shares(n_classes: int) -> np.ndarray:
    weights = np.linspace(1.0, 2.0, n_classes)
    return np.asarray(weights / weights.sum())


def _distinct_offsets(rng: np.random.Generator, n_tasks: int, n_workers: int, overlap: int) -> np.ndarray:
    """Distinct workers per row without a per-task loop: start + cumulative positive gaps."""
    gaps = rng.integers(1, max(n_workers // overlap, 2), size=(n_tasks, overlap))
    gaps[:, 0] = rng.integers(0, n_workers, size=n_tasks)
    return np.cumsum(gaps, axis=1) % n_workers


def _answer(rng: np.random.Generator, truth: np.ndarray, accuracy: np.ndarray, n_classes: int) -> np.ndarray:
    right = rng.random(len(truth)) < accuracy
    wrong = (truth + rng.integers(1, n_classes, size=len(truth))) % n_classes
    return np.where(right, truth, wrong).astype(np.int64)
