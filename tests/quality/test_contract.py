"""The estimator contract, checked over every aggregator (the scikit-learn way)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdloop.datasets import load_dataset
from crowdloop.errors import InvalidParameterError, NotFittedError
from crowdloop.quality import CATEGORICAL_METHODS, NUMERIC_METHODS, get_aggregator
from crowdloop.sim import synthetic_answers

CATEGORICAL = sorted(CATEGORICAL_METHODS)
NUMERIC = sorted(NUMERIC_METHODS)


@pytest.fixture(scope="module")
def crowd():
    return synthetic_answers(n_tasks=300, n_workers=30, n_classes=3, overlap=5, random_state=1)


@pytest.mark.parametrize("name", CATEGORICAL)
def test_fit_returns_self_and_fitted_attributes(name, crowd):
    model = get_aggregator(name)
    assert model.fit(crowd.answers) is model
    tasks = pd.Index(crowd.answers["task"].unique())
    assert model.labels_.index.equals(tasks)
    assert list(model.probas_.columns) == [0, 1, 2]
    np.testing.assert_allclose(model.probas_.sum(axis=1), 1.0, atol=1e-9)
    assert (model.probas_.to_numpy() >= 0).all()
    # labels_ is the most probable class of probas_
    assert (model.probas_.idxmax(axis=1) == model.labels_).all()
    assert model.skills_.index.isin(crowd.answers["worker"]).all()


@pytest.mark.parametrize("name", CATEGORICAL)
def test_learns_better_than_chance(name, crowd):
    model = get_aggregator(name).fit(crowd.answers)
    accuracy = (model.labels_.sort_index() == crowd.gold.sort_index()).mean()
    assert accuracy > 0.8, f"{name}: {accuracy}"


@pytest.mark.parametrize("name", CATEGORICAL + NUMERIC)
def test_not_fitted_error_names_the_attribute(name):
    model = get_aggregator(name)
    with pytest.raises(NotFittedError, match="labels_"):
        _ = model.labels_
    with pytest.raises(AttributeError):  # NotFittedError is an AttributeError: hasattr works
        _ = model.probas_
    assert not hasattr(model, "labels_")


@pytest.mark.parametrize("name", CATEGORICAL)
def test_deterministic(name, crowd):
    first = get_aggregator(name).fit(crowd.answers).probas_
    second = get_aggregator(name).fit(crowd.answers).probas_
    pd.testing.assert_frame_equal(first, second)


@pytest.mark.parametrize("name", CATEGORICAL)
@pytest.mark.parametrize("dataset", ["cf", "ms"])
def test_row_order_does_not_matter(name, dataset):
    """The same answers in another order give the same posteriors: a re-exported file must
    not move a label (MACE's random start once followed the order workers first appear in)."""
    answers = load_dataset(dataset).answers
    first = get_aggregator(name).fit(answers).probas_
    for seed in range(3):
        shuffled = get_aggregator(name).fit(answers.sample(frac=1.0, random_state=seed)).probas_
        pd.testing.assert_frame_equal(shuffled.loc[first.index], first, check_exact=False, atol=1e-9)


@pytest.mark.parametrize("name", CATEGORICAL)
def test_string_and_int_labels_agree(name, crowd):
    names = np.array(["ant", "bee", "cat"])
    as_text = crowd.answers.assign(label=names[crowd.answers["label"]])
    by_int = get_aggregator(name).fit(crowd.answers).labels_
    by_text = get_aggregator(name).fit(as_text).labels_
    assert list(by_text) == list(names[by_int.to_numpy()])


@pytest.mark.parametrize("name", CATEGORICAL)
def test_gold_clamps_known_tasks(name):
    # Two workers say 0 on task t0 but gold says 1: the posterior follows gold.
    answers = pd.DataFrame(
        {
            "task": ["t0", "t0", "t1", "t1", "t2", "t2", "t3"],
            "worker": ["a", "b", "a", "b", "a", "c", "c"],
            "label": [0, 0, 1, 1, 0, 0, 1],
        }
    )
    model = get_aggregator(name).fit(answers, gold=pd.Series({"t0": 1}))
    assert model.labels_["t0"] == 1
    assert model.probas_.loc["t0", 1] == pytest.approx(1.0)


@pytest.mark.parametrize("name", CATEGORICAL)
def test_gold_improves_worker_estimates(name):
    # A crowd where the majority is usually wrong: gold should correct what the model believes.
    crowd = synthetic_answers(n_tasks=400, n_workers=20, n_classes=2, overlap=3, spammer_share=0.6, random_state=3)
    known = crowd.gold.iloc[:200]
    rest = crowd.gold.index[200:]
    without = get_aggregator(name).fit(crowd.answers).labels_[rest]
    with_gold = get_aggregator(name).fit(crowd.answers, gold=known).labels_[rest]
    acc = lambda labels: (labels == crowd.gold[rest]).mean()  # noqa: E731
    assert acc(with_gold) >= acc(without) - 0.01


@pytest.mark.parametrize("name", CATEGORICAL)
def test_repeats_single_answer_workers_and_tasks(name):
    answers = pd.DataFrame(
        {
            "task": ["t0", "t0", "t0", "t0", "t1", "t2", "t2"],
            "worker": ["a", "a", "b", "c", "d", "a", "b"],  # a answers t0 twice; d once; t1 once
            "label": ["x", "x", "y", "x", "y", "y", "y"],
        }
    )
    model = get_aggregator(name).fit(answers)
    assert model.labels_[["t0", "t2"]].tolist() == ["x", "y"]
    if name == "dawid_skene":
        # Documented: plain DS can explain a lone answer by a worker who always says "y",
        # so the task falls back to the class prior. The regularised models do not.
        assert model.probas_.loc["t1", "y"] == pytest.approx(0.5, abs=0.05)
    else:
        assert model.labels_["t1"] == "y"


@pytest.mark.parametrize("name", CATEGORICAL + NUMERIC)
def test_params_round_trip_and_clone(name):
    model = get_aggregator(name)
    params = model.get_params()
    clone = model.clone()
    assert clone is not model and clone.get_params() == params
    assert repr(model).startswith(type(model).__name__ + "(")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("dawid_skene", {"n_iter": 0}, "'n_iter' must be an int in \\[1, inf\\); got 0"),
        ("dawid_skene", {"tol": -1.0}, "'tol' must be a float"),
        ("mace", {"random_state": "seed"}, "'random_state' must be None, a non-negative int"),
        ("glad", {"m_step_max_iter": 2.5}, "'m_step_max_iter' must be an int"),
        ("reliability_weighted_mean", {"bias_shrinkage": -1.0}, "bias_shrinkage"),
    ],
)
def test_bad_parameters_are_named(name, params, message, crowd):
    with pytest.raises(InvalidParameterError, match=message):
        get_aggregator(name, **params).fit(crowd.answers)


@pytest.mark.parametrize("name", NUMERIC)
def test_numeric_contract(name):
    answers = pd.DataFrame(
        {
            "task": [1, 1, 1, 2, 2, 2, 3],
            "worker": list("abcabca"),
            "label": [1.0, 1.5, 1.2, 4.0, 4.4, 4.2, 9.0],
        }
    )
    model = get_aggregator(name)
    assert model.fit(answers) is model
    assert list(model.labels_.index) == [1, 2, 3]
    # a task with one answer gets that answer, less the worker's bias where the model learns one
    bias = model.biases_["a"] if hasattr(model, "biases_") else 0.0
    assert model.labels_[3] == pytest.approx(9.0 - bias)
    assert 1.0 <= model.labels_[1] <= 1.5
    clamped = get_aggregator(name).fit(answers, gold=pd.Series({2: 10.0}))
    assert clamped.labels_[2] == 10.0
