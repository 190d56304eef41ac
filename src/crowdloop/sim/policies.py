"""Policies: which item a worker gets next, when an item has enough answers, what the labels are.

A policy works on integer codes (tasks ``0..T-1``, classes ``0..K-1``, workers numbered as
they turn up); the drivers translate. Its life cycle, the whole interface a new policy (such
as an active-learning one) implements::

    policy.start(n_tasks, n_classes, gold=..., items=..., random_state=...)
    policy.open_mask()                  # which tasks still want answers
    policy.choose(worker, candidates)   # one of the open tasks the worker can do, or None
    policy.record(task, worker, label)  # an answer was bought
    policy.posteriors()                 # (T, K) final label distribution (NaN rows: no answer)
    policy.report()                     # extra numbers for the summary (e.g. model accuracy)
    policy.project_spec()               # the same policy as platform project settings (HTTP driver)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from crowdloop.errors import InvalidParameterError
from crowdloop.quality import get_aggregator
from crowdloop.quality.crowd_model import ShrunkCrowdModel


class Policy(ABC):
    """Shared book-keeping: the answers bought so far and per-task counts."""

    name: ClassVar[str]

    def start(
        self,
        n_tasks: int,
        n_classes: int,
        *,
        gold: np.ndarray | None = None,
        items: pd.DataFrame | None = None,
        random_state: int = 0,
    ) -> None:
        """Reset for a run over ``n_tasks`` tasks. ``gold[t]`` is a known class (control task) or -1;
        ``items`` (one row per task, in task order) is there for policies that read the items."""
        self.n_tasks, self.n_classes = n_tasks, n_classes
        self.gold = np.full(n_tasks, -1) if gold is None else np.asarray(gold, dtype=np.int64)
        self.items = items
        self.rng = np.random.default_rng(random_state)
        self.counts = np.zeros(n_tasks, dtype=np.int64)
        self._tasks: list[int] = []
        self._workers: list[int] = []
        self._labels: list[int] = []

    def record(self, task: int, worker: int, label: int) -> None:
        """Take note of one bought answer."""
        self._tasks.append(task)
        self._workers.append(worker)
        self._labels.append(label)
        self.counts[task] += 1

    def answers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The answers bought so far as (tasks, workers, labels) code arrays."""
        return (np.asarray(self._tasks, dtype=np.int64), np.asarray(self._workers, dtype=np.int64),
                np.asarray(self._labels, dtype=np.int64))  # fmt: skip

    def choose(self, worker: int, candidates: np.ndarray) -> int | None:
        """The candidate with the fewest answers (ties at random): everyone's item moves up together."""
        if candidates.size == 0:
            return None
        order = np.lexsort((self.rng.random(candidates.size), self.counts[candidates]))
        return int(candidates[order[0]])

    @abstractmethod
    def open_mask(self) -> np.ndarray:
        """Boolean per task: does it still want answers?"""

    @abstractmethod
    def posteriors(self) -> np.ndarray:
        """Final (T, K) label distribution; rows of tasks without answers are NaN."""

    def report(self) -> dict[str, Any]:
        """Numbers beyond labels and cost that the policy computes (none by default)."""
        return {}

    @abstractmethod
    def project_spec(self) -> dict[str, Any]:
        """Project settings that make the platform run this policy (``min_overlap`` and so on)."""


@dataclass
class FixedOverlap(Policy):
    """Every item gets exactly ``overlap`` answers; labels by ``aggregator`` over all of them."""

    overlap: int = 5
    aggregator: str = "majority_vote"
    name: ClassVar[str] = "fixed"

    def __post_init__(self) -> None:
        if self.overlap < 1:
            raise InvalidParameterError(f"overlap must be at least 1; got {self.overlap}.")
        get_aggregator(self.aggregator)  # an unknown name fails now, not after the run

    def open_mask(self) -> np.ndarray:
        return np.asarray(self.counts < self.overlap)

    def posteriors(self) -> np.ndarray:
        return aggregate_posteriors(self.answers(), self.n_tasks, self.n_classes, self.aggregator, self.gold)

    def project_spec(self) -> dict[str, Any]:
        return {"min_overlap": self.overlap, "max_overlap": self.overlap, "confidence_target": 1.0,
                "aggregation_method": self.aggregator}  # fmt: skip


