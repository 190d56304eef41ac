"""The in-process driver: a crowd meets a policy, no server in between, for fast experiments.

Workers turn up at random in proportion to the crowd's arrival weights (for a replayed
crowd: how many answers they recorded) and ask for a task, as they do on the platform; the
policy picks one of the open tasks the worker can do and has not done. A worker for whom
nothing is left drops out; when everybody has dropped out, those with tasks left are asked
once more, since a policy may have reopened items meanwhile. The run ends there, or at the
budget.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crowdloop.errors import InvalidInputError, InvalidParameterError
from crowdloop.learning.features import shown
from crowdloop.quality._data import gold_series
from crowdloop.sim.crowds import Crowd
from crowdloop.sim.policies import Policy

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(labels_bought, labels_possible)`` while a run goes on."""


@dataclass
class SimulationResult:
    """What a run bought and what it concluded."""

    policy: str
    answers: pd.DataFrame
    labels: pd.Series
    confidence: pd.Series
    tasks: pd.Index
    control: pd.Index = field(default_factory=lambda: pd.Index([]))
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def summary(self, gold: pd.Series | pd.DataFrame | None = None, price: float = 0.0) -> dict[str, Any]:
        """Labels bought, labels per item, label accuracy against ``gold`` (a Series task -> label, or a
        ``task, label`` frame) and cost. Control tasks are not items to label: they are left out of the
        items and the accuracy, while the answers to them count among the labels bought."""
        bought, items = len(self.answers), self.n_tasks - len(self.control)
        out: dict[str, Any] = {"policy": self.policy, "items": items, "labels_bought": bought,
                               "labels_per_item": bought / max(items, 1), "cost": bought * price}  # fmt: skip
        if len(self.control):
            out["control_items"] = len(self.control)
        out["items_labeled"] = int(self.labels.drop(self.control, errors="ignore").notna().sum())
        if gold is not None:
            out["label_accuracy"] = label_accuracy(self.labels, gold_series(gold), self.tasks.difference(self.control))
        return out | self.extra


def control_sample(gold: pd.Series, share: float, seed: int) -> pd.Series:
    """A random ``share`` of the gold tasks (at least one) as control tasks, drawn from ``seed``: the
    same ones for every policy run on that seed, so their accuracies compare on the same items."""
    count = max(1, round(share * len(gold)))
    picked = np.random.default_rng(10_000 + seed).choice(len(gold), count, replace=False)
    return gold.iloc[np.sort(picked)]


def label_accuracy(labels: pd.Series, gold: pd.Series, tasks: pd.Index | None = None) -> float:
    """Share of the gold items (among ``tasks``) whose label is right; one left without a label is wrong.

    Labels are compared as text, as :func:`crowdloop.learning.evaluate` does: a gold file read with
    string labels and answers read as numbers still match.
    """
    common = gold.index if tasks is None else gold.index.intersection(tasks)
    if common.empty:
        return float("nan")
    found = labels.astype(object).reindex(common).to_numpy(dtype=object)  # no int-to-float on a gap
    truth = gold.loc[common].to_numpy()
    return float(np.mean([a is not None and a == a and str(a) == str(b) for a, b in zip(found, truth, strict=True)]))


class _Board:
    """Per-worker arrays of the tasks they can do and whether they did each; the driver's state."""

    def __init__(self, crowd: Crowd, task_index: dict[Hashable, int]) -> None:
        everything = np.arange(len(task_index))
        self.workers = crowd.workers
        self.tasks: list[np.ndarray] = []
        for worker in self.workers:
            can = crowd.tasks_of(worker)
            codes = everything if can is None else np.array([task_index[t] for t in can if t in task_index], dtype=int)
            self.tasks.append(codes)
        self.done = [np.zeros(len(codes), dtype=bool) for codes in self.tasks]

    def candidates(self, worker: int, open_mask: np.ndarray) -> np.ndarray:
        codes = self.tasks[worker]
        return np.asarray(codes[open_mask[codes] & ~self.done[worker]])

    def mark(self, worker: int, task: int) -> None:
        self.done[worker][np.searchsorted(self.tasks[worker], task)] = True

    def has_left(self, worker: int) -> bool:
        return not bool(self.done[worker].all())


