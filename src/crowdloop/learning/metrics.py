"""Metrics of a model's probabilities against gold labels.

For gold tasks :math:`i = 1..n` with true class :math:`y_i`, predicted probabilities
:math:`p_i` and prediction :math:`\\hat y_i = \\arg\\max_k p_{ik}`:

* accuracy :math:`\\frac1n \\sum_i [\\hat y_i = y_i]`; macro-F1 the unweighted mean of
  per-class :math:`F_1 = 2PR/(P+R)`;
* log-loss :math:`-\\frac1n \\sum_i \\log p_{i y_i}` (probabilities clipped at 1e-15);
* expected calibration error (Guo et al., *On Calibration of Modern Neural Networks*,
  ICML 2017) over ``bins`` equal-width bins of confidence :math:`c_i = \\max_k p_{ik}`:
  :math:`\\mathrm{ECE} = \\sum_b \\frac{|B_b|}{n} |\\mathrm{acc}(B_b) - \\mathrm{conf}(B_b)|`.

Example:
    >>> import pandas as pd
    >>> probas = pd.DataFrame({"a": [0.9, 0.2], "b": [0.1, 0.8]}, index=["t1", "t2"])
    >>> evaluate_probas(probas, pd.Series({"t1": "a", "t2": "b"}))["accuracy"]
    1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from crowdloop.errors import EmptyInputError, InvalidInputError, InvalidParameterError
from crowdloop.learning.features import Items, column
from crowdloop.quality._data import gold_series


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE of confidences against 0/1 correctness, equal-width bins on [0, 1]."""
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.bincount(which, weights=correct - confidence, minlength=bins)
    return float(np.abs(gap).sum() / max(count.sum(), 1))


def _per_class(truth: np.ndarray, predicted: np.ndarray, classes: list[Any]) -> dict[str, dict[str, float]]:
    table = {}
    for k in range(len(classes)):
        hit = float(np.sum((predicted == k) & (truth == k)))
        precision = hit / max(int(np.sum(predicted == k)), 1)
        recall = hit / max(int(np.sum(truth == k)), 1)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table[str(classes[k])] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(np.sum(truth == k)),
        }
    return table


def _gold_codes(probas: pd.DataFrame, gold: Any) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Rows of the gold tasks in ``probas``, their true class codes, and the classes: ``probas``'
    columns, then any gold class the model does not know (it can never predict one, so those
    items count as wrong, not as missing)."""
    truth = gold_series(gold)
    truth = truth[truth.index.isin(probas.index)]
    if truth.empty:
        raise EmptyInputError("no gold task has a prediction.")
    names = [str(c) for c in probas.columns]
    unknown = sorted({str(v) for v in truth.to_numpy()} - set(names))
    classes = [*probas.columns, *unknown]
    codes = np.array([(names + unknown).index(str(v)) for v in truth.to_numpy()])
    return probas.index.get_indexer(truth.index), codes, classes


def evaluate_probas(probas: pd.DataFrame, gold: Any, bins: int = 15) -> dict[str, Any]:
    """Accuracy, macro-F1, log-loss, ECE and per-class scores of ``probas`` on ``gold``.

    Macro-F1 averages over the classes that are in the gold or predicted (as scikit-learn's
    ``f1_score`` does): a class the model predicts that no gold item has scores 0.
    """
    if bins < 1:
        raise InvalidParameterError(f"bins must be at least 1; got {bins}.")
    rows, truth, classes = _gold_codes(probas, gold)
    if not np.isfinite(probas.to_numpy(dtype=np.float64)[rows]).all():
        raise InvalidInputError("some gold task's probabilities are missing or infinite.")
    p = np.zeros((len(rows), len(classes)))
    p[:, : probas.shape[1]] = probas.to_numpy(dtype=np.float64)[rows]
    predicted = p.argmax(axis=1)
    correct = (predicted == truth).astype(np.float64)
    per_class = _per_class(truth, predicted, classes)
    present = set(truth.tolist()) | set(predicted.tolist())
    return {
        "n": len(truth),
        "accuracy": float(correct.mean()),
        "macro_f1": float(np.mean([c["f1"] for k, c in enumerate(per_class.values()) if k in present])),
        "log_loss": float(-np.mean(np.log(np.clip(p[np.arange(len(truth)), truth], 1e-15, 1.0)))),
        "ece": expected_calibration_error(p.max(axis=1), correct, bins),
        "per_class": per_class,
    }


def evaluate(model: Any, items: Items, gold: Any, bins: int = 15) -> dict[str, Any]:
    """:func:`evaluate_probas` of ``model.predict_proba`` on the items that have gold.

    ``model`` is a :class:`~crowdloop.learning.TrainedModel`, or what holds one: a fitted
    :class:`~crowdloop.learning.CrowdModel` (its ``model_``) or a :class:`~crowdloop.learning.TuneResult`.
    """
    model = getattr(model, "model_", None) or getattr(model, "model", None) or model
    if not hasattr(model, "featurizer"):
        raise InvalidInputError(f"evaluate needs a trained model; got {type(model).__name__}.")
    truth = gold_series(gold)
    ids = column(items, model.featurizer.spec.id_column)
    keep = [i for i, task in enumerate(ids) if task in truth.index]
    if not keep:
        raise EmptyInputError("no item has a gold label.")
    subset = items.iloc[keep] if hasattr(items, "iloc") else [items[i] for i in keep]
    return evaluate_probas(model.predict_proba(subset), truth, bins)
