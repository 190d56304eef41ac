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

from crowdloop.learning.active import STRATEGIES, informativeness, select
from crowdloop.learning.crowd_model import CrowdModel
from crowdloop.learning.features import FeatureSpec, Featurizer
from crowdloop.learning.metrics import evaluate, evaluate_probas, expected_calibration_error
from crowdloop.learning.models import FAMILIES, build_estimator
from crowdloop.learning.text import Analyzer
from crowdloop.learning.train import TrainedModel, fit_model, soft_targets, train_model
from crowdloop.learning.tune import TuneResult, tune
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