def run_in_process(
    crowd: Crowd,
    policy: Policy,
    *,
    gold: pd.Series | None = None,
    items: pd.DataFrame | None = None,
    budget: int | None = None,
    random_state: int = 0,
    progress: ProgressCallback | None = None,
) -> SimulationResult:
    """Run ``policy`` on ``crowd`` until nothing is open for anyone, or ``budget`` labels are bought.

    ``gold`` holds control tasks' known labels (the policy may use them; a Series or a ``task,
    label`` frame); ``items`` one row per task (indexed by task, or with a ``task`` column, as
    :func:`~crowdloop.datasets.load_dataset` gives them) for policies that read the items; every
    task of the crowd must have one.
    """
    if budget is not None and (budget < 0 or budget != int(budget)):
        raise InvalidParameterError(f"budget must be a whole, non-negative number of labels; got {budget}.")
    tasks, labels = crowd.tasks, crowd.labels
    gold = None if gold is None else gold_series(gold)
    task_index = {task: i for i, task in enumerate(tasks)}
    board = _Board(crowd, task_index)
    for codes in board.tasks:
        codes.sort()
    policy.start(len(tasks), len(labels), gold=_gold_codes(gold, tasks, labels),
                 items=None if items is None else items_by_task(items, tasks), random_state=random_state)  # fmt: skip
    rows = _loop(crowd, policy, board, tasks, labels, budget, random_state, progress)
    control = pd.Index([]) if gold is None else gold.index.intersection(pd.Index(tasks))
    return _result(policy, rows, tasks, labels, control)


def _loop(
    crowd: Crowd,
    policy: Policy,
    board: _Board,
    tasks: list[Hashable],
    labels: list[Hashable],
    budget: int | None,
    random_state: int,
    progress: ProgressCallback | None,
) -> list[tuple[Hashable, Hashable, Hashable, float | None]]:
    rng = np.random.default_rng(random_state + 1)
    label_index = {label: i for i, label in enumerate(labels)}
    weights = crowd.arrival_weights().astype(float)
    active = weights > 0
    possible = int(sum(len(codes) for codes in board.tasks))
    rows: list[tuple[Hashable, Hashable, Hashable, float | None]] = []
    bought_since_wake = 0
    while budget is None or len(rows) < budget:
        if not active.any():
            if bought_since_wake == 0:
                break
            active = np.array([w > 0 and board.has_left(i) for i, w in enumerate(weights)])
            bought_since_wake = 0
            continue
        worker = int(rng.choice(np.flatnonzero(active), p=_normalised(weights[active])))
        task = policy.choose(worker, board.candidates(worker, policy.open_mask()))
        if task is None:
            active[worker] = False
            continue
        given = crowd.answer(board.workers[worker], tasks[task])
        policy.record(task, worker, label_index[given.label])
        board.mark(worker, task)
        rows.append((tasks[task], board.workers[worker], given.label, given.seconds))
        bought_since_wake += 1
        if progress is not None:
            progress(len(rows), possible if budget is None else min(budget, possible))
    return rows


def _normalised(weights: np.ndarray) -> np.ndarray:
    return np.asarray(weights / weights.sum())


def items_by_task(items: pd.DataFrame, tasks: list[Hashable]) -> pd.DataFrame:
    """``items`` in ``tasks``' order, one row each: indexed by task already, or by their ``task``
    column. Items missing a task, or given twice, are an error: matched by position instead, or
    left as empty rows, a model would learn from the wrong texts or from none."""
    if "task" in items.columns:
        items = items.set_index("task")
    if items.index.has_duplicates:
        twice = items.index[items.index.duplicated()].unique()
        raise InvalidInputError(f"{len(twice)} task(s) have more than one item (first: {shown(twice[0])}).")
    missing = pd.Index(tasks).difference(items.index)
    if len(missing):
        raise InvalidInputError(
            f"the items lack {len(missing)} of the answers' {len(tasks)} tasks "
            f"(first: {', '.join(map(str, missing[:5]))})."
        )
    return items.reindex(tasks)


def _gold_codes(gold: pd.Series | None, tasks: list[Hashable], labels: list[Hashable]) -> np.ndarray | None:
    if gold is None or gold.empty:
        return None
    codes = {str(label): i for i, label in enumerate(labels)}  # as text: "1" and 1 are one label
    coded = gold.map(lambda label: codes.get(str(label), -1))  # before reindexing turns ints into floats
    return np.asarray(coded.reindex(tasks, fill_value=-1).to_numpy(), dtype=np.int64)


def _result(
    policy: Policy, rows: list[tuple[Hashable, Hashable, Hashable, float | None]], tasks: list[Hashable],
    labels: list[Hashable], control: pd.Index,
) -> SimulationResult:  # fmt: skip
    answers = pd.DataFrame(rows, columns=["task", "worker", "label", "seconds"])
    posteriors = policy.posteriors()
    answered = ~np.isnan(posteriors).any(axis=1)
    best = np.nanargmax(np.where(answered[:, None], posteriors, 0.0), axis=1)
    index = pd.Index(tasks, name="task")
    label_values = pd.Series([labels[b] if a else None for a, b in zip(answered, best, strict=True)], index=index,
                             name="label", dtype=object)  # fmt: skip
    confidence = pd.Series(np.where(answered, posteriors[np.arange(len(tasks)), best], np.nan), index=index,
                           name="confidence")  # fmt: skip
    return SimulationResult(policy.name, answers, label_values.dropna(), confidence.dropna(), index, control,
                            policy.report())  # fmt: skip
