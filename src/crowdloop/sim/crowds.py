"""Crowds a simulation can ask for answers: the interface, and the replay of a recorded crowd.

A :class:`Crowd` knows its workers, which tasks each of them can do and what they answer.
Drivers (in-process or over HTTP) decide who is asked what; the crowd only answers. The
replayed crowd gives each worker's real recorded answer and can do exactly the tasks the
worker really did, so a policy replayed on a data set can never buy an answer that was not
given: the worst it can do is run out of answers on an item.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crowdloop.errors import ConflictError, InvalidInputError
from crowdloop.quality._data import check_answers


@dataclass(frozen=True)
class CrowdAnswer:
    """One answer: the label and the seconds it took (None when the crowd does not say)."""

    label: Hashable
    seconds: float | None = None


class Crowd(ABC):
    """Workers that answer tasks; what a driver needs, nothing about who asks whom."""

    @property
    @abstractmethod
    def labels(self) -> list[Hashable]:
        """The label set, sorted."""

    @property
    @abstractmethod
    def tasks(self) -> list[Hashable]:
        """Every task the crowd can be asked about."""

    @property
    @abstractmethod
    def workers(self) -> list[Hashable]:
        """Every worker."""

    def arrival_weights(self) -> np.ndarray:
        """How often each worker (in :attr:`workers` order) turns up, relative to the others."""
        return np.ones(len(self.workers))

    def tasks_of(self, worker: Hashable) -> Collection[Hashable] | None:
        """The tasks ``worker`` can do; None means every task."""
        return None

    @abstractmethod
    def answer(self, worker: Hashable, task: Hashable) -> CrowdAnswer:
        """The worker's answer on ``task``."""


class ReplayedCrowd(Crowd):
    """A recorded crowd replayed: a worker gives the answer they really gave.

    A worker is only able to do the tasks they answered in the recording, and turns up in
    proportion to how many answers they recorded, so the mix of workers a policy meets is
    the recorded one. ``answers`` has ``task``, ``worker``, ``label`` and optionally
    ``seconds``; when a worker answered a task twice the last answer is kept.

    Example:
        >>> import pandas as pd
        >>> crowd = ReplayedCrowd(pd.DataFrame({"task": [1, 1, 2], "worker": ["a", "b", "a"], "label": [0, 1, 1]}))
        >>> crowd.answer("b", 1).label, sorted(crowd.tasks_of("a"))
        (1, [1, 2])
    """

    def __init__(self, answers: pd.DataFrame) -> None:
        # answers concatenated from several files repeat index labels, which picked several seconds
        # per answer below; row numbers are unique (and name the row in an error about it)
        rows = answers.reset_index(drop=True) if isinstance(answers, pd.DataFrame) else answers
        frame = check_answers(rows).drop_duplicates(["task", "worker"], keep="last")
        seconds = rows.loc[frame.index, "seconds"] if "seconds" in rows.columns else None
        self._labels = _sorted(frame["label"].unique().tolist())
        self._tasks = frame["task"].unique().tolist()
        self._by_worker: dict[Hashable, dict[Hashable, CrowdAnswer]] = {}
        times = [None] * len(frame) if seconds is None else [None if pd.isna(s) else float(s) for s in seconds]
        for task, worker, label, took in zip(frame["task"], frame["worker"], frame["label"], times, strict=True):
            self._by_worker.setdefault(worker, {})[task] = CrowdAnswer(label, took)
        self._workers = list(self._by_worker)

    @property
    def labels(self) -> list[Hashable]:
        return list(self._labels)

    @property
    def tasks(self) -> list[Hashable]:
        return list(self._tasks)

    @property
    def workers(self) -> list[Hashable]:
        return list(self._workers)

    def arrival_weights(self) -> np.ndarray:
        return np.array([len(self._by_worker[w]) for w in self._workers], dtype=float)

    def most_answers_per_task(self) -> int:
        """The most answers any one task has in the recording: a replay can buy no more for it."""
        return max(Counter(task for answered in self._by_worker.values() for task in answered).values())

    def tasks_of(self, worker: Hashable) -> Collection[Hashable] | None:
        return self._by_worker[worker].keys()

    def answer(self, worker: Hashable, task: Hashable) -> CrowdAnswer:
        recorded = self._by_worker.get(worker, {}).get(task)
        if recorded is None:
            raise ConflictError(f"worker {worker!r} never answered task {task!r} in the recording.")
        return recorded


def _sorted(values: list[Hashable]) -> list[Hashable]:
    try:
        return sorted(values)  # type: ignore[type-var]
    except TypeError:  # mixed types: a stable order all the same
        return sorted(values, key=str)


def restrict(answers: pd.DataFrame, tasks: Sequence[Hashable]) -> pd.DataFrame:
    """The answers on ``tasks`` only (for a quick replay on part of a data set)."""
    kept = answers[answers["task"].isin(set(tasks))]
    if kept.empty:
        raise InvalidInputError("none of the chosen tasks has an answer.")
    return kept
