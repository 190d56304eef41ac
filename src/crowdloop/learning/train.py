"""Train a model on aggregated labels, kept soft: each class weighted by its posterior.

Soft labels: item :math:`i` with posterior :math:`q_{ik}` (from any aggregator's
``probas_``) enters training once per class :math:`k` with :math:`q_{ik} > \\epsilon`,
with target :math:`k` and sample weight :math:`q_{ik}`, so the weighted log-likelihood
is :math:`\\sum_i \\sum_k q_{ik} \\log p_\\theta(k \\mid x_i)` — the expected
log-likelihood under the crowd's posterior (the M-step of Raykar et al. 2010). A sure
label is one row of weight 1; a split vote is two half rows.

Example:
    >>> import pandas as pd
    >>> items = pd.DataFrame({"task": [1, 2, 3, 4], "text": ["good film", "bad film", "good show", "bad show"]})
    >>> labels = pd.Series({1: "pos", 2: "neg", 3: "pos", 4: "neg"})
    >>> model = train_model(items, labels, FeatureSpec(text=("text",)), featurizer_params={"min_df": 1})
    >>> model.predict(items).tolist()
    ['pos', 'neg', 'pos', 'neg']
"""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crowdloop.errors import EmptyInputError, InvalidInputError, InvalidParameterError, NotFoundError
from crowdloop.learning.features import FeatureSpec, Featurizer, Items, column, item_ids, shown
from crowdloop.learning.models import build_estimator, check_family, checked_params
from crowdloop.numbers import plain

MIN_WEIGHT = 0.01
"""Posteriors below this are left out of the soft-label rows."""


def soft_targets(labels: pd.Series | pd.DataFrame) -> pd.DataFrame:
    """Task x class probabilities from posteriors (a frame) or hard labels (a Series).

    Hard labels of mixed types (``1`` and ``"1"``) are compared as text, so they make one class,
    not two. A task given twice, a missing value, or a row of posteriors that is negative, not
    finite or all zero is an error naming the first such task.
    """
    if not isinstance(labels, pd.Series | pd.DataFrame):
        raise InvalidInputError(
            f"labels must be a Series (task -> label) or a task x class DataFrame; got {type(labels).__name__}."
        )
    if labels.index.has_duplicates:
        raise InvalidInputError(
            f"task {shown(labels.index[labels.index.duplicated()][0])} has more than one label row."
        )
    if isinstance(labels, pd.Series):
        if labels.isna().any():
            raise InvalidInputError("labels hold missing values; drop unlabeled tasks first.")
        if labels.map(type).nunique() > 1:
            labels = labels.astype(str)
        return pd.get_dummies(labels).astype(np.float64)
    frame = labels.astype(np.float64)
    values = frame.to_numpy()
    bad = ~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1) | (values.sum(axis=1) <= 0)
    if frame.empty or bad.any():
        where = f" (task {shown(frame.index[bad][0])} and {int(bad.sum()) - 1} more)" if bad.any() else ""
        raise InvalidInputError(
            f"soft labels must be a non-empty task x class frame of probabilities, each row finite, non-negative "
            f"and not all zero{where}."
        )
    return frame.div(frame.sum(axis=1), axis=0)


