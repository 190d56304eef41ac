"""MACE and the default aggregator (shrunk Dawid-Skene + MACE) over partitions.

MACE's variational M-step needs, per worker, the expected number of answers they
*knew* and their expected spam counts per label: both sums over answers
(``mace_counts``), so partitions return them and the driver applies the local
``MACE._update``. The ``n_restarts`` random starts run side by side: one pass
carries every start's parameters and returns every start's counts, so the
restarts cost ``restart_iter + 1`` passes, not ``n_restarts`` times that.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from crowdloop.quality._data import EncodedAnswers
from crowdloop.quality._kernels import Progress, iterate
from crowdloop.quality._params import start_seed
from crowdloop.quality.default import DefaultAggregator
from crowdloop.quality.mace import MACE, Params, mace_counts, mace_posteriors
from crowdloop.quality.shrunk_dawid_skene import ShrunkDawidSkene
from crowdloop.scale._em import ShardedFit, ds_posteriors, fit_dawid_skene
from crowdloop.scale._shards import ShardEngine, Stats


def mace_pass(data: EncodedAnswers, batch: list[Params]) -> Stats:
    """For each parameter set: knew counts ``(R, W)``, spam counts ``(R, W, K)``, totals, log-likelihoods."""
    know, spam, totals, logliks = [], [], [], []
    for params in batch:
        posteriors, loglik = mace_posteriors(data, params)
        n_know, spam_counts = mace_counts(data, posteriors, params)
        know.append(n_know)
        spam.append(spam_counts)
        totals.append(posteriors.sum(axis=0))
        logliks.append(loglik)
    counts = data.worker_answer_counts
    return np.stack(know), np.stack(spam), np.stack(totals), counts, np.array(logliks)


def mace_output(data: EncodedAnswers, params: Params) -> np.ndarray:
    """MACE posteriors of each task."""
    return mace_posteriors(data, params)[0]


def default_output(data: EncodedAnswers, params: tuple[Any, Params]) -> np.ndarray:
    """The default aggregator's posteriors: mean of shrunk Dawid-Skene's and MACE's."""
    return np.asarray((ds_posteriors(data, params[0]) + mace_output(data, params[1])) / 2)


def _updates(estimator: MACE, stats: Stats, batch: list[Params]) -> list[Params]:
    know, spam, totals, counts = stats[0], stats[1], stats[2], stats[3]
    return [
        estimator._update(know[r], counts - know[r], spam[r], totals[r][None, :], batch[r]) for r in range(len(batch))
    ]


def _restarts(estimator: MACE, engine: ShardEngine) -> Params:
    """Run every random start ``restart_iter`` passes together; keep the most likely."""
    seed, n_classes = start_seed(estimator.random_state), len(engine.classes)
    batch = [MACE._random_start(engine.workers, n_classes, seed, r) for r in range(estimator.n_restarts)]
    for _ in range(estimator.restart_iter):
        batch = _updates(estimator, engine.map_sum(mace_pass, batch), batch)
    logliks = engine.map_sum(mace_pass, batch)[4]
    return batch[int(np.argmax(logliks))]


def fit_mace(estimator: MACE, engine: ShardEngine, progress: Progress | None) -> ShardedFit:
    """MACE as the local engine runs it: restarts, then the best start to convergence."""
    current = [_restarts(estimator, engine)]

    def step() -> float:
        stats = engine.map_sum(mace_pass, [current[0]])
        current[0] = _updates(estimator, stats, [current[0]])[0]
        return float(stats[4][0]) / engine.n_answers

    done = iterate(step, estimator.n_iter, estimator.tol, progress)
    know, spam, strategy, _ = current[0]
    estimator.n_iter_ = estimator.restart_iter + done
    workers = engine.workers.rename("worker")
    estimator.skills_ = pd.Series(know / (know + spam), index=workers, name="skill")
    estimator.spam_strategies_ = pd.DataFrame(strategy, index=workers, columns=engine.classes.rename("label"))
    return ShardedFit(estimator, mace_output, current[0])


def fit_default(estimator: DefaultAggregator, engine: ShardEngine, progress: Progress | None) -> ShardedFit:
    """Shrunk Dawid-Skene, then MACE with learned class proportions; posteriors averaged."""
    shrunk = fit_dawid_skene(ShrunkDawidSkene(), engine, progress)
    first: Any = shrunk.estimator
    offset = None if progress is None else _offset(progress, first.n_iter_)
    spam = fit_mace(MACE(learn_class_prior=True, random_state=estimator.random_state), engine, offset)
    second: Any = spam.estimator
    estimator.n_iter_ = first.n_iter_ + second.n_iter_
    estimator.errors_, estimator.priors_ = first.errors_, first.priors_
    skills = (first.skills_ + second.skills_) / 2
    estimator.skills_ = pd.Series(skills.to_numpy(), index=skills.index, name="skill")
    return ShardedFit(estimator, default_output, (shrunk.params, spam.params))


def _offset(progress: Progress, done: int) -> Progress:
    return lambda iteration, change: progress(done + iteration, change)
