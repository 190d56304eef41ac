"""ONNX export: every model family's graph gives scikit-learn's probabilities within 1e-5 on
real product-matching items, and the edge's own featurisation equals the training featurizer's.

Float types: scikit-learn sees the featurizer's float32 sparse rows (as in training), the graph
the same values densely (float32; float64 for naive Bayes, see ``ONNX_INPUT_DTYPE``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crowdloop.deploy.edge_model import EdgeModel
from crowdloop.deploy.features import ItemFeatures
from crowdloop.deploy.onnx import EDGE_FILE, TOLERANCE, export_onnx, verify_export
from crowdloop.errors import InvalidInputError, InvalidParameterError, MissingColumnsError
from crowdloop.learning import FAMILIES, FeatureSpec, Featurizer, TrainedModel
from crowdloop.learning.features import Z_LIMIT
from crowdloop.learning.torch_mlp import torch_installed
from deploy.helpers import records
from support import require

pytestmark = pytest.mark.shared


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_exports_exactly(product, trained, tmp_path, family):
    if family == "torch_mlp":
        require(torch_installed(), "PyTorch is not installed (pip install 'crowdloop[torch]'): torch_mlp cannot train")
    _, evaluation, _ = product
    model = trained(family)
    folder = model.save(tmp_path / family)
    path = export_onnx(model, folder)
    assert path == folder / "model.onnx" and path.stat().st_size > 0
    manifest = json.loads((folder / EDGE_FILE).read_text())
    assert manifest["n_features"] == model.featurizer.n_features_ and manifest["family"] == family
    assert sorted(map(str, manifest["classes"])) == sorted(map(str, model.classes_))
    assert verify_export(model, folder, evaluation) < TOLERANCE


def test_export_refuses_what_it_cannot_convert(trained, tmp_path):
    from sklearn.semi_supervised import LabelSpreading

    model = trained("logreg")
    unknown = TrainedModel(model.featurizer, model.estimator, model.classes_, "random_forest", {})
    with pytest.raises(InvalidParameterError, match="unknown model family"):
        export_onnx(unknown, tmp_path / "unknown")
    unconvertible = TrainedModel(model.featurizer, LabelSpreading(), model.classes_, "logreg", {})
    with pytest.raises(InvalidInputError, match="cannot convert"):
        export_onnx(unconvertible, tmp_path / "unconvertible")
    assert not (tmp_path / "unconvertible" / "model.onnx").exists()


def test_single_item_rows_equal_the_featurizers(product, product_featurizer):
    _, evaluation, _ = product
    fast = ItemFeatures(product_featurizer)
    items = records(evaluation)
    rows = np.vstack([fast.row(item) for item in items])
    np.testing.assert_array_equal(rows, product_featurizer.transform_dense(evaluation))
    again = np.vstack([fast.row(item) for item in items])  # from the cache now
    np.testing.assert_array_equal(again, rows)
    buffer, cols = fast.fill(items[0])
    assert np.count_nonzero(buffer) == len(cols) > 0
    fast.clear(cols)
    assert np.count_nonzero(buffer) == 0
    with pytest.raises(MissingColumnsError, match=r"none of the fields the model reads, \['text', 'text_b'\]"):
        fast.row({"title": "another project's item"})


def test_a_field_the_item_lacks_is_read_as_the_server_reads_it(product, tmp_path):
    """A version reading a field its edge clients do not send yet (one added to the project):
    the edge refused every such request (422), where training and the server's scoring read the
    item with the field empty. The edge now predicts what the server's model predicts then."""
    from crowdloop.learning import train_model
    from crowdloop.learning.project_data import with_fields

    train, evaluation, gold = product
    brands = np.random.default_rng(0).choice(["acme", "zeta", "nova"], len(train))
    with_brand = train.assign(brand=brands)
    model = train_model(
        with_brand, gold, family="logreg", featurizer=Featurizer(FeatureSpec.infer(with_brand)).fit(with_brand)
    )
    assert "brand" in model.featurizer.spec.fields
    folder = model.save(tmp_path / "model")
    export_onnx(model, folder)
    edge = EdgeModel(folder, version=3)
    old_format = evaluation.head(50)  # text and text_b, no brand: what the clients send
    expected = model.predict_proba(with_fields(old_format, model.featurizer.spec))
    got = np.array(
        [[edge.predict(item).probabilities[str(c)] for c in expected.columns] for item in records(old_format)]
    )
    assert np.abs(got - expected.to_numpy()).max() < TOLERANCE
    one_side = {"task": 1, "text": "Sony KDL-40 LCD TV"}  # a pair item with one side missing, too
    frame = with_fields(pd.DataFrame([one_side]), model.featurizer.spec)
    assert frame["text_b"].tolist() == [""]
    probabilities = edge.predict(one_side).probabilities
    assert [probabilities[str(c)] for c in model.classes_] == pytest.approx(
        model.predict_proba(frame).iloc[0].tolist(), abs=TOLERANCE
    )


