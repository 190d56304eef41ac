"""Fit an aggregator on partitioned answers, whatever engine holds the partitions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import numpy as np
import pandas as pd

from crowdloop.errors import InvalidParameterError
from crowdloop.quality._kernels import Progress
from crowdloop.quality.base import BaseClassificationAggregator
from crowdloop.quality.dawid_skene import DawidSkene, OneCoinDawidSkene
from crowdloop.quality.default import DefaultAggregator
from crowdloop.quality.mace import MACE
from crowdloop.quality.majority_vote import MajorityVote
from crowdloop.quality.shrunk_dawid_skene import ShrunkDawidSkene
from crowdloop.scale._em import ShardedFit, fit_dawid_skene, fit_majority_vote, fit_one_coin
from crowdloop.scale._mace import fit_default, fit_mace
from crowdloop.scale._shards import ShardEngine

SCALABLE = (MajorityVote, DawidSkene, OneCoinDawidSkene, ShrunkDawidSkene, MACE, DefaultAggregator)
"""Aggregators that run on partitions (others need all answers of a worker at once, or are numeric)."""


def fit_sharded(
    estimator: BaseClassificationAggregator, engine: ShardEngine, progress: Progress | None = None
) -> ShardedFit:
    """Fit ``estimator`` (its hyper-parameters, validated as in ``fit``) on ``engine``'s partitions."""
    check_scalable(estimator)
    if isinstance(estimator, MajorityVote):
        return fit_majority_vote(estimator, engine)
    if isinstance(estimator, OneCoinDawidSkene):
        return fit_one_coin(estimator, engine, progress)
    if isinstance(estimator, DawidSkene):
        return fit_dawid_skene(estimator, engine, progress)
    if isinstance(estimator, MACE):
        return fit_mace(estimator, engine, progress)
    return fit_default(cast(DefaultAggregator, estimator), engine, progress)  # the last of SCALABLE


def check_scalable(estimator: BaseClassificationAggregator) -> None:
    """Refuse an aggregator the partitioned engines cannot fit, or bad hyper-parameters.

    Cheap, so callers run it before they read or partition any answer: a method that does
    not run on partitions used to fail only after the whole file had been encoded.
    """
    if type(estimator) not in SCALABLE:
        names = ", ".join(cls.__name__ for cls in SCALABLE)
        raise InvalidParameterError(f"{type(estimator).__name__} does not run on partitions; use one of {names}.")
    estimator._validate_params()


def label_table(tasks: np.ndarray, posteriors: np.ndarray, classes: pd.Index) -> pd.DataFrame:
    """``task, label, confidence`` as the local engine writes them (ties to the first class)."""
    chosen = np.argmax(posteriors, axis=1)
    confidence = posteriors[np.arange(len(posteriors)), chosen]
    return pd.DataFrame({"task": tasks, "label": classes.to_numpy()[chosen], "confidence": confidence})


def probas_frames(fit: ShardedFit, engine: ShardEngine) -> Iterator[pd.DataFrame]:
    """Posteriors partition by partition (task index, one column per class), for in-process engines."""
    posteriors = getattr(engine, "posteriors", None)
    if posteriors is None:
        raise InvalidParameterError(f"{type(engine).__name__} keeps its posteriors distributed; use its own output.")
    for tasks, probas in posteriors(fit.posterior_fn, fit.params):
        yield pd.DataFrame(probas, index=pd.Index(tasks, name="task"), columns=engine.classes.rename("label"))
