"""Model families: scikit-learn estimators that skl2onnx converts exactly, and their search spaces.

==============  ===============================================================
``logreg``      ``LogisticRegression`` (L2, lbfgs); parameter ``C``
``linear_svm``  ``CalibratedClassifierCV(LinearSVC)`` (Platt sigmoid, 3 folds); ``C``
``gboost``      ``SelectKBest(f_classif)`` then ``GradientBoostingClassifier``;
                ``k``, ``n_estimators``, ``learning_rate``, ``max_depth``
``naive_bayes`` ``ComplementNB`` (Rennie et al. 2003); ``alpha``
``torch_mlp``   :class:`~crowdloop.learning.torch_mlp.TorchMLP`, one ReLU layer trained
                with PyTorch (optional: trained only where torch is installed);
                ``hidden``, ``epochs``, ``learning_rate``, ``weight_decay``, ``dropout``
==============  ===============================================================

Every estimator takes the featurizer's float32 sparse rows and a ``sample_weight``, which
is how soft labels enter (:func:`crowdloop.learning.train.fit_soft`). A family search
(``auto``) tries the scikit-learn families (:data:`SEARCHED`); ``torch_mlp`` is trained and
tuned when named, its trials being many times slower.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crowdloop.errors import InvalidParameterError

SEARCHED = ("logreg", "linear_svm", "gboost", "naive_bayes")
"""The families a family search tries, in the order :func:`crowdloop.learning.tune` (in `search.py`) does."""

FAMILIES = (*SEARCHED, "torch_mlp")
"""Every model family name."""

DEFAULTS: dict[str, dict[str, Any]] = {
    "logreg": {"C": 10.0},
    "linear_svm": {"C": 0.5},
    "gboost": {"k": 200, "n_estimators": 80, "learning_rate": 0.15, "max_depth": 3},
    "naive_bayes": {"alpha": 0.3},
    "torch_mlp": {"hidden": 32, "epochs": 20, "learning_rate": 0.05, "weight_decay": 1e-4, "dropout": 0.0},
}

ONNX_INPUT_DTYPE = {
    "logreg": "float32", "linear_svm": "float32", "gboost": "float32", "naive_bayes": "float64", "torch_mlp": "float32"
}  # fmt: skip
"""Input type under which skl2onnx's conversion matches scikit-learn within 1e-5: naive Bayes
sums thousands of log-probabilities, too many for float32, so it converts with double input."""


MAX_SEED = 2**32 - 1
"""The largest seed numpy and scikit-learn take."""


def check_seed(seed: int, name: str = "random_state") -> int:
    """``seed`` itself, or an error naming the range (numpy and scikit-learn refuse the rest)."""
    if not 0 <= seed <= MAX_SEED:
        raise InvalidParameterError(f"{name} must be between 0 and {MAX_SEED}; got {seed}.")
    return seed


def check_family(family: str) -> str:
    """``family`` itself, or an error naming the known families."""
    if family not in FAMILIES:
        raise InvalidParameterError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}.")
    return family


def build_estimator(family: str, params: dict[str, Any] | None = None, random_state: int = 0) -> Any:
    """An unfitted estimator of ``family``; ``params`` override :data:`DEFAULTS`."""
    return _BUILDERS[family](checked_params(family, params), random_state)


def checked_params(family: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Every parameter of ``family``, defaults filled in, each of its default's type: an unknown name,
    text for a number or 2.7 for a whole number is an error naming it (not fitted as 2 and
    recorded as 2.7)."""
    merged = {**DEFAULTS[check_family(family)], **(params or {})}
    unknown = sorted(set(merged) - set(DEFAULTS[family]))
    if unknown:
        raise InvalidParameterError(f"{family} has no parameter(s) {unknown}; it takes {sorted(DEFAULTS[family])}.")
    return {name: _typed(family, name, value, type(DEFAULTS[family][name])) for name, value in merged.items()}


def _typed(family: str, name: str, value: Any, kind: type) -> Any:
    number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if number and kind is float:
        return float(value)
    if number and kind is int and float(value).is_integer():
        return int(value)
    wanted = "a whole number" if kind is int else "a number"
    raise InvalidParameterError(f"{family}: parameter {name!r} must be {wanted}; got {value!r}.")


def _logreg(p: dict[str, Any], seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=float(p["C"]), max_iter=500, tol=1e-3, random_state=seed)


def _linear_svm(p: dict[str, Any], seed: int) -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=float(p["C"]), tol=1e-3, max_iter=2000, random_state=seed)
    return CalibratedClassifierCV(svm, method="sigmoid", cv=3)


def _gboost(p: dict[str, Any], seed: int) -> Any:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.pipeline import Pipeline

    boost = GradientBoostingClassifier(
        n_estimators=int(p["n_estimators"]),
        learning_rate=float(p["learning_rate"]),
        max_depth=int(p["max_depth"]),
        random_state=seed,
    )
    return Pipeline([("select", SelectKBest(f_classif, k=int(p["k"]))), ("clf", boost)])


def _naive_bayes(p: dict[str, Any], seed: int) -> Any:
    from sklearn.naive_bayes import ComplementNB

    return ComplementNB(alpha=float(p["alpha"]))


def _torch_mlp(p: dict[str, Any], seed: int) -> Any:
    from crowdloop.learning.torch_mlp import TorchMLP, require_torch

    names = ("hidden", "epochs", "learning_rate", "weight_decay", "dropout")
    model = TorchMLP(**{name: p[name] for name in names}, random_state=seed)
    model.validate_params()  # a bad value is named whether or not torch is installed
    require_torch()
    return model


_BUILDERS = {"logreg": _logreg, "linear_svm": _linear_svm, "gboost": _gboost, "naive_bayes": _naive_bayes,
             "torch_mlp": _torch_mlp}  # fmt: skip


def suggest(trial: Any, family: str) -> dict[str, Any]:
    """Optuna's suggestion of ``family``'s parameters (log scales for strengths)."""
    if family == "logreg":
        return {"C": trial.suggest_float("logreg.C", 0.1, 30.0, log=True)}
    if family == "linear_svm":
        return {"C": trial.suggest_float("linear_svm.C", 0.01, 1.0, log=True)}
    if family == "naive_bayes":
        return {"alpha": trial.suggest_float("naive_bayes.alpha", 0.01, 3.0, log=True)}
    if family == "torch_mlp":
        return {
            "hidden": trial.suggest_int("torch_mlp.hidden", 16, 128, log=True),
            "epochs": trial.suggest_int("torch_mlp.epochs", 10, 30, log=True),
            "learning_rate": trial.suggest_float("torch_mlp.learning_rate", 0.01, 0.2, log=True),
            "weight_decay": trial.suggest_float("torch_mlp.weight_decay", 1e-6, 1e-3, log=True),
            "dropout": trial.suggest_float("torch_mlp.dropout", 0.0, 0.5),
        }
    return {
        "k": trial.suggest_int("gboost.k", 50, 400, log=True),
        "n_estimators": trial.suggest_int("gboost.n_estimators", 30, 120, log=True),
        "learning_rate": trial.suggest_float("gboost.learning_rate", 0.05, 0.3, log=True),
        "max_depth": trial.suggest_int("gboost.max_depth", 2, 3),
    }
