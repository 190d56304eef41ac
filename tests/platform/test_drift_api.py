"""Drift per model version over a real `crowdloop serve`, on SQLite and PostgreSQL.

A project is a real slice of the bundled ``product`` set (Abt-Buy matching, its recorded crowd
answers), aggregated and trained over HTTP. The production version is downloaded and served by
the real edge model (onnxruntime), and its telemetry is built by the edge's own
:class:`~crowdloop.deploy.telemetry.Telemetry` and posted by a device token:

* items of the same set the project never saw: no drift;
* only matching pairs (a skewed class mix, and other confidences): a ``drift`` event and a
  ``drift.detected`` webhook delivery;
* truncated texts in many small batches: the input statistics drift.

Then ``/metrics`` carries the versions, the production version, the reported predictions and
the latest PSI.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from test_models_api import _import_answers

from crowdloop.datasets import load_dataset
from crowdloop.deploy.edge_model import EdgeModel
from crowdloop.deploy.telemetry import Telemetry
from monitoring.metrics_scrape import scrape

N_REGULAR, N_GOLD = 800, 150
API = "/api/v1"


def _split() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.DataFrame]:
    """The project's items and answers, its gold, and items of the same set it never sees."""
    data = load_dataset("product")
    assert data.items is not None
    tasks = np.random.default_rng(1).permutation(data.items["task"].to_numpy())
    by_task = data.items.set_index("task")
    items = by_task.loc[tasks[: N_REGULAR + N_GOLD]].rename_axis("task").reset_index()
    unseen = by_task.loc[tasks[N_REGULAR + N_GOLD :]].rename_axis("task").reset_index()
    unseen["label"] = data.gold.loc[unseen["task"]].astype(str).to_numpy()
    answers = data.answers[data.answers["task"].isin(set(items["task"]))]
    gold = data.gold.loc[tasks[N_REGULAR : N_REGULAR + N_GOLD]].astype(str)
    return items, answers, gold, unseen


@pytest.fixture(scope="module")
def deployed(server, tmp_path_factory) -> dict[str, Any]:
    items, answers, gold, unseen = _split()
    return _deploy(server, tmp_path_factory.mktemp("edge-model"), "drift", items, answers, gold, unseen, hook=True)


