"""Base classes shared by every aggregator: the scikit-learn contract, once.

An aggregator stores hyper-parameters in ``__init__``, checks them at ``fit``,
learns from a long ``task, worker, label`` frame and exposes fitted attributes
ending in ``_``. Reading one before ``fit`` raises :class:`NotFittedError`.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from crowdloop.errors import NotFittedError
from crowdloop.quality._data import EncodedAnswers, EncodedGold, encode_answers, encode_gold
from crowdloop.quality._kernels import Progress
from crowdloop.quality._memory import Footprint, Sizes, check_memory
from crowdloop.quality._params import Interval, validate_params

_MEMORY_CONSTRAINT = {"max_memory_mb": Interval(float, 0, None, "neither")}


class BaseAggregator(ABC):
    """Parameter handling and the not-fitted guard shared by all aggregators."""

    _parameter_constraints: ClassVar[dict[str, Any]] = {}

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values() if p.name != "self"]

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to ``__init__``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Change hyper-parameters; unknown names are an error."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                validate_params(type(self).__name__, {name: value}, {})
                raise TypeError(f"{type(self).__name__} has no parameter {name!r}")
            setattr(self, name, value)
        return self

    @abstractmethod
    def fit(self, answers: pd.DataFrame, gold: Any = None, *, progress: Progress | None = None) -> Self:
        """Learn from a long ``task, worker, label`` frame; return ``self``."""

    def clone(self) -> Self:
        """A new, unfitted aggregator with the same hyper-parameters."""
        return type(self)(**self.get_params())

    def _validate_params(self) -> None:
        validate_params(type(self).__name__, self.get_params(), self._parameter_constraints)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: a fitted attribute before fit.
        if name.endswith("_") and not name.startswith("__"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(answers) before reading {name}.")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class BaseClassificationAggregator(BaseAggregator):
    """Aggregators of categorical answers.

    Fitted attributes: ``labels_`` (Series task -> label), ``probas_`` (DataFrame
    task x class, rows sum to 1), ``classes_``; subclasses add ``skills_``,
    ``errors_`` and ``n_iter_`` where their model has them.

    Ties (equal posteriors) go to the first label in sorted order, as in
    Crowd-Kit, so results never depend on a seed unless the model itself is
    random (``random_state``).

    Repeated answers of one worker on one task are all kept: each counts as one
    more piece of evidence (the Crowd-Kit convention). Drop them first
    (``answers.drop_duplicates(["task", "worker"], keep="last")``) to keep only
    the latest.
    """

    _footprint: ClassVar[Footprint] = Footprint(task_classes=4, per_answer=80)
    """What the fit's peak memory is made of (see :meth:`estimate_memory`); each method sets its own."""

    def fit(
        self,
        answers: pd.DataFrame,
        gold: Any = None,
        *,
        progress: Progress | None = None,
        max_memory_mb: float | None = None,
    ) -> Self:
        """Learn from ``answers`` (columns task, worker, label); return ``self``.

        ``gold`` (a Series task -> label, or a frame with task and label) gives
        known labels: their posteriors are clamped to the known class, which
        also sharpens every worker's estimated reliability.

        A fit whose estimated peak memory (:meth:`estimate_memory`) is over
        ``max_memory_mb`` (default: 80% of the memory available when it starts;
        ``float("inf")``: no limit) is refused with :class:`MemoryLimitError`
        once the answers are encoded, before anything of that size is allocated.
        """
        self._validate_params()
        if max_memory_mb is not None:
            validate_params(type(self).__name__, {"max_memory_mb": max_memory_mb}, _MEMORY_CONSTRAINT)
        data = encode_answers(answers)
        check_memory(self, Sizes(data.n_answers, data.n_tasks, data.n_workers, data.n_classes), max_memory_mb)
        known = encode_gold(gold, data)
        probas = self._fit(data, known, progress)
        self._set_outputs(data, probas)
        return self

    def estimate_memory(self, n_answers: int, n_tasks: int, n_workers: int, n_classes: int) -> int:
        """Bytes this method's fit takes at its peak on answers of these sizes, beyond the answers
        frame itself (measured, rounded up: at or a little above the real peak)."""
        return self._footprint.bytes(Sizes(n_answers, n_tasks, n_workers, n_classes))

    def fit_predict(self, answers: pd.DataFrame, gold: Any = None) -> pd.Series:
        """``fit`` then return ``labels_``."""
        return self.fit(answers, gold).labels_

    def fit_predict_proba(self, answers: pd.DataFrame, gold: Any = None) -> pd.DataFrame:
        """``fit`` then return ``probas_``."""
        return self.fit(answers, gold).probas_

    @abstractmethod
    def _fit(self, data: EncodedAnswers, gold: EncodedGold, progress: Progress | None) -> np.ndarray:
        """Return posteriors ``(n_tasks, n_classes)``; set model-specific attributes."""

    def _set_outputs(self, data: EncodedAnswers, probas: np.ndarray) -> None:
        tasks = data.tasks.rename("task")
        classes = data.classes.rename("label")
        self.classes_ = classes
        self.probas_ = pd.DataFrame(probas, index=tasks, columns=classes)
        chosen = np.argmax(probas, axis=1)
        self.labels_ = pd.Series(classes.to_numpy()[chosen], index=tasks, name="label")
