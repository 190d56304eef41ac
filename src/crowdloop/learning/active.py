"""Active learning: which items people should label next, as priorities for the assignment engine.

Each strategy scores an item's *informativeness* :math:`u_i \\in [0, 1]` (higher = ask
sooner) from the model's probabilities :math:`p_i`:

* ``random`` — :math:`u_i \\sim U(0, 1)` (the baseline);
* ``least_confidence`` — :math:`1 - \\max_k p_{ik}`;
* ``margin`` — :math:`1 - (p_{i(1)} - p_{i(2)})`, the top two classes;
* ``entropy`` — :math:`-\\sum_k p_{ik} \\log p_{ik} / \\log K`;
* ``activelab`` — crowd-aware, after ActiveLab (Goh & Mueller, *ActiveLab: Active
  Learning with Re-Labeling by Multiple Annotators*, 2023; cleanlab): one more answer on an
  item already labeled competes with a first answer on a new item. With consensus
  :math:`c_i`, worker weights :math:`w_j = 1 - e_j / e_0` (error against the consensus
  over the error of always answering the most common class) and a model weight
  :math:`w_M` alike (times :math:`\\sqrt{\\bar n}`, the mean answers per item), the
  consensus quality is :math:`Q_i = (w_M p_{ic_i} + W_i \\pi_i) / (w_M + W_i)`,
  :math:`W_i = \\sum_j w_j` over the item's workers, where :math:`\\pi_i` is the posterior of
  :math:`c_i` from the item's answers, each worker right with their accuracy :math:`a_j`
  against the consensus, and the consensus class shares :math:`\\rho` as the prior:
  :math:`\\pi_i \\propto \\rho_{c_i} \\prod_j a_j^{[l_j = c_i]} ((1 - a_j)/(K-1))^{[l_j \\ne c_i]}`.
  ActiveLab averages :math:`P_{ij}` (:math:`a_j` or :math:`(1 - a_j)/(K-1)`) instead, which
  scores a lone answer of a rare class as well as a lone answer of the common one; with the
  prior, a lone "match" on ``product`` (12% matches, answers 82% right) scores 0.38 and gets
  another answer, a lone "different" 0.97 and does not.
  The score :math:`s_i` averages :math:`Q_i` (weight :math:`w_M + \\sum_j w_j`) with
  :math:`1/K` (weight :math:`\\bar w`); an unlabeled item uses :math:`\\max_k p_{ik}`
  (weight :math:`w_M`). :math:`u_i = 1 - s_i`.

:func:`select` turns scores into priorities and keeps the batch diverse: among the
``pool_factor * batch_size`` most informative items it greedily picks
:math:`\\arg\\max_i u_i - \\lambda \\max_{s \\in S} \\cos(x_i, x_s)` (maximal marginal
relevance, Carbonell & Goldstein 1998) when item features are given.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from crowdloop.errors import InvalidInputError, InvalidParameterError
from crowdloop.learning.features import shown
from crowdloop.quality._data import check_answers

STRATEGIES = ("random", "least_confidence", "margin", "entropy", "activelab")


def informativeness(
    strategy: str,
    probas: pd.DataFrame,
    answers: pd.DataFrame | None = None,
    random_state: int = 0,
) -> pd.Series:
    """Score in [0, 1] of every task in ``probas`` (higher = more useful to label next)."""
    p = probas.to_numpy(dtype=np.float64)
    if not np.isfinite(p).all():
        bad = probas.index[~np.isfinite(p).all(axis=1)]
        raise InvalidInputError(
            f"probabilities of {len(bad)} task(s) are missing or infinite (first: {shown(bad[0])})."
        )
    p = np.clip(p, 0.0, 1.0)
    if strategy == "random":
        values = np.random.default_rng(random_state).random(len(p))
    elif strategy == "least_confidence":
        values = 1.0 - p.max(axis=1)
    elif strategy == "margin":
        top = np.sort(p, axis=1)[:, ::-1]
        values = 1.0 - (top[:, 0] - (top[:, 1] if p.shape[1] > 1 else 0.0))
    elif strategy == "entropy":
        values = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1) / np.log(max(p.shape[1], 2))
    elif strategy == "activelab":
        values = 1.0 - activelab_scores(probas, answers)
    else:
        raise InvalidParameterError(f"unknown active-learning strategy {strategy!r}; choose one of {STRATEGIES}.")
    return pd.Series(values, index=probas.index, name="informativeness")


def _weights(errors: np.ndarray, baseline_error: float) -> np.ndarray:
    return np.clip(1.0 - errors / max(baseline_error, 1e-6), 1e-3, None)


def activelab_scores(probas: pd.DataFrame, answers: pd.DataFrame | None) -> np.ndarray:
    """ActiveLab quality :math:`s_i` of each task (lower = label next); see the module doc."""
    p = probas.to_numpy(dtype=np.float64)
    K = p.shape[1]
    labeled = _labeled_answers(probas, answers)
    if labeled.empty:
        return np.asarray((p.max(axis=1) + 1.0 / K) / 2.0)
    rows = probas.index.get_indexer(pd.Index(labeled["task"]))
    codes = pd.Index([str(c) for c in probas.columns]).get_indexer(pd.Index(labeled["label"].astype(str)))
    consensus = _consensus(rows, codes, p)
    agree = codes == consensus[rows]
    workers = pd.factorize(labeled["worker"])[0]
    accuracy = np.bincount(workers, agree) / np.bincount(workers)
    has = np.bincount(rows, minlength=len(p)) > 0
    baseline = 1.0 - np.bincount(consensus[has], minlength=K).max() / has.sum()
    w_workers = _weights(1.0 - accuracy, baseline)
    model_error = float(np.mean(p[has].argmax(axis=1) != consensus[has]))
    w_model = float(_weights(np.array([model_error]), baseline)[0] * np.sqrt(len(rows) / has.sum()))
    return _combine(p, rows, workers, codes, accuracy, w_workers, w_model, consensus, has)


def _labeled_answers(probas: pd.DataFrame, answers: pd.DataFrame | None) -> pd.DataFrame:
    if answers is None:
        return pd.DataFrame(columns=["task", "worker", "label"])
    answers = check_answers(answers)
    known = answers["task"].isin(probas.index) & answers["label"].astype(str).isin([str(c) for c in probas.columns])
    return answers[known]


def _consensus(rows: np.ndarray, codes: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Majority vote per task, ties broken by the model; the model's class where no answer."""
    votes = np.zeros_like(p)
    np.add.at(votes, (rows, codes), 1.0)
    return np.asarray((votes + 1e-3 * p).argmax(axis=1))