@dataclass
class DynamicOverlap(Policy):
    """Answers stop once an item's posterior reaches ``confidence_target``; see :mod:`crowdloop.quality.crowd_model`.

    The posterior uses every worker's confusion matrix as estimated from *all* the answers
    bought so far (and gold), refitted whenever the answers have grown by ``refit_share``
    (at least ``refit_every``). A refit can reopen an item that was closed on the word of a
    worker who has since turned out to be unreliable. Items are handed out most answers first
    (``order="depth"``: finish what was started; ``"breadth"``: fewest first), then least
    confident. Final labels are the last refit's posteriors.

    Workers whose estimated accuracy falls below the crowd's ``exclude_quantile`` (weighted by
    answers) are offered no more work, except items that no trusted worker can take (see
    :meth:`_orphans`). In a dense crowd, where each worker can do most items, work goes to a
    ``pool`` of trusted workers at a time (see :meth:`_admitted`); a sparse crowd is not held back.
    On ``bluebird`` (39 workers who each did all 108 items) the pool took the labels per item
    needed to match fixed-5 majority vote from 2.57 to 1.97, and Dawid-Skene from 3.37 to 2.40
    (``benchmarks/label_efficiency.py``, 75 replay orders, when the pool was added; the results
    file has today's numbers); the sparse crowds are unchanged.

    With ``qualification`` set, each worker's first tasks are that many control tasks (the
    ``gold`` given to :meth:`start`) they can do: a qualification test, as on the platform
    (project rule ``qualification_gold``). Agreement alone rates workers badly where they share
    mistakes (on ``dog`` the busiest workers were rated 0.90 against 0.78 true), so who is held
    back is decided by answers that may all be wrong together; a few gold answers per worker,
    before any label rests on them, are evidence that is not. Control tasks are asked in the
    test only, and every answer to them counts in the labels bought.

    The platform runs the same crowd model, posteriors, refits and exclusion (the project rule
    ``hold_back_quantile``; see :mod:`crowdloop.crowd.stop_rule`), but neither the pool nor the
    depth-first order: in a live crowd every worker can take every item, and its queue order
    belongs to active learning. ``benchmarks/stop_rule_parity.py`` compares the two.
    """

    confidence_target: float = 0.95
    min_overlap: int = 1
    max_overlap: int = 10
    refit_share: float = 0.1
    refit_every: int = 20
    prior_accuracy: float = 0.7
    order: str = "depth"
    exclude_below: float | None = 0.3
    exclude_quantile: float | None = 0.5
    min_evidence: float = 4.0
    pool: int | None = 12
    qualification: int = 0
    name: ClassVar[str] = "dynamic"

    def __post_init__(self) -> None:
        if not 0.5 < self.confidence_target <= 1.0:
            raise InvalidParameterError(f"confidence_target must be in (0.5, 1]; got {self.confidence_target}.")
        if not 1 <= self.min_overlap <= self.max_overlap:
            raise InvalidParameterError(
                f"need 1 <= min_overlap <= max_overlap; got {self.min_overlap} and {self.max_overlap}."
            )
        if self.exclude_quantile is not None and not 0.0 <= self.exclude_quantile < 1.0:
            raise InvalidParameterError(f"exclude_quantile must be in [0, 1); got {self.exclude_quantile}.")
        if self.pool is not None and self.pool < 1:
            raise InvalidParameterError(f"pool must be at least 1 (or None: no pool); got {self.pool}.")
        if self.qualification < 0:
            raise InvalidParameterError(f"qualification must be 0 or more control tasks; got {self.qualification}.")

    def start(self, n_tasks: int, n_classes: int, **kwargs: Any) -> None:
        super().start(n_tasks, n_classes, **kwargs)
        self.model = ShrunkCrowdModel(n_classes, prior_accuracy=self.prior_accuracy)
        self.scores = np.tile(self.model.log_prior_, (n_tasks, 1))
        self._fitted_at = 0
        self._offered: dict[int, np.ndarray] = {}
        self._answered: dict[int, np.ndarray] = {}
        self._held_back = np.zeros(0, dtype=bool)
        self._members: set[int] = set()
        self._reach: dict[int, float] = {}
        self._tested: dict[int, int] = {}  # control tasks each worker was given in their test
        self._control = self.gold >= 0

    def record(self, task: int, worker: int, label: int) -> None:
        super().record(task, worker, label)
        self._answered.setdefault(worker, np.zeros(self.n_tasks, dtype=bool))[task] = True  # see _orphans
        self.scores[task] += self.model.worker_log_confusion(worker)[:, label]
        if len(self._tasks) - self._fitted_at >= max(self.refit_every, self.refit_share * self._fitted_at):
            self.refit()

    def refit(self) -> None:
        """Re-estimate every worker and every item's posterior from all answers bought so far."""
        tasks, workers, labels = self.answers()
        self.model.fit(tasks, workers, labels, self.n_tasks, self.gold)
        self.scores = self.model.log_scores(tasks, workers, labels, self.n_tasks)
        self._fitted_at = len(tasks)
        bar = self.model.skill_bar(self.exclude_quantile, self.min_evidence)
        self._held_back = self.model.held_back(bar, self.exclude_below, self.min_evidence)

    def confidence(self) -> np.ndarray:
        """Each task's current posterior of its leading label (gold tasks: 1)."""
        shifted = np.exp(self.scores - self.scores.max(axis=1, keepdims=True))
        best = 1.0 / shifted.sum(axis=1)
        return np.where(self.gold >= 0, 1.0, best)

    def open_mask(self) -> np.ndarray:
        if self.qualification:  # control tasks stay open for the tests of workers still to come
            return self._wanting() | self._control
        return self._wanting()

    def _wanting(self) -> np.ndarray:
        """The tasks that still want answers to settle their label."""
        wanting = (self.counts < self.min_overlap) | (self.confidence() < self.confidence_target)
        return np.asarray(wanting & (self.counts < self.max_overlap))

    def choose(self, worker: int, candidates: np.ndarray) -> int | None:
        if self.qualification:
            control = candidates[self._control[candidates]]
            candidates = candidates[~self._control[candidates]]
            tested = self._tested.get(worker, 0)
            if control.size and tested < self.qualification and self._given_work(worker, candidates):
                self._tested[worker] = tested + 1
                return int(control[self.rng.integers(control.size)])
        if candidates.size == 0:
            return None
        if self.excluded(worker) or not self._admitted(worker, candidates):
            candidates = self._orphans(candidates)
            if candidates.size == 0:
                return None
        else:
            self._offered.setdefault(worker, np.zeros(self.n_tasks, dtype=bool))[candidates] = True
        confidence = self.confidence()[candidates]
        counts = -self.counts[candidates] if self.order == "depth" else self.counts[candidates]
        order = np.lexsort((self.rng.random(candidates.size), confidence, counts))
        return int(candidates[order[0]])

    def _given_work(self, worker: int, candidates: np.ndarray) -> bool:
        """Whether ``worker`` would be given one of ``candidates``: a test is bought only for them."""
        return bool(candidates.size) and not self.excluded(worker) and self._admitted(worker, candidates)

    def _admitted(self, worker: int, candidates: np.ndarray) -> bool:
        """Whether ``worker`` is (or now becomes) one of the pool of trusted workers given work.

        The pool holds as many unexcluded workers as it takes for each item to be within reach
        of about ``pool`` of them: a worker's reach is the share of the open items they could
        take when first seen. Where each worker did a few of many items (a sparse crowd) that
        admits everybody; where every worker can do every item (a dense crowd) it keeps the
        work on a few, so each of them is judged on many shared items early, and a place
        frees up whenever one of them is excluded.
        """
        if self.pool is None or worker in self._members:
            return True
        if worker not in self._reach:  # once: open_mask() scores every task
            self._reach[worker] = candidates.size / max(int(self._wanting().sum()), 1)
        capacity = np.ceil(self.pool / max(float(np.mean(list(self._reach.values()))), 1e-3))
        if sum(not self.excluded(member) for member in self._members) < capacity:
            self._members.add(worker)
            return True
        return False

    def _orphans(self, candidates: np.ndarray) -> np.ndarray:
        """The candidates no trusted worker was ever offered, and those short of ``min_overlap``
        answers that no trusted worker can still take (all who were offered it have answered it):
        an excluded worker's answers are better than none, since such an item would otherwise
        stay on too few answers, or below ``min_overlap``, for good. An item a trusted worker has
        answered otherwise waits for trusted workers, as on the platform's live crowd, where any
        trusted worker can take any item."""
        offered_ever = np.zeros(self.n_tasks, dtype=bool)
        takeable = np.zeros(self.n_tasks, dtype=bool)
        for other, offered in self._offered.items():
            if not self.excluded(other):
                offered_ever |= offered
                answered = self._answered.get(other)
                takeable |= offered if answered is None else offered & ~answered
        short = self.counts[candidates] < self.min_overlap
        orphan = ~offered_ever[candidates] | (short & ~takeable[candidates])
        return np.asarray(candidates[orphan])

    def excluded(self, worker: int) -> bool:
        """Whether to stop offering work to ``worker`` (as of the last refit): see
        :meth:`~crowdloop.quality.crowd_model.ShrunkCrowdModel.held_back`."""
        return worker < len(self._held_back) and bool(self._held_back[worker])

    def posteriors(self) -> np.ndarray:
        if self._fitted_at != len(self._tasks):
            self.refit()
        shifted = np.exp(self.scores - self.scores.max(axis=1, keepdims=True))
        posteriors = shifted / shifted.sum(axis=1, keepdims=True)
        known = np.flatnonzero(self.gold >= 0)
        posteriors[known] = 0.0
        posteriors[known, self.gold[known]] = 1.0  # control tasks keep their known label
        posteriors[self.counts == 0] = np.nan
        return np.asarray(posteriors)

    def project_spec(self) -> dict[str, Any]:
        rules: dict[str, Any] = {"hold_back_quantile": self.exclude_quantile}
        if self.qualification:
            rules["qualification_gold"] = self.qualification
        return {"min_overlap": self.min_overlap, "max_overlap": self.max_overlap,
                "confidence_target": self.confidence_target, "rules": rules}  # fmt: skip


