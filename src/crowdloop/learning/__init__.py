"""Learning from the crowd: features, training on soft labels, crowd-aware EM, search, active learning.

Pure functions and estimators: items (a DataFrame or records) and answers in, models and
DataFrames out; no database, no HTTP. The featurizer (:mod:`.text`, :mod:`.pairs`,
:mod:`.features`) needs only numpy and keeps its fitted state in JSON, so the edge
runtime computes the very same inputs for the ONNX export of a model's estimator::

    from crowdloop.learning import FeatureSpec, train_model, evaluate
    from crowdloop.quality import DefaultAggregator

    posteriors = DefaultAggregator().fit(answers).probas_
    model = train_model(items, posteriors, FeatureSpec.infer(items), family="logreg")
    evaluate(model, items, gold)              # accuracy, macro_f1, log_loss, ece, per_class
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crowdloop.learning.active import STRATEGIES, informativeness, select
    from crowdloop.learning.crowd_model import CrowdModel
    from crowdloop.learning.features import FeatureSpec, Featurizer
    from crowdloop.learning.metrics import evaluate, evaluate_probas, expected_calibration_error
    from crowdloop.learning.models import FAMILIES, build_estimator
    from crowdloop.learning.search import TuneResult, tune
    from crowdloop.learning.text import Analyzer
    from crowdloop.learning.train import TrainedModel, cross_val_probas, fit_model, soft_targets, train_model
    from crowdloop.learning.worker import model_as_worker

__all__ = [  # noqa: RUF022 - plain sorted()
    "Analyzer",
    "CrowdModel",
    "FAMILIES",
    "FeatureSpec",
    "Featurizer",
    "STRATEGIES",
    "TrainedModel",
    "TuneResult",
    "build_estimator",
    "cross_val_probas",
    "evaluate",
    "evaluate_probas",
    "expected_calibration_error",
    "fit_model",
    "informativeness",
    "model_as_worker",
    "select",
    "soft_targets",
    "train_model",
    "tune",
]

_LAZY = {
    "Analyzer": "crowdloop.learning.text",
    "CrowdModel": "crowdloop.learning.crowd_model",
    "FAMILIES": "crowdloop.learning.models",
    "FeatureSpec": "crowdloop.learning.features",
    "Featurizer": "crowdloop.learning.features",
    "STRATEGIES": "crowdloop.learning.active",
    "TrainedModel": "crowdloop.learning.train",
    "TuneResult": "crowdloop.learning.search",
    "build_estimator": "crowdloop.learning.models",
    "cross_val_probas": "crowdloop.learning.train",
    "evaluate": "crowdloop.learning.metrics",
    "evaluate_probas": "crowdloop.learning.metrics",
    "expected_calibration_error": "crowdloop.learning.metrics",
    "fit_model": "crowdloop.learning.train",
    "informativeness": "crowdloop.learning.active",
    "model_as_worker": "crowdloop.learning.worker",
    "select": "crowdloop.learning.active",
    "soft_targets": "crowdloop.learning.train",
    "train_model": "crowdloop.learning.train",
    "tune": "crowdloop.learning.search",
}


def __dir__() -> list[str]:
    """The public names too (they are imported on first use), for tab completion in a notebook."""
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> Any:
    """Import on first use (PEP 562): the edge runtime imports the numpy featurizer modules of this
    package without pulling in pandas, scipy and scikit-learn. (No submodule may share a name
    exported here: importing it would bind the module over the name.)"""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crowdloop.learning' has no attribute {name!r}")
