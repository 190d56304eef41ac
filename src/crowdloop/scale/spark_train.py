"""Logistic regression on Spark MLlib, carried into scikit-learn so it deploys like any model.

For label sets too large for one machine. Items are featurised per partition by the edge's
own hashed featurizer (:mod:`.spark_features`); soft labels enter as weighted rows, as in
:mod:`crowdloop.learning.train`: item :math:`i` with posterior :math:`q_{ik} > 0.01` gives
one row per class :math:`k` of weight :math:`q_{ik}`. MLlib's multinomial
``LogisticRegression`` (``standardization=False``) then minimises

.. math::
    \\frac{1}{W} \\sum_i w_i \\ell(\\beta; x_i, y_i) + \\frac{\\lambda}{2} \\sum_k \\|\\beta_k\\|^2,
    \\qquad W = \\sum_i w_i,

while scikit-learn minimises :math:`C \\sum_i w_i \\ell + \\frac12 \\|\\beta\\|^2`: the same
optimum when :math:`C = 1/(\\lambda W)`. With two classes scikit-learn keeps one row
:math:`\\beta_1 - \\beta_0` and MLlib two symmetric ones (:math:`\\beta_0 = -\\beta_1` at
the optimum), so there :math:`C = 2/(\\lambda W)` (:func:`reg_param_for`).

The fitted coefficients and intercepts go into a scikit-learn ``LogisticRegression``
(:func:`carry_to_sklearn`); :class:`~crowdloop.learning.train.TrainedModel`,
:func:`~crowdloop.deploy.onnx.export_onnx` and the edge then treat it as a ``logreg``.

Example (needs Java)::

    model = train_on_spark(spark, "items.parquet", DawidSkene().fit(answers).probas_, spec, C=10.0)
    register_spark_model(session, project, model, registry_dir, metrics=evaluate(model, items, gold))
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as sf

from crowdloop.errors import InvalidInputError, InvalidParameterError, MissingColumnsError
from crowdloop.learning.features import FeatureSpec
from crowdloop.learning.hashing import DEFAULT_BUCKETS, HashedFeaturizer
from crowdloop.learning.registry import register_version
from crowdloop.learning.text import Analyzer
from crowdloop.learning.train import MIN_WEIGHT, TrainedModel, expand_soft, soft_targets
from crowdloop.scale.spark_features import ItemsSource, featurize, fit_featurizer, items_frame

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from crowdloop.storage.models import ModelVersion, Project

FAMILY = "spark_logreg"
"""The registry's family name of these models (their estimator is a plain ``logreg``)."""

SoftLabels = pd.Series | pd.DataFrame | DataFrame
"""Hard labels, a task x class posterior frame, or a Spark frame ``task, label, weight``."""


def reg_param_for(C: float, total_weight: float, n_classes: int) -> float:
    """MLlib's ``regParam`` giving scikit-learn's optimum for ``C`` (see the module docstring)."""
    if C <= 0 or total_weight <= 0:
        raise InvalidParameterError(f"C and the total weight must be positive; got C={C}, weight={total_weight}.")
    return (2.0 if n_classes == 2 else 1.0) / (C * total_weight)


def c_for_reg_param(reg_param: float, total_weight: float, n_classes: int) -> float:
    """scikit-learn's ``C`` for MLlib's ``regParam``: the inverse of :func:`reg_param_for`."""
    return (2.0 if n_classes == 2 else 1.0) / (reg_param * total_weight)


def _pandas_labels(
    spark: SparkSession, labels: pd.Series | pd.DataFrame, id_column: str
) -> tuple[DataFrame, list[Any]]:
    targets = soft_targets(labels)
    rows, codes, weight = expand_soft(targets.to_numpy())
    frame = pd.DataFrame(
        {id_column: targets.index.to_numpy()[rows], "_class": codes.astype(np.float64), "_weight": weight}
    )
    return spark.createDataFrame(frame), list(targets.columns)


