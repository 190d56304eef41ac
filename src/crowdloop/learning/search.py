"""Model-family and hyper-parameter search with Optuna, scored by cross-validation on crowd labels.

Each trial picks a family (:data:`crowdloop.learning.models.SEARCHED` unless told) and its
parameters with TPE (Bergstra et al., NeurIPS 2011; seeded), fits one model per fold on
the soft labels of the other folds and scores the held-out fold by its expected accuracy
under the crowd's posterior, :math:`\\frac1n \\sum_i q_{i \\hat y_i}` (the accuracy the
model would have if the crowd's posteriors were the truth). The running mean is reported
after each fold, so a :class:`optuna.pruners.MedianPruner` stops trials that are behind.
The budget is ``n_trials`` trials and/or ``timeout`` seconds, whichever ends first; past the
timeout a running trial stops after its current fold (the first trial always finishes, so there
is a model), and the best model's refit on every labeled item comes after.

When ``gold`` is given, each finished trial also records the accuracy of its out-of-fold
predictions on gold (never used to choose), and the result carries the best model's
metrics on gold, so the choice made on crowd labels is checked against the truth: on the
gold items it learned from, through the best trial's out-of-fold predictions; on gold items
among ``items`` that have no label, through the refitted model. Either way no model is
scored on an item it was trained on.

Folds are stratified by each item's leading class (:func:`~crowdloop.learning.train.stratified_folds`).
A trial whose family cannot be trained on the data (naive Bayes on a fold with one class, say)
is recorded as failed with the reason, and the search goes on; it fails only if no trial can.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crowdloop.errors import InvalidInputError, InvalidParameterError
from crowdloop.learning.features import FeatureSpec, Featurizer, Items, column
from crowdloop.learning.metrics import evaluate_probas
from crowdloop.learning.models import SEARCHED, check_family, suggest
from crowdloop.learning.train import (
    TrainedModel,
    fit_model,
    fold_probas,
    full_probas,
    labeled_rows,
    stratified_folds,
)
from crowdloop.quality._data import gold_series

Progress = Callable[[int, float | None, float | None], None]
"""Called after each trial with (trials done, this trial's score or None, best score so far)."""


@dataclass
class TuneResult:
    """The best model (refitted on every labeled item), its choice and every trial."""

    model: TrainedModel
    family: str
    params: dict[str, Any]
    score: float
    trials: pd.DataFrame
    gold: dict[str, Any] | None
    seconds: float


@dataclass
class _Data:
    X: Any
    targets: pd.DataFrame
    folds: np.ndarray
    gold: pd.Series | None
    out_of_fold: dict[int, pd.DataFrame]
    """Each finished trial's out-of-fold probabilities (labeled items x classes), by trial number."""


def _objective(data: _Data, families: Sequence[str], seed: int, deadline: float | None) -> Callable[[Any], float]:
    """The cross-validated score of one trial; past ``deadline`` (``time.perf_counter``), a trial
    stops after its current fold once another trial has finished. Optuna checks its timeout only
    between trials, so one slow trial begun just before it could run the search far past it."""
    import optuna

    q = data.targets.to_numpy()

    def objective(trial: Any) -> float:
        family = trial.suggest_categorical("family", list(families))
        params = suggest(trial, family)
        out_of_fold, scores = np.zeros(q.shape), list[float]()
        for fold in range(int(data.folds.max()) + 1):
            test = data.folds == fold
            try:
                probas = fold_probas(data.X, q, data.folds, fold, family, params, seed)
            except InvalidInputError as error:  # this family cannot learn these labels: say why, go on
                trial.set_user_attr("error", str(error))
                raise
            out_of_fold[test] = probas
            scores.append(float(q[test][np.arange(test.sum()), probas.argmax(axis=1)].mean()))
            trial.report(float(np.mean(scores)), fold)
            if trial.should_prune() or _out_of_time(trial, deadline):
                raise optuna.TrialPruned()
        frame = pd.DataFrame(out_of_fold, index=data.targets.index, columns=data.targets.columns)
        data.out_of_fold[trial.number] = frame
        if data.gold is not None and data.gold.index.isin(frame.index).any():
            trial.set_user_attr("gold_accuracy_oof", evaluate_probas(frame, data.gold)["accuracy"])
        return float(np.mean(scores))

    return objective


def _out_of_time(trial: Any, deadline: float | None) -> bool:
    if deadline is None or time.perf_counter() < deadline:
        return False
    from optuna.trial import TrialState

    return bool(trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _trials_table(study: Any) -> pd.DataFrame:
    rows = []
    for t in study.trials:
        params = {k.split(".", 1)[-1]: v for k, v in t.params.items() if k != "family"}
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        row = {"number": t.number, "family": t.params.get("family"), "params": params, "score": t.value}
        rows.append({**row, "state": t.state.name, "seconds": seconds, **t.user_attrs})
    return pd.DataFrame(rows)


def _check(n_trials: int | None, timeout: float | None, n_folds: int, families: Sequence[str]) -> None:
    if n_trials is None and timeout is None:
        raise InvalidParameterError("give a trial budget (n_trials) or a time budget (timeout), or both.")
    if (n_trials is not None and n_trials < 1) or (timeout is not None and timeout <= 0) or n_folds < 2:
        raise InvalidParameterError(
            f"need n_trials >= 1, timeout > 0, n_folds >= 2; got {n_trials}, {timeout}, {n_folds}."
        )
    if not families:
        raise InvalidParameterError("families is empty; name at least one model family.")
    for family in families:
        check_family(family)


def tune(
    items: Items,
    soft_labels: pd.Series | pd.DataFrame,
    spec: FeatureSpec | None = None,
    n_trials: int | None = 20,
    timeout: float | None = None,
    families: Sequence[str] = SEARCHED,
    n_folds: int = 3,
    random_state: int = 0,
    gold: pd.Series | None = None,
    featurizer: Featurizer | None = None,
    progress: Progress | None = None,
) -> TuneResult:
    """Search families and parameters; return the best, refitted on all labeled items.

    ``soft_labels`` are the aggregator's posteriors (task x class) or hard labels.
    """
    import optuna

    families = (families,) if isinstance(families, str) else tuple(families)  # "logreg" is one family
    _check(n_trials, timeout, n_folds, families)
    started = time.perf_counter()
    gold = None if gold is None else gold_series(gold)
    featurizer, X, targets = labeled_rows(items, soft_labels, spec, featurizer)
    folds = stratified_folds(targets.to_numpy(), n_folds, random_state)
    data = _Data(X, targets, folds, gold, {})
    sampler = optuna.samplers.TPESampler(seed=random_state)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    callbacks = [_callback(progress)] if progress else []
    objective = _objective(data, families, random_state, None if timeout is None else started + timeout)
    study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=callbacks, catch=(InvalidInputError,))
    result = _result(study, featurizer, data, random_state, started)
    if gold is not None:
        result.gold = _gold_check(result.model, items, data, gold, study.best_trial.number)
    return result


def _callback(progress: Progress) -> Callable[[Any, Any], None]:
    def report(study: Any, trial: Any) -> None:
        best = study.best_value if any(t.value is not None for t in study.trials) else None
        progress(len(study.trials), trial.value, best)

    return report


def _result(study: Any, featurizer: Featurizer, data: _Data, seed: int, started: float) -> TuneResult:
    if not any(t.value is not None for t in study.trials):
        reasons = sorted({str(t.user_attrs.get("error", t.state.name)) for t in study.trials})
        raise InvalidInputError(f"no trial of the search could be trained: {'; '.join(reasons)}")
    best = study.best_trial
    family = best.params["family"]
    params = {k.split(".", 1)[1]: v for k, v in best.params.items() if k != "family"}
    model = fit_model(featurizer, data.X, data.targets, family, params, seed)
    model.metadata.update({"cv_score": best.value, "trial": best.number})
    return TuneResult(
        model, family, params, float(best.value), _trials_table(study), None, time.perf_counter() - started
    )


def _gold_check(model: TrainedModel, items: Items, data: _Data, gold: pd.Series, trial: int) -> dict[str, Any] | None:
    """The chosen model's metrics on gold, each gold item predicted by a model that did not learn
    from it: the best trial's out-of-fold probabilities for labeled items, the refitted model's for
    the rest of ``items`` (None when no item has gold)."""
    labeled = data.out_of_fold[trial]
    ids = pd.Index(column(items, model.featurizer.spec.id_column))
    unlabeled = np.flatnonzero(ids.isin(gold.index) & ~ids.isin(labeled.index))
    parts = [labeled[labeled.index.isin(gold.index)]]
    if unlabeled.size:
        subset = items.iloc[unlabeled] if hasattr(items, "iloc") else [items[i] for i in unlabeled]
        probas = full_probas(model.estimator, model.featurizer.transform(subset), len(model.classes_))
        parts.append(pd.DataFrame(probas, index=ids[unlabeled], columns=labeled.columns))
    held_out = pd.concat(parts)
    if held_out.empty:
        return None
    counts = {"out_of_fold": len(parts[0]), "unlabeled": int(unlabeled.size)}
    return {**evaluate_probas(held_out, gold), "held_out": counts}
