"""Active-learning strategies and the model as a worker in truth inference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdloop.errors import ConflictError, InvalidParameterError
from crowdloop.learning import STRATEGIES, informativeness, model_as_worker, select, train_model
from crowdloop.quality import DawidSkene
from crowdloop.quality.metrics import accuracy_on_gold

PROBAS = pd.DataFrame(
    {"a": [0.98, 0.5, 0.7, 0.34], "b": [0.01, 0.5, 0.3, 0.33], "c": [0.01, 0.0, 0.0, 0.33]},
    index=pd.Index(["sure", "coin", "lean", "flat"], name="task"),
)


def test_uncertainty_strategies_rank_as_their_formulas_say():
    assert informativeness("least_confidence", PROBAS).idxmax() == "flat"
    assert informativeness("margin", PROBAS).idxmax() in ("coin", "flat")
    assert informativeness("margin", PROBAS)["coin"] == pytest.approx(1.0)
    assert informativeness("entropy", PROBAS)["flat"] == pytest.approx(1.0, abs=1e-3)
    for strategy in ("least_confidence", "margin", "entropy"):
        assert informativeness(strategy, PROBAS).idxmin() == "sure"
    first, second = (informativeness("random", PROBAS, random_state=7) for _ in range(2))
    pd.testing.assert_series_equal(first, second)


def test_activelab_weighs_relabeling_against_new_items():
    probas = pd.DataFrame({"x": [0.55, 0.55, 0.55], "y": [0.45, 0.45, 0.45]}, index=["agreed", "split", "new"])
    answers = pd.DataFrame(
        {
            "task": ["agreed"] * 3 + ["split"] * 2,
            "worker": ["w1", "w2", "w3", "w1", "w2"],
            "label": ["x", "x", "x", "x", "y"],
        }
    )
    # Background tasks so workers have a track record (all agree: reliable workers).
    more = pd.DataFrame(
        {
            "task": [f"t{i}" for i in range(20) for _ in range(3)],
            "worker": ["w1", "w2", "w3"] * 20,
            "label": ["x", "x", "x"] * 10 + ["y", "y", "y"] * 10,
        }
    )
    background = pd.DataFrame({"x": [0.9] * 10 + [0.1] * 10, "y": [0.1] * 10 + [0.9] * 10}, index=more["task"].unique())
    scores = informativeness("activelab", pd.concat([probas, background]), pd.concat([answers, more]))
    assert scores["agreed"] < scores["new"] and scores["agreed"] < scores["split"]
    assert (scores.between(0, 1)).all()
    without_answers = informativeness("activelab", probas)
    assert without_answers.nunique() == 1  # nothing labeled: only the model speaks


def test_select_gives_batch_first_and_keeps_it_diverse():
    probas = pd.DataFrame({"a": [0.5, 0.5, 0.6, 0.9], "b": [0.5, 0.5, 0.4, 0.1]}, index=["t1", "t1copy", "t2", "t3"])
    features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    plain = select("least_confidence", probas, batch_size=2)
    assert list(plain.index[:2]) == ["t1", "t1copy"] and (plain.iloc[:2] > 1).all() and (plain.iloc[2:] <= 1).all()
    diverse = select("least_confidence", probas, batch_size=2, features=features, diversity=1.0)
    assert list(diverse.index[:2]) == ["t1", "t2"]  # the exact copy of t1 waits
    with pytest.raises(InvalidParameterError, match="strategy"):
        select("bald", probas)
    with pytest.raises(InvalidParameterError):
        select("margin", probas, batch_size=0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_prioritises_every_item(strategy, rte):
    probas = pd.DataFrame({0: np.linspace(0, 1, 50), 1: np.linspace(1, 0, 50)}, index=rte.gold.index[:50])
    priorities = select(strategy, probas, rte.answers, batch_size=5, random_state=1)
    assert len(priorities) == 50 and set(priorities.index) == set(probas.index)
    assert (priorities.iloc[:5] > 1).all() and priorities.is_monotonic_decreasing


def test_model_as_worker_gets_its_reliability_estimated(rte, rte_split, rte_featurizer):
    train, _ = rte_split
    model = train_model(train, rte.gold, featurizer=rte_featurizer)
    probas = model.predict_proba(rte.items)
    answers = model_as_worker(probas, name="model:v1", answers=rte.answers)
    assert (answers["worker"] == "model:v1").sum() == len(rte.items)
    fitted = DawidSkene().fit(answers)
    # On its own training items the model is near-perfect, on the rest near chance; its
    # estimated skill lies between, and adding it does not break the crowd's labels.
    assert 0.5 < fitted.skills_["model:v1"] < 1.0
    assert accuracy_on_gold(fitted.labels_, rte.gold) > 0.9
    assert len(model_as_worker(probas, min_confidence=0.99)) < len(probas)
    with pytest.raises(ConflictError):
        model_as_worker(probas, name="model:v1", answers=answers)
    for blank in ("", "  "):  # its answers read as a blank worker's
        with pytest.raises(InvalidParameterError, match="needs a worker name"):
            model_as_worker(probas, name=blank, answers=rte.answers)


def test_activelab_weighs_every_other_class_in_full():
    """Three answers a, a, b from workers right 80% of the time (errors spread evenly), class
    shares 2:1:1 as the prior: a has likelihood .8 x .8 x .1, b .1 x .1 x .8, c .1 x .1 x .1."""
    from crowdloop.learning.active import _consensus_posterior

    rows, workers, codes = np.zeros(3, dtype=int), np.arange(3), np.array([0, 0, 1])
    posterior = _consensus_posterior(rows, workers, codes, np.full(3, 0.8), np.zeros(1, dtype=int), np.ones(1, bool), 3)
    a, b, c = 0.5 * 0.8 * 0.8 * 0.1, 0.25 * 0.1 * 0.1 * 0.8, 0.25 * 0.1 * 0.1 * 0.1
    assert posterior[0] == pytest.approx(a / (a + b + c))
