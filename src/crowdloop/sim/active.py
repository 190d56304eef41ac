"""Active learning as a policy: a model, retrained as labels arrive, decides what the crowd labels next.

Every ``retrain_every`` labels the policy aggregates all answers bought so far into soft
labels (a :mod:`crowdloop.quality` aggregator; optionally with the previous model as one
more worker, :func:`crowdloop.learning.model_as_worker`, whose answers on the items it
learned from are out-of-fold predictions, so that it is not judged by echoing its own
training labels), trains a model on the items that
have any (:func:`crowdloop.learning.fit_model`), predicts every item, and turns the
predictions into priorities with :func:`crowdloop.learning.select`. With ``targets="crowd"``
the model learns from the answers themselves instead
(:class:`~crowdloop.learning.crowd_model.CrowdModel`, the aggregator as its start). Until the first model
exists (fewer than two classes seen), items are taken at random.

How priorities become offers, given that a worker can only be offered items they can do
(in a replay: the ones they really answered):

* ``random``, ``least_confidence``, ``margin``, ``entropy`` rank an item by its model
  uncertainty alone, which says nothing about how many answers it already has, so the
  worker gets the candidate with the fewest answers, the most informative among those:
  one answer per item until the worker has no new item, then a second, and so on;
* ``activelab`` scores an item's *next* answer, whether it is a first one or another one
  on an item whose answers disagree or come from weak workers, so the worker simply gets
  the best-scored candidate: the strategy itself decides between a new item and one more
  answer.

In both cases an item answered since the last retrain goes behind the untouched ones, so
one batch spreads over ``retrain_every`` different items as :func:`select`'s batch does.

:meth:`ActiveLearning.report` gives the final model's accuracy against ``evaluation``
(true labels, never used for training or selection) on every item that has one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from crowdloop.errors import InvalidInputError, InvalidParameterError
from crowdloop.learning import STRATEGIES, FeatureSpec, Featurizer, TrainedModel, fit_model, model_as_worker, select
from crowdloop.learning.crowd_model import CrowdModel
from crowdloop.learning.models import check_family
from crowdloop.learning.train import full_probas, out_of_fold_probas
from crowdloop.quality import get_aggregator
from crowdloop.sim.policies import Policy, aggregate_posteriors

RetrainCallback = Callable[[int, TrainedModel], None]
"""Called as ``on_retrain(labels_bought, model)`` after every retrain (e.g. for learning curves)."""

ID_COLUMN = "task"
"""The id column of the policy's item frame; it holds task codes ``0..T-1``."""

MODEL_WORKER = "model:active"
"""The model's worker name when it takes part in aggregation (``model_worker=True``)."""