def _combine(
    p: np.ndarray,
    rows: np.ndarray,
    workers: np.ndarray,
    codes: np.ndarray,
    accuracy: np.ndarray,
    w_workers: np.ndarray,
    w_model: float,
    consensus: np.ndarray,
    has: np.ndarray,
) -> np.ndarray:
    K = p.shape[1]
    weight_sum = np.bincount(rows, w_workers[workers], len(p))
    posterior = _consensus_posterior(rows, workers, codes, accuracy, consensus, has, K)
    model_part = p[np.arange(len(p)), consensus]
    quality = (w_model * model_part + weight_sum * posterior) / (w_model + weight_sum)
    mean_w = float(w_workers.mean())
    labeled = ((weight_sum + w_model) * quality + mean_w / K) / (weight_sum + w_model + mean_w)
    unlabeled = (w_model * p.max(axis=1) + mean_w / K) / (w_model + mean_w)
    return np.asarray(np.where(has, labeled, unlabeled))


def _consensus_posterior(
    rows: np.ndarray, workers: np.ndarray, codes: np.ndarray, accuracy: np.ndarray, consensus: np.ndarray,
    has: np.ndarray, K: int,
) -> np.ndarray:  # fmt: skip
    """:math:`\\pi_i`: the posterior of each task's consensus class from its answers (see the module
    doc), each class weighed in full: under class :math:`k` an answer of :math:`k` is right and
    every other answer wrong, with the consensus class shares as the prior."""
    a = np.clip(accuracy[workers], 1e-3, 1 - 1e-3)
    right, wrong = np.log(a), np.log((1 - a) / max(K - 1, 1))
    n_tasks = len(consensus)
    log_post = np.repeat(np.bincount(rows, wrong, n_tasks)[:, None], K, axis=1)  # every answer wrong...
    np.add.at(log_post, (rows, codes), right - wrong)  # ...except under its own class
    shares = np.bincount(consensus[has], minlength=K) + 1.0
    log_post += np.log(shares / shares.sum())
    log_post -= log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post)
    return np.asarray(post[np.arange(n_tasks), consensus] / post.sum(axis=1))


