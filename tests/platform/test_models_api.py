"""Train, version, promote, download and prioritize over a real `crowdloop serve`, on SQLite and PostgreSQL.

The project is a real slice of the bundled ``product`` set (Abt-Buy product matching,
Wang et al. VLDB 2012): 1,500 regular items and 300 gold items with their texts, and the
recorded answers of the real crowd on them. The answers are imported straight into the
server's database (as a recorded crowd would be: worker accounts, submitted assignments,
answers), then everything else goes over HTTP: aggregation, training, the registry,
promotion, the artifact download with its digest, and active-learning priorities that
change what ``tasks/next`` serves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from crowdloop.datasets import load_dataset
from crowdloop.deploy.edge_model import EdgeModel
from crowdloop.errors import (
    ArtifactError,
    ConflictError,
    CrowdloopError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from crowdloop.learning import TrainedModel, evaluate
from crowdloop.learning.project_data import ID_COLUMN
from crowdloop.learning.promotion import beats
from crowdloop.learning.torch_mlp import torch_installed
from crowdloop.storage.db import make_engine, session_factory, unit_of_work
from crowdloop.storage.models import Answer, Assignment, Item, User, utcnow
from support import item_id_of, require

N_REGULAR, N_GOLD = 1500, 300


def _slice() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    data = load_dataset("product")
    assert data.items is not None
    tasks = np.random.default_rng(0).choice(data.items["task"].to_numpy(), N_REGULAR + N_GOLD, replace=False)
    items = data.items.set_index("task").loc[tasks].rename_axis("task").reset_index()
    answers = data.answers[data.answers["task"].isin(set(tasks))]
    gold = data.gold.loc[tasks[N_REGULAR:]].astype(str)
    return items, answers, gold


def _import_answers(database_url: str, project_id: int, answers: pd.DataFrame) -> int:
    """The recorded crowd's answers as submitted assignments of worker accounts, in the server's database."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with unit_of_work(session_factory(engine)) as session:
            query = select(Item.external_id, Item.id).where(Item.project_id == project_id)
            item_ids = {external: item for external, item in session.execute(query)}
            tag = uuid.uuid4().hex[:6]
            workers = {name: User(name=f"crowd-{tag}-{name}", role="worker") for name in answers["worker"].unique()}
            session.add_all(workers.values())
            session.flush()
            return _add_answers(session, project_id, answers, item_ids, workers)
    finally:
        engine.dispose()


def _add_answers(session: Any, project_id: int, answers: pd.DataFrame, item_ids: dict[str, int], workers: dict) -> int:
    now, added = utcnow(), 0
    for task, worker, label in answers[["task", "worker", "label"]].itertuples(index=False):
        if task not in item_ids:  # merged as a duplicate on import
            continue
        user = workers[worker]
        lease = Assignment(project_id=project_id, item_id=item_ids[task], worker_id=user.id, status="submitted",
                           issued_at=now, expires_at=now + timedelta(minutes=10))  # fmt: skip
        session.add(lease)
        session.flush()
        session.add(Answer(assignment_id=lease.id, project_id=project_id, item_id=item_ids[task], worker_id=user.id,
                           label=str(label), seconds=5.0))  # fmt: skip
        added += 1
    return added


@pytest.fixture(scope="module")
def product(server) -> dict[str, Any]:
    items, answers, gold = _slice()
    _, requester = server.user("modeler", "requester")
    project = requester.create_project(name="product matching", labels=["0", "1"], min_overlap=1, max_overlap=5)
    rows: list[dict[str, Any]] = []
    for position, row in enumerate(items.itertuples(index=False)):
        record: dict[str, Any] = {"data": {"text": row.text, "text_b": row.text_b}, "external_id": row.task}
        if position >= N_REGULAR:
            record["gold_label"] = gold[row.task]
        rows.append(record)
    for start in range(0, len(rows), 1000):
        requester.import_items(project["id"], rows[start : start + 1000])
    added = _import_answers(server.database_url, project["id"], answers)
    summary = requester.aggregate(project["id"])
    assert summary["answers"] == added > 0.9 * len(answers)
    requester.start(project["id"])
    return {"id": project["id"], "client": requester, "gold": gold, "items": items}


