"""Logistic regression trained on Spark, carried into scikit-learn, registered and exported.

One MLlib fit on 2,000 real product-matching items (``product``: pairs of product names,
soft labels from Dawid-Skene), shared by the module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdloop.errors import InvalidInputError
from crowdloop.learning import FeatureSpec, evaluate, train_model
from crowdloop.learning.hashing import HashedFeaturizer, load_featurizer
from crowdloop.learning.train import expand_soft
from crowdloop.quality import DawidSkene

pytestmark = [pytest.mark.spark, pytest.mark.shared]

N_ITEMS = 2_000
BUCKETS = 2**12
C = 10.0
MAX_ITER = 100


@pytest.fixture(scope="module")
def product(shared_dataset):
    data = shared_dataset("product")
    items = data.items.sample(N_ITEMS, random_state=0).reset_index(drop=True)
    answers = data.answers[data.answers["task"].isin(items["task"])]
    posteriors = DawidSkene().fit(answers).probas_
    return items, posteriors, data.gold.loc[items["task"]], FeatureSpec.infer(items)


@pytest.fixture(scope="module")
def training(spark, product):
    from crowdloop.scale.spark_train import fit_on_spark

    items, posteriors, _, spec = product
    run = fit_on_spark(spark, items, posteriors, spec, C=C, n_buckets=BUCKETS, max_iter=MAX_ITER, partitions=2)
    yield run
    run.unpersist()


QUICK = {"n_buckets": 2**10, "max_iter": 5, "partitions": 2}
"""Options for the runs that must be refused: they never reach MLlib's iterations."""


def _spark_probabilities(spark, training, items, spec):
    from crowdloop.scale.spark_features import featurize, items_frame

    rows = featurize(items_frame(spark, items, spec), training.model.featurizer, keep=(spec.id_column,))
    out = training.spark_model.transform(rows).select(spec.id_column, "probability").toPandas()
    return pd.DataFrame(np.stack([v.toArray() for v in out["probability"]]), index=out[spec.id_column])


def test_featurizer_fitted_on_spark_equals_one_machine_fit(training, product):
    items, _, _, spec = product
    assert training.model.featurizer.to_dict() == HashedFeaturizer(spec, n_buckets=BUCKETS).fit(items).to_dict()


def test_carried_sklearn_probabilities_equal_spark_probability_column(spark, training, product):
    items, _, _, spec = product
    spark_probas = _spark_probabilities(spark, training, items, spec)
    carried = training.model.predict_proba(items).loc[spark_probas.index]
    assert list(carried.columns) == [0, 1] and carried.shape == (N_ITEMS, 2)
    assert np.abs(carried.to_numpy() - spark_probas.to_numpy()).max() < 1e-6


def _training_set(model, items, posteriors):
    X = model.featurizer.transform(items.set_index("task").loc[posteriors.index].reset_index())
    rows, y, weight = expand_soft(posteriors.to_numpy())
    return X[rows], y, weight


def test_reg_param_maps_to_sklearn_c(training, product):
    """At Spark's coefficients, scikit-learn's objective with the mapped C is Spark's objective x C W.

    That identity holds at every iterate (MLlib keeps its two rows symmetric), so it checks the
    mapping whether or not L-BFGS has converged (with C = 10 and 100 iterations it has not: a
    tight scikit-learn fit lands elsewhere, so comparing optima would test convergence). Up to
    pyspark 4.2 the last entry of ``objectiveHistory`` is the final coefficients' objective; from
    4.3 it is the iterate before them, so the final objective lies between that entry less one
    more step (L-BFGS steps shrink) and the entry itself. A wrong C moves the penalty's share,
    far outside that band (the last step is about 2e-3 of the objective).
    """
    from crowdloop.scale.spark_train import c_for_reg_param, reg_param_for

    items, posteriors, _, _ = product
    model, total = training.model, training.model.metadata["total_weight"]
    assert model.params["reg_param"] == pytest.approx(reg_param_for(C, total, 2))
    assert c_for_reg_param(model.params["reg_param"], total, 2) == pytest.approx(C)
    X, y, weight = _training_set(model, items, posteriors)
    p = model.estimator.predict_proba(X)[np.arange(len(y)), y]
    sklearn_objective = C * -(weight * np.log(p)).sum() + 0.5 * (model.estimator.coef_**2).sum()
    history = training.spark_model.summary.objectiveHistory
    last_step = history[-2] - history[-1]
    assert 0 <= last_step < 1e-2 * history[-1]
    assert history[-1] - last_step <= sklearn_objective / (C * total) <= history[-1] * (1 + 1e-6)