def _spark_labels(frame: DataFrame, id_column: str) -> tuple[DataFrame, list[Any]]:
    """Long ``task, label, weight`` rows: weights normalised per task, classes sorted."""
    missing = [c for c in ("task", "label", "weight") if c not in frame.columns]
    if missing:
        raise MissingColumnsError(f"soft labels lack column(s) {missing}; they have {frame.columns}.")
    classes = sorted(row["label"] for row in frame.select("label").distinct().collect())
    codes = frame.sparkSession.createDataFrame(
        pd.DataFrame({"label": classes, "_class": np.arange(len(classes), dtype=np.float64)})
    )
    total = sf.sum("weight").over(Window.partitionBy("task"))
    weighted = frame.withColumn("_weight", sf.col("weight") / total).where(sf.col("_weight") > MIN_WEIGHT)
    rows = weighted.join(sf.broadcast(codes), "label").select(sf.col("task").alias(id_column), "_class", "_weight")
    return rows, classes


def label_rows(spark: SparkSession, labels: SoftLabels, id_column: str) -> tuple[DataFrame, list[Any]]:
    """Weighted rows ``<id>, _class, _weight`` and the class of each code."""
    if isinstance(labels, pd.Series | pd.DataFrame):
        return _pandas_labels(spark, labels, id_column)
    return _spark_labels(labels, id_column)


def fit_logreg(
    rows: DataFrame, n_classes: int, C: float, max_iter: int = 200, tol: float = 1e-8
) -> tuple[LogisticRegressionModel, float, float]:
    """MLlib's multinomial logistic regression on weighted rows; also ``regParam`` and the total weight."""
    total = float(rows.agg(sf.sum("_weight")).first()[0] or 0.0)  # type: ignore[index]
    reg_param = reg_param_for(C, total, n_classes)
    trainer = LogisticRegression(
        featuresCol="features",
        labelCol="_class",
        weightCol="_weight",
        family="multinomial",
        regParam=reg_param,
        elasticNetParam=0.0,
        standardization=False,
        fitIntercept=True,
        maxIter=max_iter,
        tol=tol,
    )
    return trainer.fit(rows), reg_param, total


def carry_to_sklearn(spark_model: LogisticRegressionModel, C: float) -> Any:
    """A fitted scikit-learn ``LogisticRegression`` (over class codes) with MLlib's coefficients."""
    from sklearn.linear_model import LogisticRegression as SkLogisticRegression

    coef = np.asarray(spark_model.coefficientMatrix.toArray(), dtype=np.float64)
    intercept = np.asarray(spark_model.interceptVector.toArray(), dtype=np.float64)
    if coef.shape[0] == 2:  # softmax of two margins = sigmoid of their difference
        coef, intercept = (coef[1] - coef[0])[None, :], intercept[1:] - intercept[:1]
    estimator = SkLogisticRegression(C=C, max_iter=spark_model.getMaxIter(), tol=spark_model.getTol())
    estimator.coef_, estimator.intercept_ = coef, intercept
    estimator.classes_ = np.arange(spark_model.numClasses)
    estimator.n_features_in_ = coef.shape[1]
    estimator.n_iter_ = np.array([spark_model.summary.totalIterations], dtype=np.int32)
    return estimator


@dataclass
class SparkTraining:
    """The carried model and what produced it: MLlib's model and the cached training rows."""

    model: TrainedModel
    spark_model: LogisticRegressionModel
    rows: DataFrame

    def unpersist(self) -> None:
        self.rows.unpersist()


def _training_rows(frame: DataFrame, labels: DataFrame, featurizer: HashedFeaturizer, partitions: int) -> DataFrame:
    """Features of every labeled item, one row per weighted class, cached for the iterations."""
    id_column = featurizer.spec.id_column
    joined = frame.join(labels, id_column).repartition(partitions)
    rows = featurize(joined, featurizer, keep=(id_column, "_class", "_weight"))
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        _check_classes(rows, id_column)
    except Exception:
        rows.unpersist()
        raise
    return rows