def test_single_item_rows_split_numbers_as_the_featurizer_does():
    """Numbers above and below the mean, missing and unreadable ones; and a featurizer saved before
    numbers were split (one signed column), which the edge must still read as it was trained."""
    items = [{"task": i, "text": f"w{i % 3} x", "price": v} for i, v in enumerate([1.0, -2.0, None, 5.0, "n/a", 0.5])]
    featurizer = Featurizer(FeatureSpec(text=("text",), numeric=("price",)), min_df=1).fit(items)
    older = featurizer.to_dict()
    del older["numeric_split"]
    older["feature_names"] = [n.removesuffix(":+") for n in older["feature_names"] if n != "price:-"]
    for fitted in (featurizer, Featurizer.from_dict(older)):
        rows = np.vstack([ItemFeatures(fitted).row(item) for item in items])
        np.testing.assert_array_equal(rows, fitted.transform_dense(items))
        assert (rows >= 0).all() == fitted.state.numeric_split  # the old signed column goes negative
    extreme = [{"task": 90 + i, "text": "w1 x", "price": v} for i, v in enumerate([1e308, -1e308, "1e300"])]
    rows = np.vstack([ItemFeatures(featurizer).row(item) for item in extreme])  # float32: 1e308 was inf
    np.testing.assert_array_equal(rows, featurizer.transform_dense(extreme))
    price = [featurizer.feature_names_.index(n) for n in ("price:+", "price:-")]
    assert np.isfinite(rows).all() and rows[:, price].tolist() == [[Z_LIMIT, 0], [0, Z_LIMIT], [Z_LIMIT, 0]]


def test_the_edge_answers_a_number_far_beyond_training_as_the_server_does(product, tmp_path):
    """1e308 made the edge's float32 row inf and its probabilities NaN."""
    from crowdloop.learning import train_model

    train, evaluation, gold = product
    priced = train.assign(price=np.random.default_rng(0).uniform(5, 500, len(train)).round(2))
    spec = FeatureSpec(pair=(("text", "text_b"),), numeric=("price",))
    model = train_model(priced, gold, family="logreg", featurizer=Featurizer(spec).fit(priced))
    folder = model.save(tmp_path / "model")
    export_onnx(model, folder)
    edge = EdgeModel(folder, version=1)
    extreme = evaluation.head(20).assign(price=[1e308, -1e308] * 10)
    expected = model.predict_proba(extreme)
    got = np.array([[edge.predict(item).probabilities[str(c)] for c in expected.columns] for item in records(extreme)])
    assert np.isfinite(got).all() and np.abs(got - expected.to_numpy()).max() < TOLERANCE


@pytest.mark.parametrize(
    "prices",
    [[0.1, 0.2, 0.3], [1e200, -1e200, 0.0], [1e308, 1e308, 5.0]],
    ids=["deviation under 1", "squares overflow", "sums overflow"],
)
def test_numbers_near_the_float_limit_give_finite_rows(prices):
    """Trained on small numbers, 1e308 was inf even in float64; trained on 1e200 the deviation was
    inf (every row 0), on 1e308 the mean too (every row NaN, on the server and on the edge)."""
    items = [{"task": i, "text": f"w{i} x", "price": v} for i, v in enumerate(prices)]
    featurizer = Featurizer(FeatureSpec(text=("text",), numeric=("price",)), min_df=1).fit(items)
    new = [*items, {"task": 9, "text": "w1 x", "price": 1e308}, {"task": 10, "text": "w1 x", "price": -1e308}]
    rows = np.vstack([ItemFeatures(featurizer).row(item) for item in new])
    np.testing.assert_array_equal(rows, featurizer.transform_dense(new))
    assert np.isfinite(rows).all()
    price = [featurizer.feature_names_.index(n) for n in ("price:+", "price:-")]
    signed = rows[:, price[0]] - rows[:, price[1]]
    assert len(set(signed[: len(prices)].tolist())) > 1  # the training values stay apart
    assert signed[-2] > 0 > signed[-1]


def test_the_row_cache_tells_1_from_1_0_and_true():
    """The cache was keyed on the values, and 1 == 1.0 == True in Python: a text field holding 1.0
    got the row of an earlier 1 (and a different prediction from a fresh edge)."""
    items = [{"task": i, "title": "the same", "code": v} for i, v in enumerate([1, 1.0, True, "1", 2])]
    featurizer = Featurizer(FeatureSpec(text=("title", "code")), min_df=1).fit(items)
    fast = ItemFeatures(featurizer)
    rows = np.vstack([fast.row(item) for item in items])  # each after the ones before are cached
    np.testing.assert_array_equal(rows, featurizer.transform_dense(items))
    assert not np.array_equal(rows[0], rows[1]) and not np.array_equal(rows[0], rows[2])


@pytest.mark.parametrize("family", ["logreg", "naive_bayes"])
def test_edge_model_predicts_what_scikit_learn_does(product, trained, tmp_path, family):
    _, evaluation, _ = product
    model = trained(family)
    folder = model.save(tmp_path / "model")
    export_onnx(model, folder)
    edge = EdgeModel(folder, version=7)
    expected = model.predict_proba(evaluation)
    predictions = [edge.predict(item) for item in records(evaluation)]
    got = np.array([[p.probabilities[str(c)] for c in expected.columns] for p in predictions])
    assert np.abs(got - expected.to_numpy()).max() < TOLERANCE
    assert [p.label for p in predictions] == model.predict(evaluation).tolist()
    assert all(p.version == 7 and p.confidence == max(p.probabilities.values()) for p in predictions)
    batch = edge.batch_probabilities(records(evaluation.head(20)))
    np.testing.assert_allclose(batch, got[:20], atol=TOLERANCE)
