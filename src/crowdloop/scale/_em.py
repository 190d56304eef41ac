"""Majority vote and the Dawid-Skene family as map-reduce passes over partitions.

Each EM iteration is one pass: a partition runs the local engine's E-step with the
broadcast parameters (``confusion_log_scores`` / ``one_coin_log_scores`` and a
softmax), then the M-step's *partial* expected counts from those posteriors
(``confusion_counts`` or the per-worker sum of :math:`p(z_t = l_{tw})`). Sums of
partial counts are exactly the local engine's counts, so the driver's update
(normalise, smooth, shrink) is the local one and results agree to rounding.

Sequence per iteration ``i``: pass with :math:`\\theta_i` gives the log-likelihood
of :math:`\\theta_i` (the convergence test, as in ``_kernels.iterate``) and the
counts that make :math:`\\theta_{i+1}`; at convergence :math:`\\theta_i` is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crowdloop.quality._data import EncodedAnswers
from crowdloop.quality._kernels import (
    Progress,
    confusion_counts,
    confusion_log_scores,
    iterate,
    log_confusion,
    log_prior_from,
    normalize_rows,
    one_coin_log_scores,
    one_hot,
    posteriors_from_log,
    vote_counts,
)
from crowdloop.quality.base import BaseClassificationAggregator
from crowdloop.quality.dawid_skene import DawidSkene, OneCoinDawidSkene
from crowdloop.quality.majority_vote import MajorityVote
from crowdloop.quality.shrunk_dawid_skene import ShrunkDawidSkene, add_know_or_habit, know_or_habit_params
from crowdloop.scale._shards import PosteriorFn, ShardEngine, ShardFn, Stats


@dataclass
class ShardedFit:
    """A fit on partitions: the estimator holds the worker side, ``posterior_fn`` the task side.

    ``estimator`` carries ``skills_`` (and ``errors_``, ``priors_`` where the model
    has them) and ``n_iter_``; the per-task posteriors stay with the engine and are
    produced partition by partition with ``posterior_fn(partition, params)``.
    """

    estimator: BaseClassificationAggregator
    posterior_fn: PosteriorFn
    params: Any


def names_only(engine: ShardEngine) -> EncodedAnswers:
    """No answers, the engine's worker and class names: enough for the estimators' worker tables."""
    empty = np.empty(0, dtype=np.int64)
    return EncodedAnswers(empty, empty, empty, pd.Index([]), engine.workers, engine.classes)


def run_em(
    engine: ShardEngine,
    pass_fn: ShardFn,
    update: Callable[[Stats], Any],
    n_iter: int,
    tol: float,
    progress: Progress | None,
) -> tuple[Any, int]:
    """Start from the majority vote, then one pass per EM iteration; return the kept parameters."""
    current = [update(engine.map_sum(pass_fn, None))]
    pending: list[Any] = []

    def step() -> float:
        if pending:
            current[0] = pending.pop()
        stats = engine.map_sum(pass_fn, current[0])
        pending.append(update(stats))
        return float(stats[-1][0]) / engine.n_answers

    done = iterate(step, n_iter, tol, progress)
    return current[0], done


# --- partition functions (top level: Spark pickles them) -------------------------------------------


def vote_posteriors(data: EncodedAnswers, _: Any) -> np.ndarray:
    """Vote shares per task."""
    return normalize_rows(vote_counts(data))


def vote_agreement(data: EncodedAnswers, _: Any) -> Stats:
    """Per worker: answers matching the vote's label, and answers."""
    chosen = one_hot(np.argmax(vote_posteriors(data, None), axis=1), data.n_classes)
    hits = np.bincount(data.worker, weights=chosen[data.task, data.label], minlength=data.n_workers)
    return hits, data.worker_answer_counts


def ds_posteriors(data: EncodedAnswers, params: Any) -> np.ndarray:
    """Dawid-Skene E-step with ``params = (confusion, log_prior)``."""
    return ds_e_step(data, params)[0]