def _check_classes(rows: DataFrame, id_column: str) -> None:
    """Two classes must carry weight among the labeled *items* (the count also fills the cache).

    Checked on the labels alone, a class whose tasks have no item passed, and MLlib fitted one
    class: a model whose every prediction failed.
    """
    counts = rows.agg(sf.count(sf.lit(1)).alias("rows"), sf.countDistinct("_class").alias("classes")).collect()[0]
    if counts["rows"] == 0:
        raise InvalidInputError(f"no labeled task matches an item's {id_column!r}.")
    if counts["classes"] < 2:
        raise InvalidInputError(
            f"training needs at least two classes with some weight; the labeled items carry {counts['classes']}."
        )


def fit_on_spark(
    spark: SparkSession,
    items: ItemsSource,
    soft_labels: SoftLabels,
    spec: FeatureSpec,
    *,
    C: float = 10.0,
    n_buckets: int = DEFAULT_BUCKETS,
    analyzer: Analyzer | None = None,
    max_iter: int = 200,
    tol: float = 1e-8,
    partitions: int | None = None,
) -> SparkTraining:
    """:func:`train_on_spark`, keeping MLlib's model and the cached rows (unpersist them after)."""
    frame = items_frame(spark, items, spec)
    featurizer = fit_featurizer(frame, spec, n_buckets, analyzer)
    labels, classes = label_rows(spark, soft_labels, spec.id_column)
    if len(classes) < 2:
        raise InvalidInputError("training needs at least two classes with some weight.")
    rows = _training_rows(frame, labels, featurizer, partitions or spark.sparkContext.defaultParallelism)
    spark_model, reg_param, total = fit_logreg(rows, len(classes), C, max_iter, tol)
    params = {"C": C, "reg_param": reg_param, "n_buckets": n_buckets, "max_iter": max_iter, "tol": tol}
    metadata = {"trainer": "spark", "spark_version": spark.version, "total_weight": total}
    metadata["iterations"] = spark_model.summary.totalIterations
    model = TrainedModel(featurizer, carry_to_sklearn(spark_model, C), classes, "logreg", params, metadata)
    return SparkTraining(model, spark_model, rows)


def train_on_spark(
    spark: SparkSession,
    items: ItemsSource,
    soft_labels: SoftLabels,
    spec: FeatureSpec,
    **options: Any,
) -> TrainedModel:
    """Train a hashed-feature logistic regression on Spark; return it as a scikit-learn model.

    ``items``: a Spark DataFrame, Parquet path or pandas frame with ``spec``'s id column
    and (text or pair) fields. ``soft_labels``: posteriors (``aggregator.probas_``), hard
    labels, or a Spark frame ``task, label, weight``. Options: ``C`` (scikit-learn's
    inverse regularisation, default 10 as the local ``logreg``), ``n_buckets``,
    ``analyzer``, ``max_iter``, ``tol``, ``partitions``.
    """
    training = fit_on_spark(spark, items, soft_labels, spec, **options)
    training.unpersist()
    return training.model


def register_spark_model(
    session: Session,
    project: Project,
    model: TrainedModel,
    registry_dir: Path,
    *,
    metrics: dict[str, Any],
    lineage: dict[str, Any] | None = None,
    created_by: int | None = None,
) -> ModelVersion:
    """Save ``model`` and register it as the project's next version, family ``spark_logreg``."""
    trained = {key: model.metadata.get(key) for key in ("spark_version", "total_weight", "iterations")}
    spark_lineage = {**(lineage or {}), "trainer": "spark", "features": "hashed", "spark": trained}
    with tempfile.TemporaryDirectory(prefix="crowdloop-spark-model-") as folder:
        source = model.save(Path(folder) / "model")
        return register_version(
            session,
            project,
            source,
            registry_dir,
            family=FAMILY,
            params=model.params,
            metrics=metrics,
            lineage=spark_lineage,
            created_by=created_by,
        )