def _gold_frame(product: dict[str, Any]) -> tuple[pd.DataFrame, pd.Series]:
    """The gold items as the model reads them (item ids from the server) and their labels."""
    listed = _all_items(product)
    gold_items = [i for i in listed if i["is_gold"]]
    frame = pd.DataFrame([{**i["data"], ID_COLUMN: i["id"]} for i in gold_items])
    labels = pd.Series({i["id"]: str(i["gold_label"]) for i in gold_items})
    return frame, labels


def _all_items(product: dict[str, Any]) -> list[dict[str, Any]]:
    out, offset = [], 0
    while batch := product["client"].items(product["id"], offset=offset, limit=500):
        out += batch
        offset += len(batch)
    return out


def test_first_version_is_real_and_becomes_production(product, tmp_path):
    client, pid = product["client"], product["id"]
    result = client.train_model(pid, family="linear_svm")
    version = result["version"]
    assert version["version"] == 1 and result["promoted"] is True
    assert sorted(version["aliases"]) == ["candidate", "production"]
    metrics, gold = version["metrics"], product["gold"]
    majority = float((gold == gold.mode()[0]).mean())
    assert metrics["n"] > 0.95 * N_GOLD
    assert metrics["accuracy"] >= majority and metrics["macro_f1"] > 0.55  # the always-"0" model scores ~0.47
    assert 0 < metrics["log_loss"] < 0.6 and 0 <= metrics["ece"] < 0.2
    assert set(metrics["per_class"]) == {"0", "1"} and metrics["per_class"]["1"]["recall"] > 0.1
    lineage = version["lineage"]
    assert lineage["method"] == "default" and lineage["aggregation_run"] is not None
    assert lineage["labels"] > 0.95 * N_REGULAR and lineage["answers"] > 2.5 * N_REGULAR
    assert lineage["gold_items"] == metrics["n"] and lineage["labels_at"]
    # the artifact: downloaded, digest checked, and the model in it scores what the registry says
    done = client.download_model(pid, "production", tmp_path / "v1")
    assert done["digest"] == version["digest"] and done["version"] == 1
    files = {p.name for p in (tmp_path / "v1").iterdir()}
    assert {"model.json", "features.json", "estimator.pkl", "model.onnx"} <= files
    frame, labels = _gold_frame(product)
    again = evaluate(TrainedModel.load(tmp_path / "v1"), frame, labels)
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])


