"""Policies driven in-process: fixed and dynamic overlap on replayed and simulated crowds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdloop.datasets import load_dataset
from crowdloop.errors import InvalidParameterError, UnknownMethodError
from crowdloop.quality import MajorityVote
from crowdloop.quality.crowd_model import ShrunkCrowdModel
from crowdloop.sim import (
    DynamicOverlap,
    FixedOverlap,
    ReplayedCrowd,
    SimulatedCrowd,
    label_accuracy,
    make_population,
    run_in_process,
)


@pytest.fixture(scope="module")
def rte():
    return load_dataset("rte")


@pytest.fixture(scope="module")
def temp():
    return load_dataset("temp")


def test_fixed_overlap_buys_exactly_overlap_recorded_answers(rte):
    result = run_in_process(ReplayedCrowd(rte.answers), FixedOverlap(3), random_state=1)
    assert (result.answers.groupby("task").size() == 3).all() and result.n_tasks == 800
    replayed = result.answers.merge(rte.answers, on=["task", "worker"], suffixes=("", "_recorded"))
    assert len(replayed) == len(result.answers)  # every bought answer was really given...
    assert (replayed["label"] == replayed["label_recorded"]).all()  # ...and is the recorded one
    summary = result.summary(rte.gold, price=0.02)
    assert summary["labels_bought"] == 2400 and summary["cost"] == pytest.approx(48.0)
    expected = label_accuracy(MajorityVote().fit(result.answers).labels_, rte.gold)
    assert summary["label_accuracy"] == pytest.approx(expected)


def test_replay_order_depends_on_the_seed_only(rte):
    runs = [run_in_process(ReplayedCrowd(rte.answers), FixedOverlap(2), random_state=s) for s in (4, 4, 5)]
    assert runs[0].answers.equals(runs[1].answers) and not runs[0].answers.equals(runs[2].answers)


def test_dynamic_overlap_beats_fixed_five_majority_vote_with_fewer_labels(rte):
    fixed = [run_in_process(ReplayedCrowd(rte.answers), FixedOverlap(5), random_state=s) for s in (0, 1)]
    dynamic = [run_in_process(ReplayedCrowd(rte.answers), DynamicOverlap(0.9), random_state=s) for s in (0, 1)]
    fixed_accuracy = np.mean([r.summary(rte.gold)["label_accuracy"] for r in fixed])
    assert np.mean([r.summary(rte.gold)["label_accuracy"] for r in dynamic]) >= fixed_accuracy
    assert np.mean([r.summary()["labels_per_item"] for r in dynamic]) < 2.5


def test_dynamic_overlap_spends_on_items_where_workers_disagree():
    truth = pd.Series(np.arange(300) % 2, index=range(300))
    crowd = SimulatedCrowd(truth, make_population(30, [0, 1], {"reliable": 0.6, "spammer": 0.4}, random_state=2))
    result = run_in_process(crowd, DynamicOverlap(0.95, max_overlap=7), random_state=0)
    summary = result.summary(truth)
    assert summary["label_accuracy"] > 0.93 and summary["labels_per_item"] < 4
    counts = result.answers.groupby("task").size()
    assert counts.max() > counts.min()  # overlap varies by item
    spam = {p.name for p in (crowd.profile(w) for w in crowd.workers) if p.kind == "spammer"}
    share = result.answers["worker"].isin(spam).mean()
    assert share < 0.25  # spammers are recognised and given less work than their 40% of the crowd


def test_budget_caps_labels_and_control_tasks_are_not_scored(rte):
    control = rte.gold.iloc[:50]
    result = run_in_process(ReplayedCrowd(rte.answers), DynamicOverlap(0.9), gold=control, budget=300)
    assert len(result.answers) == 300
    assert set(result.control) == set(control.index)
    run_all = run_in_process(ReplayedCrowd(rte.answers), DynamicOverlap(0.9), gold=control, random_state=0)
    assert run_all.labels.loc[control.index].equals(control.loc[control.index].astype(object))


def test_a_qualification_test_comes_first_and_its_labels_are_paid_for(rte):
    """Each worker given work answers control tasks first; the summary counts those answers but
    not the control items, and they are left out of the accuracy."""
    control = rte.gold.iloc[:40]
    result = run_in_process(ReplayedCrowd(rte.answers), DynamicOverlap(0.9, qualification=3), gold=control)
    firsts = result.answers.groupby("worker", sort=False).head(3)  # each worker's first three answers
    seen = rte.answers.groupby("worker")["task"].apply(set)
    for worker, tasks in firsts.groupby("worker")["task"]:
        possible = min(len(tasks), len(seen[worker] & set(control.index)))
        assert tasks.isin(control.index).sum() >= possible, worker  # the test before any real item
    per_worker = result.answers[result.answers["task"].isin(control.index)].groupby("worker").size()
    assert per_worker.max() <= 3  # control tasks are asked in the test only
    summary = result.summary(rte.gold)
    assert summary["items"] == 800 - 40 and summary["control_items"] == 40
    assert summary["labels_per_item"] == len(result.answers) / 760


def test_an_item_only_held_back_workers_can_still_take_is_given_to_them(temp):
    """A trusted worker who had already answered an item still counted as one who could take it,
    so it never became an orphan: 32 items of temp stopped at one answer under min_overlap 2."""
    result = run_in_process(ReplayedCrowd(temp.answers), DynamicOverlap(0.95, min_overlap=2), random_state=0)
    counts = result.answers.groupby("task").size().reindex(temp.answers["task"].unique(), fill_value=0)
    recorded = temp.answers.groupby("task").size()
    assert ((counts < 2) & (recorded >= 2)).sum() == 0


@pytest.mark.parametrize("make", [lambda: FixedOverlap(0), lambda: DynamicOverlap(0.4),
                                  lambda: DynamicOverlap(min_overlap=3, max_overlap=2),
                                  lambda: DynamicOverlap(pool=0), lambda: DynamicOverlap(qualification=-1)])  # fmt: skip
def test_bad_policy_parameters_are_refused(make):
    with pytest.raises(InvalidParameterError):
        make()


def test_unknown_aggregator_is_refused_before_the_run():
    with pytest.raises(UnknownMethodError):
        FixedOverlap(aggregator="nope")


def test_policy_maps_onto_project_settings():
    assert FixedOverlap(4).project_spec()["max_overlap"] == 4
    spec = DynamicOverlap(0.9, min_overlap=2, max_overlap=6).project_spec()
    assert spec == {"min_overlap": 2, "max_overlap": 6, "confidence_target": 0.9, "rules": {"hold_back_quantile": 0.5}}
    assert DynamicOverlap(qualification=3).project_spec()["rules"]["qualification_gold"] == 3


def _paired_confusion_answers(n_tasks: int = 400, n_workers: int = 20, seed: int = 0) -> pd.DataFrame:
    """Four classes confused in pairs ({0, 1}, {2, 3}), as two similar dog breeds are."""
    rng = np.random.default_rng(seed)
    truth = np.arange(n_tasks) % 4
    rows = []
    for task in range(n_tasks):
        for worker in rng.choice(n_workers, 3, replace=False):
            label = truth[task] if rng.random() < 0.7 else truth[task] ^ 1  # the error is the pair's other class
            rows.append((task, int(worker), int(label)))
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


def test_newcomers_inherit_the_crowds_class_confusions():
    answers = _paired_confusion_answers()
    tasks, workers, labels = (answers[c].to_numpy() for c in ("task", "worker", "label"))
    model = ShrunkCrowdModel(4)
    model.fit(tasks, workers, labels, 400)
    newcomer = np.exp(model.newcomer())
    assert newcomer[0, 1] > 4 * newcomer[0, 2] and newcomer[2, 3] > 4 * newcomer[2, 0]
    even = ShrunkCrowdModel(4, crowd_confusion=False)
    even.fit(tasks, workers, labels, 400)
    assert np.exp(even.newcomer())[0, 1] == pytest.approx(np.exp(even.newcomer())[0, 2])


def test_workers_below_the_crowds_median_get_no_more_work():
    truth = pd.Series(np.arange(400) % 2, index=range(400))
    crowd = SimulatedCrowd(truth, make_population(20, [0, 1], {"reliable": 0.5, "noisy": 0.5}, random_state=3))
    accuracy = {w: crowd.profile(w).accuracy for w in crowd.workers}
    weak = {w for w, a in accuracy.items() if a < np.median(list(accuracy.values()))}
    share = {}
    for quantile in (None, 0.5):
        result = run_in_process(crowd, DynamicOverlap(0.9, exclude_quantile=quantile), random_state=0)
        share[quantile] = result.answers["worker"].isin(weak).mean()
    assert share[0.5] < 0.6 * share[None]


def test_an_item_only_excluded_workers_can_do_still_gets_an_answer():
    answers = _paired_confusion_answers(n_workers=10)
    lonely = pd.DataFrame({"task": [999], "worker": [answers["worker"].iloc[0]], "label": [0]})
    policy = DynamicOverlap(0.9, exclude_quantile=0.9)
    result = run_in_process(ReplayedCrowd(pd.concat([answers, lonely])), policy, random_state=0)
    assert 999 in result.labels.index and result.labels.notna().all()
    assert result.labels.size == result.n_tasks


def test_a_dense_crowds_work_goes_to_a_pool_of_trusted_workers():
    truth = pd.Series(np.arange(200) % 2, index=range(200))
    crowd = SimulatedCrowd(truth, make_population(40, [0, 1], {"reliable": 0.5, "noisy": 0.5}, random_state=4))
    answers = {pool: run_in_process(crowd, DynamicOverlap(0.9, pool=pool), random_state=0).answers
               for pool in (None, 5)}  # fmt: skip
    top_share = {pool: a["worker"].value_counts().head(5).sum() / len(a) for pool, a in answers.items()}
    assert top_share[5] > 2 * top_share[None]  # everyone can do everything: five workers carry the work


def test_a_sparse_crowd_is_not_held_back_by_the_pool(rte):
    runs = [run_in_process(ReplayedCrowd(rte.answers), DynamicOverlap(0.9, pool=pool), random_state=0)
            for pool in (None, 12)]  # fmt: skip
    assert runs[0].answers.equals(runs[1].answers)  # each rte worker saw ~6% of the items: all are admitted