def _diverse(scores: np.ndarray, features: Any, batch_size: int, pool: int, diversity: float) -> list[int]:
    """Greedy maximal-marginal-relevance batch among the ``pool`` best-scored rows."""
    candidates = np.argsort(-scores, kind="stable")[:pool]
    vectors = _unit_rows(features[candidates])
    similarity = np.asarray(vectors @ vectors.T.toarray() if hasattr(vectors, "toarray") else vectors @ vectors.T)
    chosen: list[int] = []
    closest = np.zeros(len(candidates))
    for _ in range(min(batch_size, len(candidates))):
        gain = scores[candidates] - diversity * closest
        gain[chosen] = -np.inf
        best = int(np.argmax(gain))
        chosen.append(best)
        closest = np.maximum(closest, similarity[best])
    return [int(candidates[i]) for i in chosen]


def _unit_rows(matrix: Any) -> Any:
    squares = matrix.multiply(matrix) if hasattr(matrix, "multiply") else matrix**2
    norms = np.sqrt(np.asarray(squares.sum(axis=1)).ravel())
    scale = 1.0 / np.where(norms > 0, norms, 1.0)
    if hasattr(matrix, "multiply"):
        return matrix.multiply(scale[:, None]).tocsr()
    return matrix * scale[:, None]


def select(
    strategy: str,
    probas: pd.DataFrame,
    answers: pd.DataFrame | None = None,
    batch_size: int = 10,
    random_state: int = 0,
    features: Any = None,
    diversity: float = 0.5,
    pool_factor: int = 5,
) -> pd.Series:
    """Priorities of every task in ``probas`` for the assignment engine (higher = served first).

    The ``batch_size`` items chosen get priorities above 1, in pick order; every other
    item keeps its informativeness in [0, 1]. ``features`` (rows aligned with ``probas``,
    dense or scipy sparse) make the batch diverse, for every strategy but ``random``; without
    them it is the top scores.
    """
    if batch_size < 1 or diversity < 0 or pool_factor < 1:
        raise InvalidParameterError(
            f"need batch_size >= 1, diversity >= 0, pool_factor >= 1; got {batch_size}, {diversity}, {pool_factor}."
        )
    if features is not None and features.shape[0] != len(probas):
        raise InvalidInputError(f"features have {features.shape[0]} rows for {len(probas)} tasks; give one row each.")
    scores = informativeness(strategy, probas, answers, random_state).to_numpy()
    if features is not None and diversity > 0 and strategy != "random":
        batch = _diverse(scores, features, batch_size, batch_size * pool_factor, diversity)
    else:
        batch = [int(i) for i in np.argsort(-scores, kind="stable")[:batch_size]]
    priority = scores.copy()
    priority[batch] = 1.0 + (len(batch) - np.arange(len(batch))) / len(batch)
    return pd.Series(priority, index=probas.index, name="priority").sort_values(ascending=False, kind="stable")