def _train_while_a_worker_answers(server: Any, client: Any, pid: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    # a 4-trial search of gradient boosting (3-fold CV each): the worker's answers surely land while it runs
    trainer = threading.Thread(target=lambda: result.update(client.train_model(pid, family="gboost", trials=4)))
    trainer.start()
    _, worker = server.user("busy", "worker")
    time.sleep(1.0)
    for _ in range(3):
        task = worker.next_task(pid)
        worker.submit(task["assignment_id"], "0")
    assert trainer.is_alive(), "the training ended before the worker's answers: nothing was checked"
    trainer.join()
    return result


def test_a_worse_model_stays_candidate_and_the_rejection_is_kept(product, server):
    client, pid = product["client"], product["id"]
    done = _cli(server, client, "train", str(pid), "--family", "naive_bayes")
    assert "kept as candidate" in done.stderr
    versions = client.models(pid)
    assert [v["version"] for v in versions] == [1, 2]
    first, second = versions
    assert first["aliases"] == ["production"] and second["aliases"] == ["candidate"]
    assert (second["metrics"]["accuracy"], second["metrics"]["macro_f1"]) <= (
        first["metrics"]["accuracy"], first["metrics"]["macro_f1"],
    )  # fmt: skip
    rejected = [e for e in client.model_events(pid) if e["kind"] == "rejected"]
    assert len(rejected) == 1 and rejected[0]["detail"]["candidate"] == 2
    assert rejected[0]["detail"]["production_score"]["accuracy"] == pytest.approx(first["metrics"]["accuracy"])
    assert client.model(pid, "production")["version"] == 1
    # the owner may still promote it by hand, with a reason; the events keep it, with both scores on gold
    by_hand = client.promote_model(pid, 2, "try it in the field")
    assert by_hand["aliases"] == ["candidate", "production"] and by_hand["changed"] is True
    manual = client.model_events(pid)[-1]
    assert manual["kind"] == "promoted" and manual["detail"] == by_hand["comparison"]
    assert {k: manual["detail"][k] for k in ("candidate", "manual", "reason", "by", "production")} == {
        "candidate": 2, "manual": True, "reason": "try it in the field", "by": client.me()["id"], "production": 1,
    }  # fmt: skip
    assert manual["detail"]["candidate_score"]["accuracy"] == pytest.approx(second["metrics"]["accuracy"])
    assert manual["detail"]["production_score"]["accuracy"] == pytest.approx(first["metrics"]["accuracy"])
    events = len(client.model_events(pid))
    again = client.promote_model(pid, 2, "twice")  # already production: nothing changes, nothing is logged
    assert again["changed"] is False and len(client.model_events(pid)) == events
    client.promote_model(pid, 1, "back to the better one")
    # a third model is judged against production (v1) on the same gold; while it trains, the
    # server goes on serving workers (no transaction, so no SQLite write lock, is held meanwhile)
    third = _train_while_a_worker_answers(server, client, pid)
    cmp = third["comparison"]
    ours, theirs = cmp["candidate_score"], cmp["production_score"]
    assert third["promoted"] == beats(ours, theirs)
    assert cmp["production"] == 1 and third["version"]["version"] == 3


def _token(client: Any) -> str:
    return str(client._http.headers["Authorization"].split(" ", 1)[1])


def _cli(
    server: Any, client: Any, *args: str, timeout: float = 600, columns: int | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``crowdloop ARGS`` against ``server`` as ``client``'s user; with ``check``, it must succeed.
    ``columns``: the terminal width rich tables take (piped, with none, they keep whole cells)."""
    env = None if columns is None else {**os.environ, "COLUMNS": str(columns)}
    done = subprocess.run([sys.executable, "-m", "crowdloop", *args, "--url", server.url, "--token", _token(client)],
                          capture_output=True, text=True, timeout=timeout, env=env)  # fmt: skip
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_the_cli_lists_shows_downloads_and_prints_events(product, server, tmp_path):
    pid = product["id"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:  # rich tables are as wide as the terminal
        return _cli(server, product["client"], *args, timeout=300, columns=250, check=False)

    listed = run("models", "list", str(pid))
    assert listed.returncode == 0 and "linear_svm" in listed.stdout and "production" in listed.stdout
    assert "┃ targets " in listed.stdout and re.search(r"│ linear_svm +│ labels +│", listed.stdout), listed.stdout
    shown = run("models", "show", str(pid), "1")
    assert shown.returncode == 0 and "per_class" in shown.stdout and "aggregation_run" in shown.stdout
    events = run("models", "events", str(pid))
    assert events.returncode == 0 and "rejected" in events.stdout
    piped = _cli(server, product["client"], "models", "list", str(pid), timeout=300, check=False)
    assert "candidate" in piped.stdout and "candi…" not in piped.stdout  # a pipe gets the whole cells
    as_json = json.loads(run("models", "list", str(pid), "--json").stdout)
    assert [v["version"] for v in as_json] == [v["version"] for v in product["client"].models(pid)]
    assert json.loads(run("models", "show", str(pid), "1", "--json").stdout)["version"] == 1
    latest = json.loads(run("models", "events", str(pid), "--limit", "2", "--json").stdout)
    assert len(latest) == 2 and latest == product["client"].model_events(pid)[-2:]
    earlier = product["client"].model_events(pid, limit=1, before=latest[0]["id"])
    assert len(earlier) == 1 and earlier[0]["id"] < latest[0]["id"]
    download = run("models", "download", str(pid), "production", "-o", str(tmp_path / "prod"))
    assert download.returncode == 0 and "verified" in download.stderr
    assert (tmp_path / "prod" / "model.onnx").is_file()
    missing = run("models", "show", str(pid), "99")
    assert missing.returncode == NotFoundError.exit_code and "no model version" in missing.stderr


def test_priorities_reorder_what_tasks_next_serves(product, server):
    client, pid = product["client"], product["id"]
    _, early = server.user("early", "worker")
    before = early.next_task(pid)
    assert before is not None
    early.submit(before["assignment_id"], "0")
    summary = client.set_priorities(pid, strategy="entropy", batch_size=20)
    assert summary["model_version"] == client.model(pid, "production")["version"]
    assert summary["scored"] > 0.9 * N_REGULAR and len(summary["batch"]) == 20 and summary["top_priority"] > 1
    _, fresh = server.user("fresh", "worker")
    assert item_id_of(client, pid, fresh.next_task(pid)) == summary["batch"][0]
    # the worker already on the project sees the new order too (their queue cursor was reset)
    assert item_id_of(client, pid, early.next_task(pid)) == summary["batch"][0] != item_id_of(client, pid, before)
    # the batch is stored above every other item, the rest keep their entropy in [0, 1]
    stored = {i["id"]: i["priority"] for i in _all_items(product) if not i["is_gold"]}
    assert all(stored[i] > 1 for i in summary["batch"])
    others = [p for i, p in stored.items() if i not in set(summary["batch"])]
    # not flattened to a few values; how many distinct ones depends on the family the search picks
    # (a depth-2 boosted model gives piecewise-constant probabilities: 96 distinct on 1,480 items)
    assert max(others) <= 1 and len({round(p, 6) for p in others}) > 20


def test_who_may_read_models(product, server):
    pid = product["id"]
    made, device = server.user("edge", "device")
    _, worker = server.user("curious", "worker")
    _, stranger = server.user("other", "requester")
    with pytest.raises(NotFoundError):  # a device sees no project, open to all or not, until granted it
        device.model(pid, "production")
    product["client"].grant_access(pid, int(made["id"]))
    production = device.model(pid, "production")
    assert production["digest"] == product["client"].model(pid, "production")["digest"]
    rejected = next(v for v in product["client"].models(pid) if not v["aliases"])
    with pytest.raises(PermissionDeniedError):
        device.model(pid, rejected["version"])  # neither production nor candidate
    for call in (lambda c: c.models(pid), lambda c: c.train_model(pid), lambda c: c.set_priorities(pid)):
        with pytest.raises(PermissionDeniedError):
            call(device)
    with pytest.raises(PermissionDeniedError):
        worker.model(pid, "production")
    with pytest.raises(NotFoundError):
        stranger.model(pid, "production")


def test_priorities_need_a_model(server):
    _, requester = server.user("fresh-req", "requester")
    project = requester.create_project(name="no model", labels=["a", "b"])
    requester.import_items(project["id"], [{"data": {"text": "one item"}}])
    with pytest.raises(ConflictError, match="no model"):
        requester.set_priorities(project["id"])
    listed = _cli(server, requester, "models", "list", str(project["id"]))  # an empty table said nothing
    assert listed.stdout == "" and f"no model yet; train one: crowdloop train {project['id']}" in listed.stderr


def test_a_server_url_without_its_scheme_is_refused_at_once(server):
    """``--url 127.0.0.1:PORT`` failed at the first request, as if the server were away."""
    host_and_port = server.url.removeprefix("http://")
    for url in (host_and_port, f"localhost:{host_and_port.split(':')[1]}", "ftp://example.org"):
        done = subprocess.run([sys.executable, "-m", "crowdloop", "projects", "list", "--url", url, "--token", "x"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2 and "must be an absolute http:// or https:// URL" in done.stderr, (url, done.stderr)


def test_training_with_nothing_to_learn_from_says_what_to_do(server):
    """ "aggregate first" sent a requester whose project had no items, or no answers, to a run that
    labels nothing."""
    _, requester = server.user("empty-train-req", "requester")
    project = requester.create_project(name="nothing yet", labels=["a", "b"], min_overlap=1, max_overlap=1)["id"]
    with pytest.raises(CrowdloopError, match="no regular items to train on: import items"):
        requester.train_model(project)
    requester.import_items(project, [{"data": {"text": f"item {i}"}} for i in range(3)])
    with pytest.raises(CrowdloopError, match="no answers on its 3 regular items yet"):
        requester.train_model(project)
    requester.start(project)
    _, worker = server.user("empty-train-worker", "worker")
    worker.submit(worker.next_task(project)["assignment_id"], label="a")
    with pytest.raises(CrowdloopError, match="aggregate first"):  # answered, not yet aggregated
        requester.train_model(project)


def test_labels_of_one_class_are_refused_with_the_reason(server):
    _, requester = server.user("one-class-req", "requester")
    _, worker = server.user("one-class-worker", "worker")
    project = requester.create_project(name="one class", labels=["neg", "pos", "neu"], min_overlap=1, max_overlap=1)
    requester.import_items(project["id"], [{"data": {"text": f"item {i}"}} for i in range(4)])
    requester.import_items(project["id"], [{"data": {"text": "gold"}, "gold_label": "pos"}])
    requester.start(project["id"])
    while (task := worker.next_task(project["id"])) is not None:
        worker.submit(task["assignment_id"], label="neg")
    requester.aggregate(project["id"])
    with pytest.raises(InvalidInputError, match="all 4 labeled regular items of project .* are labeled 'neg'"):
        requester.train_model(project["id"])


def test_artifacts_live_under_the_data_dir(server):
    root = Path(server.log.parent / "data" / "models")
    assert any(root.rglob("model.onnx"))


def test_training_on_the_crowd_learns_from_the_raw_answers(product, server):
    """``targets="crowd"``: the classifier and the workers' confusion matrices learned together
    from the raw answers; its targets are kept beside the artifact for the drift reference."""
    client, pid = product["client"], product["id"]
    on_labels = client.train_model(pid, family="logreg")["version"]
    on_crowd = client.train_model(pid, family="logreg", targets="crowd")["version"]
    assert on_crowd["lineage"]["targets"] == "crowd (Raykar EM)" and "targets" not in on_labels["lineage"]
    assert on_crowd["lineage"]["crowd_iterations"] >= 1
    assert on_crowd["metrics"]["macro_f1"] > 0.55  # not the always-"0" model
    assert on_crowd["metrics"]["accuracy"] >= on_labels["metrics"]["accuracy"] - 0.01
    kept = Path(server.log.parent / "data" / "models" / str(pid) / f"{on_crowd['version']}.targets.parquet")
    targets = pd.read_parquet(kept)
    assert list(targets.columns) == ["item_id", "0", "1"] and len(targets) > 0.95 * N_REGULAR
    assert np.allclose(targets[["0", "1"]].sum(axis=1), 1.0)
    with pytest.raises(Exception, match="targets must be one of labels, crowd"):
        client.train_model(pid, family="logreg", targets="gold")


def test_the_optional_pytorch_family_trains_registers_and_serves_from_its_onnx_graph(product, server, tmp_path):
    """``family="torch_mlp"`` over the API: the server trains the network (PyTorch installed),
    scores it on gold, and stores an artifact whose ONNX graph the edge runtime serves."""
    require(torch_installed(), "PyTorch is not installed (pip install 'crowdloop[torch]'): torch_mlp cannot train")
    client, pid = product["client"], product["id"]
    version = client.train_model(pid, family="torch_mlp", seed=1)["version"]
    metrics, gold = version["metrics"], product["gold"]
    assert version["family"] == "torch_mlp" and metrics["n"] > 0.95 * N_GOLD
    assert metrics["accuracy"] > float((gold == gold.mode()[0]).mean()) and metrics["macro_f1"] > 0.55
    folder = tmp_path / "mlp"
    client.download_model(pid, version["version"], folder)
    frame, labels = _gold_frame(product)
    assert evaluate(TrainedModel.load(folder), frame, labels)["accuracy"] == pytest.approx(metrics["accuracy"])
    edge = EdgeModel(folder, version["version"])
    row = frame.iloc[0].to_dict()
    served = edge.predict(row)
    expected = TrainedModel.load(folder).predict_proba(frame.head(1))
    assert served.label == expected.idxmax(axis=1).iloc[0]
    assert served.confidence == pytest.approx(float(expected.max(axis=1).iloc[0]), abs=1e-5)


def test_a_version_records_every_parameter_it_was_fitted_with(product):
    version = product["client"].model(product["id"], 1)  # a linear SVM trained with no parameter given
    assert version["params"] == {"C": 0.5, "random_state": 0, "targets": "labels"}


RTE_REGULAR, RTE_GOLD, RTE_MADE_GOLD = 200, 60, 80


@pytest.fixture(scope="module")
def rte_project(server) -> dict[str, Any]:
    """The audit's project, small: 260 RTE pairs, 200 labeled by the recorded crowd (5 answers each), 60 gold."""
    data = load_dataset("rte")
    assert data.items is not None
    tasks = np.random.default_rng(1).choice(data.items["task"].to_numpy(), RTE_REGULAR + RTE_GOLD, replace=False)
    items = data.items.set_index("task").loc[tasks]
    gold = data.gold.astype(str)
    _, requester = server.user("auditor", "requester")
    project = requester.create_project(name="rte promotion", labels=["0", "1"], min_overlap=1, max_overlap=10)
    rows = [
        {"data": {"text": row.text, "text_b": row.text_b}, "external_id": str(task),
         **({"gold_label": gold[task]} if position >= RTE_REGULAR else {})}
        for position, (task, row) in enumerate(items.iterrows())
    ]  # fmt: skip
    assert requester.import_items(project["id"], rows)["created"] == len(rows)
    answers = data.answers[data.answers["task"].isin(set(tasks))].groupby("task").head(5)
    answers = answers.assign(task=answers["task"].astype(str))
    _import_answers(server.database_url, project["id"], answers)
    requester.aggregate(project["id"])
    requester.start(project["id"])
    return {"id": project["id"], "client": requester, "tasks": [str(t) for t in tasks], "gold": gold}


def _rte_gold_frame(rte_project: dict[str, Any], external_ids: list[str]) -> tuple[pd.DataFrame, pd.Series]:
    """These items (by external id) as the model reads them, and their true labels."""
    wanted = set(external_ids)
    listed = [i for i in rte_project["client"].iter_items(rte_project["id"]) if i["external_id"] in wanted]
    frame = pd.DataFrame([{**i["data"], ID_COLUMN: i["id"]} for i in listed])
    labels = pd.Series({i["id"]: rte_project["gold"][int(i["external_id"])] for i in listed})
    return frame, labels


def test_production_is_never_scored_on_gold_it_learned_from(rte_project, server, tmp_path):
    """The audit: items v1 learned from, made gold since, flattered v1 (0.79 where it scores 0.68 on
    real held-out gold), so a fair candidate could not win. Both are scored on the gold neither learned from."""
    client, pid, tasks = rte_project["client"], rte_project["id"], rte_project["tasks"]
    first = client.train_model(pid, family="logreg")
    v1 = first["version"]
    assert first["promoted"] is True and v1["metrics"]["n"] == RTE_GOLD
    made_gold = tasks[:RTE_MADE_GOLD]  # regular items v1 learned from
    rows = [{"data": {}, "external_id": t, "gold_label": rte_project["gold"][int(t)]} for t in made_gold]
    assert client.import_items(pid, rows)["gold_added"] == RTE_MADE_GOLD

    second = client.train_model(pid, family="logreg")
    v2, cmp = second["version"], second["comparison"]
    assert v2["metrics"]["n"] == RTE_GOLD + RTE_MADE_GOLD  # v2 learned from none of today's gold
    # production is scored on the 60 gold items it did not learn from: what it scored when it was made
    assert cmp["production_score"]["accuracy"] == pytest.approx(v1["metrics"]["accuracy"])
    assert cmp["production_score"]["macro_f1"] == pytest.approx(v1["metrics"]["macro_f1"])
    assert cmp["gold_items"] == RTE_GOLD and cmp["gold_learned"] == {"1": RTE_MADE_GOLD}
    assert first["comparison"]["gold_items"] == RTE_GOLD
    client.download_model(pid, 2, tmp_path / "v2")
    original, labels = _rte_gold_frame(rte_project, tasks[RTE_REGULAR:])
    on_shared = evaluate(TrainedModel.load(tmp_path / "v2"), original, labels)
    assert on_shared["n"] == RTE_GOLD and cmp["candidate_score"]["accuracy"] == pytest.approx(on_shared["accuracy"])
    mine, theirs = cmp["candidate_score"], cmp["production_score"]
    assert second["promoted"] == beats(mine, theirs)
    rejected_or_promoted = client.model_events(pid)[-1]
    assert rejected_or_promoted["detail"]["gold_items"] == RTE_GOLD

    # by hand: the same held-out gold, and the CLI says on how many items
    done = _cli(
        server, client, "models", "promote", str(pid), "1" if second["promoted"] else "2", "--reason", "compare by hand"
    )
    assert f"both on the {RTE_GOLD} gold items neither learned from (version 1 learned from 80)" in " ".join(
        done.stderr.split()
    )
    manual = client.model_events(pid)[-1]["detail"]
    assert manual["manual"] is True and manual["gold_items"] == RTE_GOLD
    v1_score = manual["candidate_score"] if manual["candidate"] == 1 else manual["production_score"]
    assert v1_score["accuracy"] == pytest.approx(v1["metrics"]["accuracy"])
    if client.model(pid, "production")["version"] != 1:
        client.promote_model(pid, 1, "back to the first")


def test_with_no_gold_held_out_from_both_a_candidate_is_not_promoted_automatically(rte_project, server):
    """Today's gold is only items production learned from: nothing fair to compare on, so the
    candidate stays candidate, saying why; the owner can still promote it by hand."""
    client, pid, tasks = rte_project["client"], rte_project["id"], rte_project["tasks"]
    assert client.model(pid, "production")["version"] == 1
    original = {i["id"] for i in client.iter_items(pid) if i["external_id"] in set(tasks[RTE_REGULAR:])}
    for item_id in sorted(original):  # the original gold becomes regular: left is gold v1 learned from
        client.remove_gold(pid, item_id)
    client.aggregate(pid)
    done = _cli(server, client, "train", str(pid))
    said = " ".join(done.stderr.split())
    assert "kept as candidate, not compared with production (version 1)" in said
    assert f"no gold item is held out from both versions: of the {RTE_MADE_GOLD} gold items, version 1 learned" in said
    rejected = client.model_events(pid)[-1]
    assert rejected["kind"] == "rejected" and rejected["detail"]["gold_items"] == 0
    assert rejected["detail"]["candidate_score"] is None and rejected["detail"]["production_score"] is None
    assert rejected["detail"]["gold_learned"] == {"1": RTE_MADE_GOLD}
    assert client.model(pid, "production")["version"] == 1
    newest = client.models(pid)[-1]["version"]
    by_hand = client.promote_model(pid, newest, "trust it without gold")
    assert by_hand["changed"] is True and by_hand["aliases"] == ["candidate", "production"]
    said_by_hand = by_hand["comparison"]
    assert said_by_hand["gold_items"] == 0 and "no gold item is held out" in said_by_hand["no_shared_gold"]


def test_a_production_reading_a_new_field_says_what_edge_clients_get(rte_project, server):
    """A version that reads a field production did not: its promotion (automatic, or by hand) warns
    that edge clients that do not send it get predictions as if it were empty."""
    client, pid = rte_project["client"], rte_project["id"]
    before = client.model(pid, "production")["version"]
    client.update_project(pid, fields=["text", "text_b", "brand"])
    data = load_dataset("rte")
    unused = data.items[~data.items["task"].astype(str).isin(set(rte_project["tasks"]))].head(80)
    brands = np.random.default_rng(2).choice(["acme", "zeta"], len(unused))
    rows = [
        {"data": {"text": row.text, "text_b": row.text_b, "brand": brand}, "external_id": f"b{row.task}",
         **({"gold_label": "1" if brand == "acme" else "0"} if k % 2 else {})}
        for k, (row, brand) in enumerate(zip(unused.itertuples(index=False), brands, strict=True))
    ]  # fmt: skip
    assert client.import_items(pid, rows)["created"] == len(rows)
    # the brand decides the label here (the gold too): a model that reads it wins the comparison
    regular = [(r["external_id"], "1" if r["data"]["brand"] == "acme" else "0") for r in rows if "gold_label" not in r]
    answers = pd.DataFrame([{"task": t, "worker": f"w{k}", "label": label} for t, label in regular for k in range(3)])
    _import_answers(server.database_url, pid, answers)
    client.aggregate(pid)
    done = _cli(server, client, "train", str(pid))
    newest = client.models(pid)[-1]
    warning = (f"version {newest['version']} reads 'brand', which version {before} did not; edge clients that do "
               "not send it get predictions as if it were empty")  # fmt: skip
    said = " ".join(done.stderr.split())
    assert "promoted to production" in said and f"warning: {warning}" in said
    promoted = client.model_events(pid)[-1]
    assert promoted["kind"] == "promoted" and promoted["detail"]["new_fields"] == ["brand"]
    assert promoted["detail"]["warning"] == warning
    back = client.promote_model(pid, before, "back")  # reads fewer fields: nothing to warn about
    assert "warning" not in back["comparison"]
    done = _cli(server, client, "models", "promote", str(pid), str(newest["version"]), "--reason", "again")
    assert f"warning: {warning}" in " ".join(done.stderr.split())
    assert client.model_events(pid)[-1]["detail"]["warning"] == warning
    # items from before the field was added lack it: active learning scores them as if it were empty
    ranked = client.set_priorities(pid, "entropy", batch_size=5)
    assert ranked["model_version"] == newest["version"] and ranked["scored"] > len(rows) // 2, ranked


def test_an_unusable_artifact_is_never_promoted_and_a_broken_production_is_replaced(product, server):
    """Run last: it leaves production on a version trained here."""
    client, pid = product["client"], product["id"]
    store = Path(server.log.parent / "data" / "models" / str(pid))
    spare = next(v for v in client.models(pid) if not v["aliases"])
    moved = store / f"{spare['version']}-moved"
    shutil.move(store / str(spare["version"]), moved)
    try:
        with pytest.raises(ArtifactError, match=f"artifact of model version {spare['version']} is missing") as raised:
            client.promote_model(pid, spare["version"], "it is gone")
        assert str(store) not in str(raised.value)  # no server path for the caller
    finally:
        shutil.move(moved, store / str(spare["version"]))
    production = client.model(pid, "production")["version"]
    (store / str(production) / "model.json").write_text("{}")  # altered on disk
    result = client.train_model(pid, family="logreg")
    assert result["promoted"] is True and "does not match its digest" in result["comparison"]["production_error"]
    assert client.model(pid, "production")["version"] == result["version"]["version"]
