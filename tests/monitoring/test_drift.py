"""Drift statistics against known values: PSI's behaviour, KS equal to scipy, χ² by hand; and how
often a check of a stationary stream of real ``product`` predictions alarms."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from crowdloop.datasets import load_dataset
from crowdloop.errors import EmptyInputError, InvalidParameterError, MissingValuesError
from crowdloop.learning.train import train_model
from crowdloop.monitoring.drift import (
    DriftSample,
    DriftStatistic,
    DriftThresholds,
    chi_squared_class_mix,
    chi_squared_two_samples,
    drift_report,
    family_wise,
    kolmogorov_smirnov,
    population_stability_index,
    quantile_edges,
)


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def test_psi_of_a_sample_with_itself_is_zero(rng):
    sample = rng.normal(size=5_000)
    assert population_stability_index(sample, sample) == pytest.approx(0.0, abs=1e-12)


def test_psi_of_two_samples_of_one_distribution_is_small(rng):
    assert population_stability_index(rng.normal(size=20_000), rng.normal(size=20_000)) < 0.01


@pytest.mark.parametrize(("shift", "low", "high"), [(0.25, 0.04, 0.08), (0.5, 0.18, 0.27), (1.0, 0.8, 1.05)])
def test_psi_of_a_shifted_normal_approaches_the_squared_shift(rng, shift, low, high):
    """For N(0,1) against N(δ,1) the binned PSI tends to δ² from below (ten bins lose a little)."""
    psi = population_stability_index(rng.normal(size=50_000), rng.normal(shift, 1.0, size=50_000))
    assert low < psi < high and psi < shift**2 * 1.05


def test_psi_by_hand_on_quantile_bins():
    """Reference 0..99: 10 bins of 10; observed all in the first two bins (50/50)."""
    reference = np.arange(100.0)
    observed = np.array([1.0] * 50 + [15.0] * 50)
    eps = 1e-4
    shares = np.array([0.5, 0.5] + [eps] * 8)
    shares /= shares.sum()
    expected = float(np.sum((shares - 0.1) * np.log(shares / 0.1)))
    assert population_stability_index(reference, observed, epsilon=eps) == pytest.approx(expected, rel=1e-12)


def test_quantile_edges_merge_ties_and_cover_everything():
    edges = quantile_edges([0, 0, 0, 0, 0, 0, 0, 0, 1, 2], bins=10)
    assert edges[0] == -np.inf and edges[-1] == np.inf
    assert len(np.unique(edges)) == len(edges)  # no empty zero-width bins from the tied zeros


def test_ks_matches_scipy(rng):
    reference, observed = rng.normal(size=800), rng.normal(0.2, 1.1, size=600)
    ours = kolmogorov_smirnov(reference, observed)
    theirs = stats.ks_2samp(reference, observed)
    assert ours.statistic == pytest.approx(theirs.statistic) and ours.p_value == pytest.approx(theirs.pvalue)


def test_chi_squared_matches_a_hand_computation():
    """E = (50, 30, 20); χ² = 100/50 + 100/30 + 0 = 5.333; 2 dof, so p = exp(−χ²/2)."""
    result = chi_squared_class_mix({"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 40, "b": 40, "c": 20})
    assert result.statistic == pytest.approx(2 + 10 / 3)
    assert result.p_value == pytest.approx(math.exp(-(2 + 10 / 3) / 2))


def test_chi_squared_takes_reference_counts_and_survives_an_unseen_class():
    as_counts = chi_squared_class_mix({"a": 500, "b": 300, "c": 200}, {"a": 40, "b": 40, "c": 20})
    assert as_counts.statistic == pytest.approx(2 + 10 / 3)
    unseen = chi_squared_class_mix({"a": 1, "b": 1}, {"a": 10, "b": 10, "new": 5})
    assert math.isfinite(unseen.statistic) and unseen.statistic > 1000 and unseen.p_value < 1e-6


def test_two_sample_chi_squared_is_scipys_contingency_test():
    reference, observed = {"0": 970, "1": 30}, {"0": 282, "1": 18}
    ours = chi_squared_two_samples(reference, observed)
    theirs = stats.chi2_contingency([[970, 30], [282, 18]], correction=False)
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-12)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    assert chi_squared_class_mix(reference, observed).p_value < 0.01 < ours.p_value  # the reference's noise counts
    unseen = chi_squared_two_samples({"a": 500, "b": 500}, {"a": 40, "b": 40, "new": 20})
    assert unseen.p_value < 1e-6


def test_a_sampled_reference_class_mix_uses_the_two_sample_test():
    reference = DriftSample(classes={"0": 970, "1": 30}, classes_sampled=True)
    report = drift_report(reference, DriftSample(classes={"0": 282, "1": 18}))
    assert not report.drifted
    assert drift_report(DriftSample(classes={"0": 970, "1": 30}), DriftSample(classes={"0": 282, "1": 18})).drifted


def test_report_flags_only_what_drifted(rng):
    reference = DriftSample(
        confidence=rng.beta(8, 2, 5_000),
        inputs={"length": rng.normal(100, 15, 5_000), "digits": rng.poisson(3, 5_000)},
        classes={"cat": 0.5, "dog": 0.5},
    )
    observed = DriftSample(
        confidence=rng.beta(8, 2, 3_000),
        inputs={"length": rng.normal(130, 15, 3_000), "digits": rng.poisson(3, 3_000)},
        classes={"cat": 1480, "dog": 1520},
    )
    report = drift_report(reference, observed)
    flagged = {(item.test, item.signal) for item in report.exceeded}
    assert flagged == {("psi", "input:length"), ("ks", "input:length")}
    assert report.drifted and report.to_dict()["drifted"] is True
    signals = [(item.test, item.signal) for item in report.statistics]
    assert signals[:2] == [("psi", "confidence"), ("ks", "confidence")] and signals[-1] == ("chi2", "classes")


def test_thresholds_decide(rng):
    reference, observed = (
        DriftSample(confidence=rng.normal(size=4_000)),
        DriftSample(confidence=rng.normal(0.3, 1, 4_000)),
    )
    assert drift_report(reference, observed).drifted  # KS: D ≈ 0.12 > 0.1 with p ≪ 0.01
    lenient = DriftThresholds(psi=1.0, ks_statistic=0.5)
    assert not drift_report(reference, observed, lenient).drifted


def test_class_shift_alone_is_drift():
    reference = DriftSample(classes={"cat": 0.5, "dog": 0.5})
    report = drift_report(reference, DriftSample(classes={"cat": 700, "dog": 300}))
    assert [(item.test, item.exceeded) for item in report.statistics] == [("chi2", True)]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: population_stability_index([], [1.0]), EmptyInputError),
        (lambda: population_stability_index([1.0, np.nan], [1.0]), MissingValuesError),
        (lambda: population_stability_index([1.0, 2.0], [1.0], bins=1), InvalidParameterError),
        (lambda: chi_squared_class_mix({"a": -1}, {"a": 3}), InvalidParameterError),
        (lambda: chi_squared_class_mix({"a": 1}, {}), EmptyInputError),
        (lambda: drift_report(DriftSample(inputs={"x": [1.0]}), DriftSample(inputs={"y": [1.0]})), EmptyInputError),
    ],
)
def test_bad_input_raises_a_typed_error(call, error):
    with pytest.raises(error):
        call()


def test_a_checks_p_values_share_its_false_alarm_rate():
    """Two tests with a p-value: each is held to 0.01 / 2. A KS at p = 0.007 (D over 0.1) passed
    alone and does not now; PSI keeps its threshold; deciding again with one more test of the
    same check (the service's input statistics) divides by three."""
    found = [
        DriftStatistic("psi", "confidence", 0.25, None, 0.2, False),
        DriftStatistic("ks", "confidence", 0.15, 0.007, 0.1, False),
        DriftStatistic("chi2", "classes", 9.0, 0.004, 0.01, False),
    ]
    report = family_wise(found)
    assert [(s.test, s.exceeded, s.p_threshold) for s in report.statistics] == [
        ("psi", True, None), ("ks", False, 0.005), ("chi2", True, 0.005),
    ]  # fmt: skip
    assert family_wise(found[1:2]).exceeded[0].p_threshold == 0.01  # alone: the whole rate
    assert not family_wise([DriftStatistic("ks", "confidence", 0.09, 1e-9, 0.1, False)]).drifted  # D too small
    more = family_wise([*report.statistics, DriftStatistic("ks", "input:text.mean_length", 0.3, 0.2, 0.1, False)])
    assert [(s.test, s.exceeded) for s in more.exceeded] == [("psi", True)]  # χ² at 0.004 > 0.01 / 3
    assert more.to_dict()["statistics"][1]["p_threshold"] == pytest.approx(0.01 / 3)


@pytest.fixture(scope="module")
def product_predictions() -> tuple[np.ndarray, np.ndarray]:
    """A logistic regression trained on 600 ``product`` pairs' recorded crowd answers (vote
    shares): its confidence and predicted class on 4,000 other pairs of the set."""
    data = load_dataset("product")
    assert data.items is not None
    items = data.items.assign(**{name: data.items[name].fillna("").astype(str) for name in ("text", "text_b")})
    order = np.random.default_rng(0).permutation(len(items))
    train, rest = items.iloc[order[:600]], items.iloc[order[600:4600]]
    answers = data.answers[data.answers["task"].isin(train["task"])]
    model = train_model(train, pd.crosstab(answers["task"], answers["label"].astype(str), normalize="index"))
    probas = model.predict_proba(rest).to_numpy()
    return probas.max(axis=1), np.array([str(model.classes_[code]) for code in probas.argmax(axis=1)])


@pytest.mark.slow
def test_a_stationary_check_alarms_at_most_at_the_configured_rate(product_predictions):
    """A check as the server makes it, with nothing drifting: the reference is 1,000 of the
    model's predictions, the window 300 more of the same pairs (an edge batch's 256 confidences
    and its class counts). With KS and χ² each held to 0.01 a check alarmed on 2.2% of these
    (twice its rate: two tests), as a check of the demo's stationary stream did; held together
    to 0.01 (:func:`family_wise`), it alarms on at most 1%, up to the draws' noise."""
    confidence, labels = product_predictions
    draws, rate = 3000, DriftThresholds().ks_p_value
    rng = np.random.default_rng(1)
    alarms = 0
    for _ in range(draws):
        order = rng.permutation(len(confidence))
        ref, obs = order[:1000], order[1000:1300]
        report = drift_report(
            DriftSample(confidence=confidence[ref], classes=Counter(labels[ref]), classes_sampled=True),
            DriftSample(confidence=confidence[obs][:256], classes=Counter(labels[obs])),
        )
        alarms += report.drifted
    assert alarms <= stats.binom.ppf(0.999, draws, rate), f"{alarms} of {draws} stationary checks alarmed"