def test_accuracy_is_comparable_to_local_train_model(training, product):
    items, posteriors, gold, spec = product
    spark_metrics = evaluate(training.model, items, gold)
    local_metrics = evaluate(train_model(items, posteriors, spec, params={"C": C}), items, gold)
    print(f"accuracy on gold: spark hashed {spark_metrics['accuracy']:.4f}, local {local_metrics['accuracy']:.4f}")
    assert spark_metrics["accuracy"] > 0.9
    assert spark_metrics["accuracy"] >= local_metrics["accuracy"] - 0.03


def test_long_spark_labels_give_the_pandas_rows(spark, product):
    from crowdloop.scale.spark_train import label_rows

    _, posteriors, _, _ = product
    long = posteriors.rename_axis("task").reset_index().melt(id_vars="task", var_name="label", value_name="weight")
    from_pandas, classes = label_rows(spark, posteriors, "task")
    from_spark, spark_classes = label_rows(spark, spark.createDataFrame(long), "task")
    assert spark_classes == classes == [0, 1]
    frames = [f.toPandas().sort_values(["task", "_class"]).reset_index(drop=True) for f in (from_pandas, from_spark)]
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=False, rtol=1e-12)


def test_registered_in_sqlite_and_exported_to_onnx(training, product, tmp_path):
    from crowdloop.learning.registry import artifact_dir, list_versions
    from crowdloop.scale.spark_train import FAMILY, register_spark_model
    from crowdloop.storage.db import make_engine, session_factory, unit_of_work
    from crowdloop.storage.migrate import upgrade
    from crowdloop.storage.models import Project, User

    items, _, gold, _ = product
    engine = make_engine(f"sqlite:///{tmp_path / 'crowdloop.db'}", pool_size=2)
    upgrade(engine)
    metrics = {k: v for k, v in evaluate(training.model, items, gold).items() if k != "per_class"}
    with unit_of_work(session_factory(engine)) as session:
        owner = User(name="spark-owner", role="requester")
        session.add(owner)
        session.flush()
        project = Project(owner_id=owner.id, name="products", labels=[0, 1])
        session.add(project)
        session.flush()
        version = register_spark_model(session, project, training.model, tmp_path / "registry", metrics=metrics)
        project_id = project.id
    with unit_of_work(session_factory(engine)) as session:
        (stored,) = list_versions(session, project_id)
        folder = artifact_dir(tmp_path / "registry", stored)
    engine.dispose()
    assert (stored.version, stored.family, version.family) == (1, FAMILY, FAMILY)
    assert stored.lineage["trainer"] == "spark" and stored.lineage["spark"]["iterations"] > 0
    assert stored.params["reg_param"] > 0 and stored.metrics["accuracy"] == metrics["accuracy"]
    import json

    featurizer = load_featurizer(json.loads((folder / "features.json").read_text()))
    head = items.head(50)
    np.testing.assert_array_equal(featurizer.transform_dense(head), training.model.featurizer.transform_dense(head))
    _check_onnx(training.model, folder, items.head(200))


def _check_onnx(model, folder, items):
    onnx = pytest.importorskip("crowdloop.deploy.onnx", reason="crowdloop.deploy.onnx not available")
    pytest.importorskip("skl2onnx")
    pytest.importorskip("onnxruntime")
    onnx.export_onnx(model, folder)
    assert onnx.verify_export(model, folder, items) < 1e-5


def test_labeled_items_of_one_class_are_refused_as_locally(spark, product):
    """The second class only on a task with no item: the label set had two classes, the joined
    rows one, and MLlib fitted a one-class model whose every prediction raised."""
    from crowdloop.scale.spark_train import fit_on_spark

    items, _, _, spec = product
    labels = pd.Series("0", index=items["task"])
    labels.loc["not-an-item"] = "1"
    with pytest.raises(InvalidInputError, match="training needs at least two classes with some weight"):
        train_model(items, labels, spec)
    with pytest.raises(InvalidInputError, match="training needs at least two classes with some weight"):
        fit_on_spark(spark, items, labels, spec, **QUICK)


@pytest.mark.parametrize("problem", ["duplicate", "missing"])
def test_item_ids_are_each_present_and_once_as_locally(spark, product, problem):
    """Items listed twice were trained on twice (labels joined to both rows); a null id silently
    matched no label."""
    from crowdloop.scale.spark_train import fit_on_spark

    items, posteriors, _, spec = product
    if problem == "duplicate":
        bad, message = pd.concat([items, items.head(3)], ignore_index=True), "names more than one item; one each"
    else:
        bad, message = items.astype({"task": object}), "1 item\\(s\\) have no 'task'"
        bad.loc[5, "task"] = None
    with pytest.raises(InvalidInputError, match=message):
        train_model(bad, posteriors, spec)
    with pytest.raises(InvalidInputError, match=message):
        fit_on_spark(spark, bad, posteriors, spec, **QUICK)
