"""``torch_mlp``, the optional PyTorch family: trained on the bundled product-matching crowd's soft
labels it is as accurate as logistic regression; seeded; exported to ONNX exactly; and a fitted
one predicts, loads and exports where torch cannot be imported. Without torch, asking for it is
a clear error (those two tests run in a subprocess that blocks ``import torch``)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from crowdloop.datasets import load_dataset
from crowdloop.deploy.onnx import TOLERANCE, export_onnx, verify_export
from crowdloop.errors import InvalidParameterError
from crowdloop.learning import FeatureSpec, Featurizer, evaluate, train_model
from crowdloop.learning.torch_mlp import torch_installed
from crowdloop.quality import DawidSkene
from support import require

NO_TORCH = textwrap.dedent("""
    import sys
    class NoTorch:  # `import torch` fails, as where it is not installed
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}")
    sys.meta_path.insert(0, NoTorch())
""")


@pytest.fixture(scope="module")
def product_halves():
    """Train on the crowd's Dawid-Skene posteriors for 2,000 pairs; score 2,000 others against gold."""
    require(torch_installed(), "PyTorch is not installed (pip install 'crowdloop[torch]'): torch_mlp cannot train")
    data = load_dataset("product")
    items = data.items.sample(4000, random_state=0).reset_index(drop=True)
    train, test = items.iloc[:2000].reset_index(drop=True), items.iloc[2000:].reset_index(drop=True)
    answers = data.answers[data.answers["task"].isin(train["task"])]
    featurizer = Featurizer(FeatureSpec.infer(items)).fit(items)
    return train, test, DawidSkene().fit(answers).probas_, featurizer, data.gold


@pytest.fixture(scope="module")
def mlp(product_halves):
    train, _, posteriors, featurizer, _ = product_halves
    return train_model(train, posteriors, featurizer=featurizer, family="torch_mlp", random_state=3)


def test_it_learns_product_matching_from_crowd_labels_as_well_as_logistic_regression(product_halves, mlp):
    train, test, posteriors, featurizer, gold = product_halves
    ours = evaluate(mlp, test, gold)
    linear = evaluate(train_model(train, posteriors, featurizer=featurizer, family="logreg"), test, gold)
    no_match_share = float((gold.loc[test["task"]].astype(str) == "0").mean())
    assert ours["accuracy"] >= linear["accuracy"] - 0.01, (ours, linear)
    assert ours["accuracy"] > no_match_share + 0.03 and ours["per_class"]["1"]["f1"] > 0.6, ours


def test_a_seed_gives_the_same_network(product_halves, mlp):
    train, _, posteriors, featurizer, _ = product_halves
    again = train_model(train, posteriors, featurizer=featurizer, family="torch_mlp", random_state=3)
    for ours, theirs in zip(mlp.estimator.coefs_ + mlp.estimator.intercepts_,
                            again.estimator.coefs_ + again.estimator.intercepts_, strict=True):  # fmt: skip
        np.testing.assert_array_equal(ours, theirs)
    other = train_model(train, posteriors, featurizer=featurizer, family="torch_mlp", random_state=4)
    assert not np.array_equal(other.estimator.coefs_[1], mlp.estimator.coefs_[1])
    _, test, _, _, gold = product_halves  # another seed is another network, not a worse one
    assert abs(evaluate(other, test, gold)["accuracy"] - evaluate(mlp, test, gold)["accuracy"]) < 0.015


def test_a_saved_network_predicts_and_exports_to_onnx_without_torch(product_halves, mlp, tmp_path):
    _, test, _, _, _ = product_halves
    folder = mlp.save(tmp_path / "mlp")
    export_onnx(mlp, folder)
    assert verify_export(mlp, folder, test.head(300)) < TOLERANCE
    expected = mlp.predict_proba(test.head(50)).to_numpy()
    np.save(tmp_path / "expected.npy", expected)
    test.head(50).to_pickle(tmp_path / "items.pkl")
    script = NO_TORCH + textwrap.dedent(f"""
        import numpy as np, pandas as pd
        from crowdloop.deploy.onnx import export_onnx, onnx_probabilities
        from crowdloop.learning import TrainedModel
        model = TrainedModel.load({str(folder)!r})
        items = pd.read_pickle({str(tmp_path / "items.pkl")!r})
        got = model.predict_proba(items).to_numpy()
        np.testing.assert_allclose(got, np.load({str(tmp_path / "expected.npy")!r}), atol=1e-6)
        export_onnx(model, {str(tmp_path / "again")!r})
        served = onnx_probabilities({str(tmp_path / "again")!r}, model.featurizer.transform_dense(items))
        np.testing.assert_allclose(served, got, atol=1e-5)
        print("ok without torch")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ok without torch" in done.stdout, done.stderr


def test_without_torch_asking_for_it_says_how_to_install_it():
    script = NO_TORCH + textwrap.dedent("""
        from crowdloop.errors import InvalidParameterError
        from crowdloop.learning.models import build_estimator
        from crowdloop.learning.service import TrainOptions
        for ask in (lambda: build_estimator("torch_mlp"), lambda: TrainOptions(family="torch_mlp").check()):
            try:
                ask()
            except InvalidParameterError as error:
                print(error)
        build_estimator("logreg")  # the scikit-learn families need no torch
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all("needs PyTorch" in line and "crowdloop[torch]" in line for line in lines), lines


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hidden": 0}, "'hidden' must be an int in [1, inf); got 0"),
        ({"dropout": 1.0}, "'dropout' must be a float in [0, 1); got 1.0"),
        ({"learning_rate": 0.0}, "'learning_rate' must be a float in (0, inf)"),
        ({"epochs": 2.5}, "parameter 'epochs' must be a whole number; got 2.5"),
        ({"hidden": "32"}, "parameter 'hidden' must be a whole number; got '32'"),
    ],
)
def test_a_bad_parameter_is_named_before_any_training(params, message):
    """Checked before torch is even needed, so the message is the same with or without it."""
    texts = ["a cheap red phone", "a blue phone case", "red phone", "phone case"]
    items = pd.DataFrame({"task": ["t1", "t2", "t3", "t4"], "text": texts})
    targets = pd.DataFrame({"no": [1.0, 0.0, 1.0, 0.0], "yes": [0.0, 1.0, 0.0, 1.0]}, index=items["task"])
    featurizer = Featurizer(FeatureSpec(text=("text",)), min_df=1).fit(items)
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        train_model(items, targets, featurizer=featurizer, family="torch_mlp", params=params)
