"""Populations of simulated workers: reliable, noisy, spammers, adversarial and class-biased.

Every worker is a confusion matrix ``C[k, l] = p(answer l | true class k)`` and a log-normal
answer time, so one sampler serves every kind and the kinds differ only in how the matrix
and the time are drawn:

- **reliable**: right with probability Beta(18, 2) (about 0.9), errors spread evenly;
- **noisy**: right with probability uniform in [1/K + 0.1, 0.75];
- **spammer**: ignores the item: answers one habitual label, fast;
- **adversarial**: knows the answer and gives a wrong one (right 5% of the time);
- **class_biased**: right with probability Beta(16, 4) (about 0.8), and half of its errors go to
  one favourite class, as a worker who says "yes" when unsure.

Example:
    >>> import pandas as pd
    >>> truth = pd.Series(["cat", "dog"] * 50, index=range(100))
    >>> crowd = SimulatedCrowd(truth, make_population(10, ["cat", "dog"], random_state=0), random_state=0)
    >>> crowd.answer(crowd.workers[0], 3).label in ("cat", "dog")
    True
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crowdloop.errors import InvalidParameterError, UnknownLabelError
from crowdloop.sim.crowds import Crowd, CrowdAnswer

KINDS = ("reliable", "noisy", "spammer", "adversarial", "class_biased")
DEFAULT_MIX: dict[str, float] = {
    "reliable": 0.5,
    "noisy": 0.25,
    "spammer": 0.1,
    "adversarial": 0.05,
    "class_biased": 0.1,
}
MEDIAN_SECONDS = {"reliable": 9.0, "noisy": 6.0, "spammer": 1.5, "adversarial": 5.0, "class_biased": 7.0}


@dataclass(frozen=True)
class WorkerProfile:
    """One simulated worker: kind, confusion matrix (true x answered) and median answer time."""

    name: str
    kind: str
    confusion: np.ndarray
    median_seconds: float

    @property
    def accuracy(self) -> float:
        """Accuracy on a balanced set of items."""
        return float(np.mean(np.diag(self.confusion)))


def _even_errors(k: int, accuracy: float) -> np.ndarray:
    off = (1.0 - accuracy) / (k - 1)
    return np.full((k, k), off) + np.eye(k) * (accuracy - off)


def _reliable(rng: np.random.Generator, k: int) -> np.ndarray:
    return _even_errors(k, float(rng.beta(18, 2)))


def _noisy(rng: np.random.Generator, k: int) -> np.ndarray:
    low = min(1.0 / k + 0.1, 0.7)
    return _even_errors(k, float(rng.uniform(low, 0.75)))


def _spammer(rng: np.random.Generator, k: int) -> np.ndarray:
    confusion = np.zeros((k, k))
    confusion[:, rng.integers(k)] = 1.0
    return confusion


def _adversarial(rng: np.random.Generator, k: int) -> np.ndarray:
    return _even_errors(k, 0.05)


def _class_biased(rng: np.random.Generator, k: int) -> np.ndarray:
    favourite = int(rng.integers(k))
    confusion = _even_errors(k, float(rng.beta(16, 4)))
    confusion[~np.eye(k, dtype=bool)] *= 0.5
    confusion[:, favourite] += 1.0 - confusion.sum(axis=1)  # half of every error goes to the favourite
    return confusion


_DRAW: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "reliable": _reliable,
    "noisy": _noisy,
    "spammer": _spammer,
    "adversarial": _adversarial,
    "class_biased": _class_biased,
}


def make_population(
    n_workers: int,
    labels: Sequence[Hashable],
    mix: Mapping[str, float] | None = None,
    random_state: int = 0,
    prefix: str = "sim",
) -> list[WorkerProfile]:
    """``n_workers`` profiles whose kinds follow ``mix`` (shares, normalised; default :data:`DEFAULT_MIX`),
    named ``{prefix}0000``, ``{prefix}0001``... (give populations to be combined distinct prefixes)."""
    shares = dict(DEFAULT_MIX if mix is None else mix)
    unknown = set(shares) - set(KINDS)
    if unknown or not shares or min(shares.values()) < 0 or sum(shares.values()) <= 0:
        raise InvalidParameterError(f"mix must give non-negative shares of {', '.join(KINDS)}; got {shares}.")
    if n_workers < 1 or len(labels) < 2:
        raise InvalidParameterError(f"need at least one worker and two labels; got {n_workers} and {len(labels)}.")
    rng = np.random.default_rng(random_state)
    names = list(shares)
    weights = np.array([shares[n] for n in names], dtype=float)
    kinds = rng.choice(len(names), size=n_workers, p=weights / weights.sum())
    return [_profile(rng, f"{prefix}{i:04d}", names[kind], len(labels)) for i, kind in enumerate(kinds)]


def _profile(rng: np.random.Generator, name: str, kind: str, k: int) -> WorkerProfile:
    median = MEDIAN_SECONDS[kind] * float(rng.lognormal(0.0, 0.3))
    return WorkerProfile(name, kind, _DRAW[kind](rng, k), median)


class SimulatedCrowd(Crowd):
    """Simulated workers answering tasks whose true labels are known.

    Each answer is drawn from the worker's confusion row of the task's true class; the time
    from a log-normal around the worker's median (sigma 0.5). Everyone can do every task and
    turns up equally often. The draws come from one ``random_state`` generator, so a run that
    asks the same questions in the same order gets the same answers.
    """

    def __init__(self, truth: pd.Series, profiles: Sequence[WorkerProfile], random_state: int = 0) -> None:
        if truth.empty or not profiles:
            raise InvalidParameterError("a simulated crowd needs true labels and at least one worker.")
        self._labels = sorted(truth.unique().tolist())
        if len(self._labels) != profiles[0].confusion.shape[0]:
            raise UnknownLabelError(
                f"the profiles have {profiles[0].confusion.shape[0]} classes, the truth {len(self._labels)}."
            )
        codes = {label: i for i, label in enumerate(self._labels)}
        self._truth = {task: codes[label] for task, label in truth.items()}
        self._profiles = {p.name: p for p in profiles}
        self._rng = np.random.default_rng(random_state)

    @property
    def labels(self) -> list[Hashable]:
        return list(self._labels)

    @property
    def tasks(self) -> list[Hashable]:
        return list(self._truth)

    @property
    def workers(self) -> list[Hashable]:
        return list(self._profiles)

    def profile(self, worker: Hashable) -> WorkerProfile:
        return self._profiles[str(worker)]

    def answer(self, worker: Hashable, task: Hashable) -> CrowdAnswer:
        profile = self._profiles[str(worker)]
        row = profile.confusion[self._truth[task]]
        label = self._labels[int(self._rng.choice(len(row), p=row))]
        seconds = float(profile.median_seconds * self._rng.lognormal(0.0, 0.5))
        return CrowdAnswer(label, round(seconds, 2))
