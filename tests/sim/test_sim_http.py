"""Simulated and replayed workers on a real `crowdloop serve` (SQLite), through the SDK."""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pandas as pd
import pytest

from crowdloop.sim import DynamicOverlap, FixedOverlap, ReplayedCrowd, SimulatedCrowd, make_population, run_over_http
from crowdloop.sim.http import _one_visit, _open


def _sparse_recording() -> pd.DataFrame:
    """12 items, 6 workers; each worker saw 8 items (so the server offers them some they never saw)."""
    rng = np.random.default_rng(0)
    truth = np.arange(12) % 2
    rows = []
    for worker in range(6):
        for task in rng.choice(12, size=8, replace=False):
            label = truth[task] if rng.random() < 0.85 else 1 - truth[task]
            rows.append({"task": f"t{task}", "worker": f"w{worker}", "label": ["no", "yes"][label]})
    return pd.DataFrame(rows)


def test_replayed_crowd_over_http_gives_only_recorded_answers(sqlite_server):
    recording = _sparse_recording()
    result = run_over_http(sqlite_server.url, sqlite_server.admin_token, ReplayedCrowd(recording), FixedOverlap(3),
                           random_state=0, price=0.5)  # fmt: skip
    bought = result.answers
    assert len(bought) > 0 and not bought.duplicated(["task", "worker"]).any()
    joined = bought.merge(recording, on=["task", "worker"], how="left", suffixes=("", "_recorded"))
    assert joined["label_recorded"].notna().all()  # nobody answered an item they never saw
    assert (joined["label"] == joined["label_recorded"]).all()
    per_item = bought.groupby("task").size()
    recorded = recording.groupby("task").size()
    assert (per_item == np.minimum(recorded.loc[per_item.index], 3)).all()
    assert set(result.labels.index) == set(per_item.index)
    assert result.extra["spent"] == len(bought) * 0.5
    summary = result.summary(pd.Series({f"t{i}": ["no", "yes"][i % 2] for i in range(12)}), price=0.5)
    assert summary["cost"] == result.extra["spent"] and summary["label_accuracy"] >= 0.75


def test_a_simulation_leaves_no_work_for_the_servers_real_workers(sqlite_server):
    """The project was left active and open to all, at the price given: a real worker was handed
    its tasks, to answer for the simulated crowd."""
    from crowdloop.client import Client
    from crowdloop.errors import NotFoundError

    real = Client(sqlite_server.url, str(sqlite_server.admin.create_user("real-worker", "worker")["token"]))
    result = run_over_http(sqlite_server.url, sqlite_server.admin_token, ReplayedCrowd(_sparse_recording()),
                           FixedOverlap(3), budget=5, random_state=0)  # fmt: skip
    project = sqlite_server.admin.project(result.extra["server_project"])
    assert project["status"] == "finished" and project["open_to_all"] is False
    with real, pytest.raises(NotFoundError):
        real.next_task(project["id"])


def test_simulated_population_with_dynamic_overlap_over_http(sqlite_server):
    truth = pd.Series(["neg", "pos"] * 10, index=[f"item{i}" for i in range(20)])
    crowd = SimulatedCrowd(truth, make_population(5, ["neg", "pos"], {"reliable": 1.0}, random_state=4), random_state=1)
    result = run_over_http(sqlite_server.url, sqlite_server.admin_token, crowd, DynamicOverlap(0.9, max_overlap=5),
                           random_state=0)  # fmt: skip
    summary = result.summary(truth)
    assert summary["labels_per_item"] < 5 and summary["label_accuracy"] >= 0.9
    assert result.answers["seconds"].gt(0).all()  # the simulated answer times reach the server


def test_a_visit_buys_one_answer_however_many_items_the_worker_never_saw(sqlite_server):
    """The worker saw only the oldest of six items, the last in the platform's queue: in one visit
    they pass on the five others and answer it, as the in-process driver's visit would. (Had a pass
    ended the visit, workers who saw few items would get far fewer answers than their share.)"""
    recording = pd.DataFrame({"task": [f"t{i}" for i in range(6)] + ["t0"], "worker": ["wide"] * 6 + ["narrow"],
                              "label": ["yes", "no"] * 3 + ["yes"]})  # fmt: skip
    crowd = ReplayedCrowd(recording)
    session = _open(sqlite_server.url, sqlite_server.admin_token, crowd, FixedOverlap(2), None, 0.0)
    try:
        narrow = crowd.workers.index("narrow")
        assert _one_visit(session.workers[narrow], session.project_id, crowd, "narrow", crowd.tasks)
        exported = session.requester.export(session.project_id, "answers", "jsonl").decode().splitlines()
        assert [json.loads(line)["external_id"] for line in exported] == ["t0"]
        assert session.workers[narrow].standing(session.project_id)["answers"] == 1
        assert not _one_visit(session.workers[narrow], session.project_id, crowd, "narrow", crowd.tasks)  # none left
    finally:
        session.close()


def test_a_qualification_test_over_http_gives_each_worker_gold_first(sqlite_server):
    """The platform runs the simulator's qualification test as the project rule ``qualification_gold``."""
    truth = pd.Series(["neg", "pos"] * 15, index=[f"item{i}" for i in range(30)])
    crowd = SimulatedCrowd(truth, make_population(4, ["neg", "pos"], {"reliable": 1.0}, random_state=2), random_state=3)
    control = truth.iloc[:6]
    result = run_over_http(sqlite_server.url, sqlite_server.admin_token, crowd,
                           DynamicOverlap(0.9, max_overlap=4, qualification=2), gold=control, random_state=0)  # fmt: skip
    for _, answers in result.answers.groupby("worker", sort=False):
        assert answers["task"].head(2).isin(control.index).all()  # the test came first
    assert result.summary(truth)["items"] == 24


def test_tasks_whose_names_the_server_normalises_come_back_as_themselves(sqlite_server):
    """The server stores item text normalised (NFC, single spaces): the driver looked the returned
    name up and failed with a KeyError, and two names that normalise alike were merged into one item."""
    names = ["q  1", "q 1", unicodedata.normalize("NFD", "café"), "plain"]
    recording = pd.DataFrame({"task": [name for name in names for _ in range(2)], "worker": ["a", "b"] * 4,
                              "label": ["x", "y", "x", "x", "y", "y", "x", "y"]})  # fmt: skip
    result = run_over_http(sqlite_server.url, sqlite_server.admin_token, ReplayedCrowd(recording), FixedOverlap(2))
    joined = result.answers.merge(recording, on=["task", "worker"], how="left", suffixes=("", "_recorded"))
    assert len(result.answers) == 8 and (joined["label"] == joined["label_recorded"]).all()
    assert sorted(result.labels.index) == sorted(names)
    items = sqlite_server.admin.items(result.extra["server_project"])
    assert sorted(item["external_id"] for item in items) == sorted(names)  # the names as they were