def _deploy(
    server: Any, folder: Path, name: str, items: pd.DataFrame, answers: pd.DataFrame, gold: pd.Series,
    unseen: pd.DataFrame, hook: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """A project of ``items`` with ``answers`` imported, aggregated and trained; its production version on an edge."""
    owner_user, owner = server.user(f"{name}-owner", "requester")
    project = owner.create_project(name=name, labels=["0", "1"], min_overlap=1, max_overlap=5)
    rows = [
        {"data": {"text": r.text, "text_b": r.text_b}, "external_id": r.task,
         **({"gold_label": gold[r.task]} if r.task in gold.index else {})}
        for r in items.itertuples(index=False)
    ]  # fmt: skip
    owner.import_items(project["id"], rows)
    _import_answers(server.database_url, project["id"], answers)
    owner.aggregate(project["id"])
    owner.start(project["id"])
    trained = owner.train_model(project["id"], family="logreg")
    assert trained["promoted"] is True
    if hook:
        owner.add_webhook(project["id"], "http://127.0.0.1:9/drift-hook", ["drift.detected"])
    meta = owner.download_model(project["id"], "production", folder)
    device, _ = server.user(f"{name}-device", "device")
    owner.grant_access(project["id"], int(device["id"]))
    return {
        "id": project["id"], "owner": owner, "owner_token": str(owner_user["token"]),
        "device_token": str(device["token"]), "unseen": unseen,
        "model": EdgeModel(Path(folder), int(meta["version"]), str(meta["digest"])),
    }  # fmt: skip


def _telemetry(model: EdgeModel, frame: pd.DataFrame, batch_size: int) -> list[dict[str, Any]]:
    """What an edge device reports after predicting ``frame``'s items, flushed every ``batch_size``."""
    telemetry, batches = Telemetry(model.fields, random_state=0), []
    for start in range(0, len(frame), batch_size):
        for record in frame.iloc[start : start + batch_size].to_dict("records"):
            item = {name: record[name] for name in model.fields}
            began = time.perf_counter()
            prediction = model.predict(item)
            telemetry.record(model.version, prediction.label, prediction.confidence, time.perf_counter() - began, item)
        batches += [{**batch, "client_id": uuid.uuid4().hex} for batch in telemetry.drain()]
    return batches


def _call(server: Any, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=120, **kwargs)


def _report(server: Any, deployed: dict[str, Any], batches: list[dict[str, Any]]) -> dict[str, Any]:
    """Post the batches as the device; the server checks drift by itself once a version's unchecked
    window holds 1,000 predictions (then the latest report is read back), else the owner runs a check."""
    pid, auto = deployed["id"], []
    for start in range(0, len(batches), 500):
        posted = _call(server, deployed["device_token"], "POST", f"{API}/projects/{pid}/edge/telemetry",
                       json=batches[start : start + 500])  # fmt: skip
        assert posted.status_code == 200, posted.text
        auto += posted.json().get("drift", [])
    if auto:
        latest = _call(server, deployed["owner_token"], "GET", f"{API}/projects/{pid}/drift")
        assert latest.status_code == 200, latest.text
        [report] = [r for r in latest.json() if r["version"] == deployed["model"].version]
        assert [report["status"]] == auto
        return dict(report)
    checked = _call(server, deployed["owner_token"], "POST", f"{API}/projects/{pid}/models/production/drift")
    assert checked.status_code == 200, checked.text
    return dict(checked.json())


def _drift_deliveries(deployed: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in deployed["owner"].deliveries(deployed["id"]) if d["event"] == "drift.detected"]


def _signals(result: dict[str, Any], exceeded: bool) -> set[tuple[str, str]]:
    return {(s["test"], s["signal"]) for s in result["report"]["statistics"] if s["exceeded"] is exceeded}


def test_unseen_items_of_the_same_set_do_not_drift(server, deployed):
    unseen = deployed["unseen"].iloc[:1000]
    result = _report(server, deployed, _telemetry(deployed["model"], unseen, batch_size=20))
    assert result["status"] == "stable", result  # checked on arrival: 1,000 predictions in the window
    assert result["window"]["batches"] == 50 and result["window"]["predictions"] == 1000
    tested = _signals(result, exceeded=False)
    assert {("psi", "confidence"), ("ks", "confidence"), ("chi2", "classes")} <= tested
    assert ("ks", "input:text.mean_length") in tested  # 50 batches: the input statistics are compared too
    assert _drift_deliveries(deployed) == []
    kinds = [e["kind"] for e in deployed["owner"].model_events(deployed["id"])]
    assert "drift_check" in kinds and "drift_reference" in kinds and "drift" not in kinds


def test_no_new_telemetry_is_not_checked(server, deployed):
    result = _report(server, deployed, [])
    assert result["status"] == "insufficient" and result["report"] is None
    assert result["window"]["batches"] == 0


def test_a_skewed_class_mix_is_drift_with_an_event_and_a_webhook(server, deployed):
    unseen = deployed["unseen"].iloc[1000:]
    matches = unseen[unseen["label"] == "1"].iloc[:300]
    result = _report(server, deployed, _telemetry(deployed["model"], matches, batch_size=100))
    assert result["status"] == "drifted", result
    assert ("chi2", "classes") in _signals(result, exceeded=True)
    events = [e for e in deployed["owner"].model_events(deployed["id"]) if e["kind"] == "drift"]
    assert [e["id"] for e in events] == [result["event_id"]]
    assert events[0]["detail"]["window"]["predictions"] == 300
    deliveries = _drift_deliveries(deployed)
    assert len(deliveries) == 1


def test_truncated_inputs_drift_on_their_statistics(server, deployed):
    unseen = deployed["unseen"].iloc[2000:2600].copy()
    unseen["text"] = unseen["text"].str.slice(0, 12)
    result = _report(server, deployed, _telemetry(deployed["model"], unseen, batch_size=12))
    assert result["status"] == "drifted", result
    exceeded = _signals(result, exceeded=True)
    assert {("psi", "input:text.mean_length"), ("ks", "input:text.mean_length")} <= exceeded
    assert ("ks", "input:text_b.mean_length") not in exceeded  # the other field is as in training


def test_latest_reports_and_metrics(server, deployed):
    pid = deployed["id"]
    latest = _call(server, deployed["owner_token"], "GET", f"{API}/projects/{pid}/drift")
    assert latest.status_code == 200, latest.text
    [report] = latest.json()
    assert report["version"] == deployed["model"].version and report["status"] == "drifted"
    admin, _ = server.user("drift-admin", "admin")
    metrics = scrape(server.url, str(admin["token"]))
    project, version = str(pid), str(deployed["model"].version)
    assert metrics.value("crowdloop_model_versions", project=project) == 1
    assert metrics.value("crowdloop_model_production_version", project=project) == deployed["model"].version
    assert metrics.value("crowdloop_edge_predictions_total", project=project, version=version) == 1000 + 300 + 600
    assert metrics.value("crowdloop_model_drift_psi", project=project, version=version) == pytest.approx(report["psi"])
    assert report["psi"] > 0.2  # the truncated texts' input PSI


def test_a_version_trained_on_the_hard_items_does_not_alarm_on_the_same_stream(server, tmp_path):
    """Active learning labels the items a model doubts, so the labeled items are the hard ones.

    Here only the pairs the crowd split on (plus a small seed) get answers: out-of-fold
    confidences on those alone are far lower than on new items of the same set, which alarmed
    on every stationary stream. The reference is the project's whole population (unlabeled
    items predicted by the version), so the same set's unseen items are stable.
    """
    items, answers, gold, unseen = _split()
    agreement = answers.groupby("task")["label"].agg(lambda labels: labels.value_counts(normalize=True).iloc[0])
    split = set(agreement[agreement < 1.0].index) | set(items["task"].iloc[:100]) | set(gold.index)
    chosen = answers[answers["task"].isin(split)]
    assert chosen["task"].nunique() < 0.6 * len(items)  # most regular items stay unlabeled
    deployed = _deploy(server, tmp_path, "drift-hard", items, chosen, gold, unseen)
    result = _report(server, deployed, _telemetry(deployed["model"], unseen.iloc[:1000], batch_size=20))
    assert result["status"] == "stable", result
    assert ("psi", "confidence") in _signals(result, exceeded=False)