def ds_e_step(data: EncodedAnswers, params: Any) -> tuple[np.ndarray, float]:
    if params is None:
        return vote_posteriors(data, None), 0.0
    confusion, log_prior = params
    return posteriors_from_log(log_prior + confusion_log_scores(data, log_confusion(confusion)))


def ds_pass(data: EncodedAnswers, params: Any) -> Stats:
    """E-step, then the partial M-step sums: confusion counts, class totals, log-likelihood."""
    posteriors, loglik = ds_e_step(data, params)
    return confusion_counts(data, posteriors), posteriors.sum(axis=0), np.array([loglik])


def one_coin_e_step(data: EncodedAnswers, params: Any) -> tuple[np.ndarray, float]:
    if params is None:
        return vote_posteriors(data, None), 0.0
    skill, log_prior = params
    per_answer = skill[data.worker]
    log_wrong = np.log((1 - per_answer) / max(data.n_classes - 1, 1))
    return posteriors_from_log(log_prior + one_coin_log_scores(data, np.log(per_answer), log_wrong))


def one_coin_posteriors(data: EncodedAnswers, params: Any) -> np.ndarray:
    """One-coin E-step with ``params = (skill, log_prior)``."""
    return one_coin_e_step(data, params)[0]


def one_coin_pass(data: EncodedAnswers, params: Any) -> Stats:
    """E-step, then per worker the expected correct answers, class totals, log-likelihood."""
    posteriors, loglik = one_coin_e_step(data, params)
    right = np.bincount(data.worker, weights=posteriors[data.task, data.label], minlength=data.n_workers)
    return right, data.worker_answer_counts, posteriors.sum(axis=0), np.array([loglik])


# --- drivers ---------------------------------------------------------------------------------------


def fit_majority_vote(estimator: MajorityVote, engine: ShardEngine) -> ShardedFit:
    """One pass for the workers' agreement; posteriors are vote shares."""
    hits, counts = engine.map_sum(vote_agreement, None)
    skills = hits / np.maximum(counts, 1.0)
    estimator.skills_ = pd.Series(skills, index=engine.workers.rename("worker"), name="skill")
    return ShardedFit(estimator, vote_posteriors, None)


def fit_dawid_skene(estimator: DawidSkene, engine: ShardEngine, progress: Progress | None) -> ShardedFit:
    """Dawid-Skene or its shrunk variant: confusion matrices from summed partial counts."""

    def update(stats: Stats) -> tuple[np.ndarray, np.ndarray]:
        counts, totals = stats[0], stats[1]
        smoothed = counts + estimator.smoothing
        if isinstance(estimator, ShrunkDawidSkene):
            theta, habit = know_or_habit_params(counts, estimator.population_strength)
            add_know_or_habit(smoothed, estimator.strength, theta, habit)
        return normalize_rows(smoothed, inplace=True), log_prior_from(totals[None, :], 1e-6)

    params, estimator.n_iter_ = run_em(engine, ds_pass, update, estimator.n_iter, estimator.tol, progress)
    estimator._confusion, estimator._log_prior = params
    estimator._store_workers(names_only(engine))
    return ShardedFit(estimator, ds_posteriors, params)


def fit_one_coin(estimator: OneCoinDawidSkene, engine: ShardEngine, progress: Progress | None) -> ShardedFit:
    """One-coin Dawid-Skene: each worker's skill from their summed expected correct answers."""
    smoothing = estimator.smoothing

    def update(stats: Stats) -> tuple[np.ndarray, np.ndarray]:
        right, counts, totals = stats[0], stats[1], stats[2]
        skills = np.clip((right + smoothing) / (counts + 2 * smoothing), 1e-6, 1 - 1e-6)
        return skills, log_prior_from(totals[None, :], 1e-6)

    params, estimator.n_iter_ = run_em(engine, one_coin_pass, update, estimator.n_iter, estimator.tol, progress)
    estimator._skill, estimator._log_prior = params
    estimator._store_workers(names_only(engine))
    return ShardedFit(estimator, one_coin_posteriors, params)