@dataclass
class ActiveLearning(Policy):
    """Buy labels where a model trained on the labels so far is least sure; see the module doc.

    ``max_overlap`` bounds the answers one item can get; ``diversity`` > 0 spreads each
    batch over dissimilar items (maximal marginal relevance on the item features);
    ``evaluation`` (task -> true label, with the crowd's label set ``classes``) is only
    used by :meth:`report`. The default strategy is the one that matched random selection's
    full-budget accuracy soonest on `product` (``benchmarks/results/active_learning.md``).
    A fitted ``featurizer`` (id column ``task``) saves refitting one per run when many runs
    share the items; otherwise one is fitted on the items.
    """

    strategy: str = "activelab"
    retrain_every: int = 200
    max_overlap: int = 3
    family: str = "logreg"
    params: dict[str, Any] | None = None
    aggregator: str = "dawid_skene"
    targets: str = "labels"
    model_worker: bool = False
    diversity: float = 0.0
    featurizer_params: dict[str, Any] | None = None
    featurizer: Featurizer | None = field(default=None, repr=False)
    evaluation: pd.Series | None = field(default=None, repr=False)
    classes: Sequence[Hashable] | None = None
    on_retrain: RetrainCallback | None = field(default=None, repr=False)
    name: ClassVar[str] = "active"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InvalidParameterError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}.")
        if self.retrain_every < 1 or self.max_overlap < 1 or self.diversity < 0:
            raise InvalidParameterError(
                "need retrain_every >= 1, max_overlap >= 1 and diversity >= 0; "
                f"got {self.retrain_every}, {self.max_overlap} and {self.diversity}."
            )
        if self.evaluation is not None and self.classes is None:
            raise InvalidParameterError("evaluation labels need classes: the crowd's label set, in code order.")
        check_family(self.family)
        get_aggregator(self.aggregator)  # an unknown name fails now, not after the run
        if self.targets not in ("labels", "crowd"):
            raise InvalidParameterError(f"targets must be labels or crowd; got {self.targets!r}.")

    def start(self, n_tasks: int, n_classes: int, **kwargs: Any) -> None:
        super().start(n_tasks, n_classes, **kwargs)
        if self.items is None:
            raise InvalidInputError("the active policy needs the items' fields to learn from (--items).")
        self.frame = item_frame(self.items)
        self.run_featurizer = self.featurizer or self._fit_featurizer()
        self.features = self.run_featurizer.transform(self.frame)
        self.model: TrainedModel | None = None
        self.probas: np.ndarray | None = None
        self.worker_probas: np.ndarray | None = None
        self._learned: tuple[np.ndarray, np.ndarray] = (np.zeros(0, dtype=np.int64), np.zeros((0, n_classes)))
        self.priority = self.rng.random(n_tasks)
        self.touched = np.zeros(n_tasks, dtype=bool)
        self.retrains = 0
        self._trained_at = 0
        self._seed = int(self.rng.integers(2**31))

    def _fit_featurizer(self) -> Featurizer:
        spec = FeatureSpec.infer(self.frame, id_column=ID_COLUMN)
        return Featurizer(spec, **(self.featurizer_params or {})).fit(self.frame)

    def open_mask(self) -> np.ndarray:
        return np.asarray(self.counts < self.max_overlap)

    def choose(self, worker: int, candidates: np.ndarray) -> int | None:
        if candidates.size == 0:
            return None
        keys: list[np.ndarray] = [-self.priority[candidates], self.touched[candidates]]
        if self.strategy != "activelab":
            keys.append(self.counts[candidates])
        return int(candidates[np.lexsort(keys)[0]])

    def record(self, task: int, worker: int, label: int) -> None:
        super().record(task, worker, label)
        self.touched[task] = True
        if len(self._tasks) - self._trained_at >= self.retrain_every:
            self.retrain()

    def soft_labels(self) -> np.ndarray:
        """(T, K) aggregated posteriors of the answers so far (NaN rows: no answer yet)."""
        tasks, workers, labels = self.answers()
        if self.model_worker and self.worker_probas is not None and tasks.size:
            answered = np.unique(tasks)
            probas = pd.DataFrame(self.worker_probas[answered], index=answered, columns=range(self.n_classes))
            crowd = pd.DataFrame({"task": tasks, "worker": workers, "label": labels})
            joined = model_as_worker(probas, name=MODEL_WORKER, answers=crowd)
            tasks, labels = joined["task"].to_numpy(np.int64), joined["label"].to_numpy(np.int64)
            workers = pd.factorize(joined["worker"].astype(str))[0].astype(np.int64)
        return aggregate_posteriors((tasks, workers, labels), self.n_tasks, self.n_classes, self.aggregator,
                                    self.gold)  # fmt: skip

    def retrain(self) -> None:
        """Fit the model on the current soft labels, predict every item, and re-rank the items."""
        self._trained_at = len(self._tasks)
        posteriors = self.soft_labels()
        rows = np.flatnonzero(~np.isnan(posteriors).any(axis=1))
        if np.unique(posteriors[rows].argmax(axis=1)).size < 2:
            return  # one class so far: nothing to learn yet, keep taking items at random
        targets = pd.DataFrame(posteriors[rows], index=rows, columns=range(self.n_classes))
        self.model = self._crowd_model() if self.targets == "crowd" else None
        if self.model is None:
            self.model = fit_model(self.run_featurizer, self.features[rows], targets, self.family, self.params,
                                   self._seed)  # fmt: skip
        self.probas = full_probas(self.model.estimator, self.features, self.n_classes)
        self._learned = rows, posteriors[rows]
        if self.model_worker:
            self.worker_probas = self.held_out_probas()
        self.priority = self._priorities()
        self.touched[:] = False
        self.retrains += 1
        if self.on_retrain is not None:
            self.on_retrain(len(self._tasks), self.model)

    def held_out_probas(self) -> np.ndarray | None:
        """Every item's probabilities from a model that did not learn from it: out of fold on the
        items the current model was trained on, its own predictions elsewhere. What the model
        answers as a worker and what its accuracy is measured on; None while some fold cannot be
        trained (a class seen on one item only) or before the first model."""
        if self.probas is None:
            return None
        rows, targets = self._learned
        try:
            held_out = out_of_fold_probas(self.features[rows], targets, self.family, self.params, 3, self._seed)
        except InvalidInputError:
            return None
        probas = self.probas.copy()
        probas[rows] = held_out
        return probas

    def _crowd_model(self) -> TrainedModel | None:
        """The classifier learned with the workers' confusion matrices from the answers so far;
        ``None`` while some class has no answer yet (its codes would not line up)."""
        tasks, workers, labels = self.answers()
        if np.unique(labels).size < self.n_classes:
            return None
        crowd = CrowdModel(family=self.family, params=self.params, init=self.aggregator, random_state=self._seed)
        answers = pd.DataFrame({"task": tasks, "worker": workers, "label": labels})
        return crowd.fit_features(self.run_featurizer, self.features, np.arange(self.n_tasks), answers).model_

    def _priorities(self) -> np.ndarray:
        assert self.probas is not None
        tasks, workers, labels = self.answers()
        probas = pd.DataFrame(self.probas, columns=range(self.n_classes))
        answers = pd.DataFrame({"task": tasks, "worker": workers, "label": labels})
        ranked = select(self.strategy, probas, answers, batch_size=self.retrain_every,
                        random_state=self._seed + self.retrains, diversity=self.diversity,
                        features=self.features if self.diversity > 0 else None)  # fmt: skip
        return np.asarray(ranked.reindex(range(self.n_tasks)).to_numpy(dtype=np.float64))

    def posteriors(self) -> np.ndarray:
        return self.soft_labels()

    def report(self) -> dict[str, Any]:
        """The final model (retrained on every label bought) and its accuracy against ``evaluation``."""
        if self._trained_at != len(self._tasks):
            self.retrain()
        out: dict[str, Any] = {"model_retrains": self.retrains}
        if self.evaluation is not None and self.classes is not None:
            out |= self.model_accuracy(self.evaluation, self.classes)
        return out

    def model_accuracy(self, truth: pd.Series, classes: Sequence[Hashable]) -> dict[str, Any]:
        """Share of the items with a true label (``truth``: task -> label) the model gets right, each
        judged by a model that did not learn from it (:meth:`held_out_probas`): on the items it was
        trained on its own predictions echo the crowd's labels (on rte, margin sampling with 5,000
        labels and max_overlap 10: 0.92 so, 0.56 out of fold)."""
        assert self.items is not None
        codes = {str(label): i for i, label in enumerate(classes)}  # as text: "1" and 1 are one label
        wanted = truth.reindex(self.items.index)
        known = np.flatnonzero(wanted.notna().to_numpy())
        if known.size == 0:
            return {}
        probas = self.held_out_probas()
        if probas is None:
            return {"model_accuracy": float("nan"), "model_items_evaluated": int(known.size)}
        expected = np.array([codes.get(str(v), -1) for v in wanted.iloc[known]])
        right = probas[known].argmax(axis=1) == expected
        return {"model_accuracy": float(right.mean()), "model_items_evaluated": int(known.size)}

    def project_spec(self) -> dict[str, Any]:
        """The overlap bounds only: the platform's assignment engine, not this model, would pick items
        (which is why ``crowdloop simulate`` runs this policy in-process only)."""
        return {"min_overlap": 1, "max_overlap": self.max_overlap, "confidence_target": 1.0,
                "aggregation_method": self.aggregator}  # fmt: skip


def item_frame(items: pd.DataFrame) -> pd.DataFrame:
    """The items in task order with an id column of task codes, missing text as empty strings."""
    frame = items.reset_index(drop=True).drop(columns=[ID_COLUMN], errors="ignore")
    frame = frame.apply(lambda col: col.fillna("") if col.dtype == object else col)
    frame.insert(0, ID_COLUMN, np.arange(len(frame)))
    return pd.DataFrame(frame)