def aggregate_posteriors(
    answers: tuple[np.ndarray, np.ndarray, np.ndarray], n_tasks: int, n_classes: int, method: str, gold: np.ndarray
) -> np.ndarray:
    """(T, K) posteriors of a :mod:`crowdloop.quality` aggregator over coded answers (NaN: no answer)."""
    tasks, workers, labels = answers
    result = np.full((n_tasks, n_classes), np.nan)
    if tasks.size == 0:
        return result
    frame = pd.DataFrame({"task": tasks, "worker": workers, "label": labels})
    known = pd.Series(gold, index=range(n_tasks))
    known = known[(known >= 0) & known.index.isin(np.unique(tasks))]
    model = get_aggregator(method)
    model.fit(frame, gold=known) if len(known) else model.fit(frame)
    probas = model.probas_.reindex(columns=range(n_classes), fill_value=0.0)
    result[probas.index.to_numpy(dtype=np.int64)] = probas.to_numpy()
    return result


from crowdloop.sim.active import ActiveLearning  # noqa: E402 - it subclasses Policy, defined above

POLICIES: dict[str, type[Policy]] = {"fixed": FixedOverlap, "dynamic": DynamicOverlap, "active": ActiveLearning}
"""Policies by the name ``crowdloop simulate --policy`` takes."""