def expand_soft(probas: np.ndarray, min_weight: float = MIN_WEIGHT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row index, class code and weight of every (item, class) with weight above ``min_weight``."""
    rows, classes = np.nonzero(probas > min_weight)
    return rows, classes, probas[rows, classes]


def fit_soft(estimator: Any, X: Any, probas: np.ndarray) -> Any:
    """Fit ``estimator`` on soft labels (class codes ``0..K-1``); return it."""
    rows, y, weight = expand_soft(probas)
    if len(np.unique(y)) < 2:
        raise InvalidInputError("training needs at least two classes with some weight.")
    with one_thread(), warnings.catch_warnings():  # f_classif on a fold where some n-gram never occurs
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn.feature_selection")
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="sklearn.feature_selection")
        try:
            if hasattr(estimator, "named_steps"):
                return _fit_selected(estimator, X, probas, rows, y, weight)
            if type(estimator).__name__ == "CalibratedClassifierCV":
                return _fit_calibrated(estimator, X, probas, rows, y, weight)
            return estimator.fit(X[rows], y, sample_weight=weight)
        except ValueError as error:  # scikit-learn's word for labels it cannot fit, e.g. too few of a class
            name = type(estimator).__name__  # for calibration's folds: a 422 that says so, not a 500
            raise InvalidInputError(f"{name} cannot be trained on these {len(y)} weighted rows: {error}") from error


def _fit_selected(estimator: Any, X: Any, probas: np.ndarray, rows: Any, y: Any, weight: Any) -> Any:
    """A select-then-classify pipeline: the selector scores each feature against every item's
    leading class, one row per item; the classifier then learns from the weighted soft rows.

    Scoring on the soft rows would not do: an uncertain item is a row under each class with the
    same features, so on a crowd's posteriors every class looks alike to the F-test, and which
    features it keeps is decided by rounding noise (measured: 7 of 50 the same at a confidence
    of 0.95 as at 1.0).
    """
    select, classify = estimator.named_steps["select"], estimator.named_steps["clf"]
    select.set_params(k=min(int(select.k), X.shape[1]))
    leading = probas.argmax(axis=1)
    if np.unique(leading).size >= 2:
        select.fit(X, leading)
    else:  # every item leans one way: only the soft rows tell the classes apart
        select.fit(X[rows], y)
    classify.fit(select.transform(X[rows]), y, sample_weight=weight)
    return estimator


def _fit_calibrated(estimator: Any, X: Any, probas: np.ndarray, rows: Any, y: Any, weight: Any) -> Any:
    """Calibration on folds of items, not of rows: an item's soft rows stay in one fold, so the
    sigmoid is never fitted on the scores of an item the classifier learned from."""
    n_folds = int(estimator.cv)
    folds = stratified_folds(probas, n_folds, random_state=0)[rows]
    splits = [(np.flatnonzero(folds != k), np.flatnonzero(folds == k)) for k in range(n_folds)]
    estimator.set_params(cv=splits).fit(X[rows], y, sample_weight=weight)
    return estimator.set_params(cv=n_folds)  # the fitted calibrators stay; the split indices need not


def stratified_folds(probas: np.ndarray, n_folds: int, random_state: int = 0) -> np.ndarray:
    """The fold (``0..n_folds-1``) of each item: items are shuffled (seeded), grouped by leading
    class and dealt out in turn, so folds are even and every class with two items or more is in
    the training part of every fold. A plain random split can leave a rare class out of one, and
    that fold's model then never predicts it."""
    order = np.random.default_rng(random_state).permutation(len(probas))
    dealt = order[np.argsort(probas.argmax(axis=1)[order], kind="stable")]
    folds = np.empty(len(probas), dtype=np.int64)
    folds[dealt] = np.arange(len(probas)) % n_folds
    return folds


def fold_probas(
    X: Any, probas: np.ndarray, folds: np.ndarray, fold: int, family: str, params: dict[str, Any] | None, seed: int
) -> np.ndarray:
    """Probabilities of fold ``fold``'s items from a model fitted on the other folds' soft labels.

    A class that the other folds never lead with gets its share of the soft labels rather than 0:
    the model cannot know it, and a 0 would veto it for good where these probabilities are a
    prior (the crowd model's E-step) or an answer (the model as a worker).
    """
    train, test = folds != fold, folds == fold
    estimator = fit_soft(build_estimator(family, params, seed), X[train], probas[train])
    out = full_probas(estimator, X[test], probas.shape[1])
    unseen = np.setdiff1d(np.arange(probas.shape[1]), estimator.classes_.astype(int))
    if unseen.size:
        out[:, unseen] = probas[:, unseen].mean(axis=0)
        out /= out.sum(axis=1, keepdims=True)
    return out


def out_of_fold_probas(
    X: Any, probas: np.ndarray, family: str, params: dict[str, Any] | None, n_folds: int = 3, random_state: int = 0
) -> np.ndarray:
    """Each item's probabilities from a model that did not train on it (``n_folds`` fits), for
    judging a model on the items it learns from: in-sample it echoes its own training labels."""
    folds = stratified_folds(probas, n_folds, random_state)
    out = np.zeros_like(probas, dtype=np.float64)
    for fold in range(n_folds):
        out[folds == fold] = fold_probas(X, probas, folds, fold, family, params, random_state)
    return out


def full_probas(estimator: Any, X: Any, n_classes: int) -> np.ndarray:
    """``predict_proba`` with a column for every class code, absent ones at 0."""
    out = np.zeros((X.shape[0], n_classes))
    with one_thread():
        out[:, estimator.classes_.astype(int)] = estimator.predict_proba(X)
    return out


def one_thread() -> Any:
    """BLAS and OpenMP limited to one thread: on these sparse problems extra threads add nothing,
    and on a busy machine they contend (measured: a 1 s fit took 10 s with default threads)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


@dataclass
class TrainedModel:
    """A featurizer and a fitted estimator over class codes; ``classes_`` maps codes to labels."""

    featurizer: Featurizer
    estimator: Any
    classes_: list[Any]
    family: str
    params: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, items: Items) -> pd.DataFrame:
        """Item x class probabilities, indexed by the spec's id column."""
        probas = full_probas(self.estimator, self.featurizer.transform(items), len(self.classes_))
        index = pd.Index(column(items, self.featurizer.spec.id_column), name=self.featurizer.spec.id_column)
        return pd.DataFrame(probas, index=index, columns=pd.Index(self.classes_, name="label"))

    def predict(self, items: Items) -> pd.Series:
        """The most probable class of each item."""
        return self.predict_proba(items).idxmax(axis=1).rename("label")

    def save(self, folder: str | Path) -> Path:
        """Write ``features.json``, ``estimator.pkl`` and ``model.json`` into ``folder``."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        self.featurizer.save(path / "features.json")
        (path / "estimator.pkl").write_bytes(pickle.dumps(self.estimator))
        meta = {
            "classes": [plain(c) for c in self.classes_],
            "family": self.family,
            "params": self.params,
            **self.metadata,
        }
        (path / "model.json").write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> TrainedModel:
        """Read a model written by :meth:`save` (only load folders you trust: pickle)."""
        path = Path(folder)
        if not (path / "model.json").exists():
            raise NotFoundError(f"no saved model in {path} (model.json missing).")
        try:
            meta = json.loads((path / "model.json").read_text())
            estimator = pickle.loads((path / "estimator.pkl").read_bytes())
            classes, family, params = meta.pop("classes"), meta.pop("family"), meta.pop("params")
            featurizer = Featurizer.load(path / "features.json")
        except (OSError, ValueError, KeyError, TypeError, AttributeError, pickle.UnpicklingError) as error:
            raise InvalidInputError(f"{path} is not a whole saved model: {type(error).__name__}: {error}") from error
        return cls(featurizer, estimator, classes, family, params, meta)


def aligned_targets(
    items: Items, soft_labels: pd.Series | pd.DataFrame, id_column: str
) -> tuple[np.ndarray, pd.DataFrame]:
    """The items' positions of the labeled tasks and their targets, both in the targets' order (not
    the items': the k-th position is the k-th target's item)."""
    targets = soft_targets(soft_labels)
    ids = item_ids(items, id_column)
    position = ids.get_indexer(targets.index)
    if not (position >= 0).any():
        hint = ""
        if len(targets) and len(ids):  # often ids read as text on one side and as numbers on the other
            label, item = targets.index[0], ids[0]
            hint = f": labels name e.g. {shown(label)}, the items e.g. {shown(item)}"
        raise EmptyInputError(f"no labeled task matches an item's {id_column!r}{hint}.")
    return position[position >= 0], targets[position >= 0]


def labeled_rows(
    items: Items,
    soft_labels: pd.Series | pd.DataFrame,
    spec: FeatureSpec | None = None,
    featurizer: Featurizer | None = None,
    featurizer_params: dict[str, Any] | None = None,
) -> tuple[Featurizer, Any, pd.DataFrame]:
    """The featurizer (fitted on every item, spec inferred when ``None``, unless a fitted one is
    given), the feature rows of the labeled items, and their targets in the same order."""
    featurizer = featurizer or Featurizer(spec or FeatureSpec.infer(items), **(featurizer_params or {})).fit(items)
    positions, targets = aligned_targets(items, soft_labels, featurizer.spec.id_column)
    return featurizer, featurizer.transform(items)[positions], targets


def train_model(
    items: Items,
    soft_labels: pd.Series | pd.DataFrame,
    spec: FeatureSpec | None = None,
    family: str = "logreg",
    params: dict[str, Any] | None = None,
    random_state: int = 0,
    featurizer: Featurizer | None = None,
    featurizer_params: dict[str, Any] | None = None,
) -> TrainedModel:
    """Featurise ``items`` (spec inferred when ``None``) and fit ``family`` on the labeled ones.

    ``soft_labels`` is a task x class frame of posteriors (``aggregator.probas_``) or a
    Series of hard labels. The featurizer is fitted on all items (no labels used) unless
    a fitted one is given.
    """
    check_family(family)
    featurizer, X, targets = labeled_rows(items, soft_labels, spec, featurizer, featurizer_params)
    return fit_model(featurizer, X, targets, family, params, random_state)


def cross_val_probas(
    items: Items,
    soft_labels: pd.Series | pd.DataFrame,
    spec: FeatureSpec | None = None,
    family: str = "logreg",
    params: dict[str, Any] | None = None,
    n_folds: int = 3,
    random_state: int = 0,
    featurizer: Featurizer | None = None,
) -> pd.DataFrame:
    """Each labeled item's probabilities (task x class) from a model that did not learn from it.

    What to give :func:`~crowdloop.learning.model_as_worker` for the items a model is trained on:
    its own predictions there echo its training labels, and truth inference would then rate it
    as far more reliable than it is.
    """
    check_family(family)
    featurizer, X, targets = labeled_rows(items, soft_labels, spec, featurizer)
    if not 2 <= n_folds <= len(targets):
        raise InvalidParameterError(f"n_folds must be between 2 and the {len(targets)} labeled items; got {n_folds}.")
    probas = out_of_fold_probas(X, targets.to_numpy(), family, params, n_folds, random_state)
    index = targets.index.rename(featurizer.spec.id_column)
    return pd.DataFrame(probas, index=index, columns=targets.columns)


def fit_model(
    featurizer: Featurizer,
    X: Any,
    targets: pd.DataFrame,
    family: str = "logreg",
    params: dict[str, Any] | None = None,
    random_state: int = 0,
) -> TrainedModel:
    """Fit ``family`` on already featurised rows ``X`` (aligned with ``targets``' rows)."""
    estimator = fit_soft(build_estimator(family, params, random_state), X, targets.to_numpy())
    return TrainedModel(featurizer, estimator, list(targets.columns), family, checked_params(family, params))
