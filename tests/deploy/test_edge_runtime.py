"""The edge runtime against a real `crowdloop serve` on a SQLite file: it pulls and verifies the
production model, predicts what scikit-learn predicts, swaps versions under load without
dropping a request, and keeps predicting while the server is killed; everything it queued
meanwhile arrives exactly once after the restart."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from crowdloop.client import Client
from crowdloop.crowd.dedup import normalize_fields
from crowdloop.deploy.edge import EdgeRuntime
from crowdloop.deploy.edge_http import DRAIN_LIMIT, MAX_BODY, EdgeServer
from crowdloop.deploy.onnx import TOLERANCE, export_onnx
from crowdloop.learning import TrainedModel, registry
from crowdloop.ports import free_port
from crowdloop.storage.db import make_engine, session_factory, unit_of_work
from crowdloop.storage.models import EdgeFeedback, EdgeTelemetry, Item, Project
from deploy.helpers import ADMIN_TOKEN, Serve, records

pytestmark = [pytest.mark.shared, pytest.mark.slow]


@pytest.fixture(scope="module")
def world(serve: Serve) -> dict[str, Any]:
    admin = Client(serve.url, ADMIN_TOKEN)
    project = admin.create_project(name="edge matching", labels=["0", "1"])
    admin.import_items(project["id"], [{"data": {"text": f"imported {k}", "text_b": f"item {k}"}} for k in range(5)])
    admin.start(project["id"])
    device = admin.create_user("edge-device", "device")
    admin.grant_access(project["id"], int(device["id"]))
    worker = admin.create_user("edge-crowd", "worker")
    admin.close()
    return {"project": int(project["id"]), "token": str(device["token"]), "worker": str(worker["token"])}


def publish(serve: Serve, project_id: int, model: TrainedModel, folder: Path) -> int:
    """Register ``model`` (saved and exported) in the server's database and make it production."""
    model.save(folder)
    export_onnx(model, folder)
    engine = make_engine(serve.database_url, pool_size=1)
    try:
        with unit_of_work(session_factory(engine)) as session:
            project = session.get(Project, project_id)
            assert project is not None
            version = registry.register_version(
                session, project, folder, serve.data_dir / "models", family=model.family, params=model.params,
                metrics={}, lineage={"test": "edge"},
            )  # fmt: skip
            registry.set_alias(session, version, "production", "edge test")
            return int(version.version)
    finally:
        engine.dispose()


def wait_for(condition: Any, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def runtime(serve: Serve, world: dict[str, Any], trained, tmp_path_factory) -> Iterator[EdgeRuntime]:
    publish(serve, world["project"], trained("logreg"), tmp_path_factory.mktemp("v1") / "model")
    edge = EdgeRuntime(
        serve.url, world["token"], world["project"], tmp_path_factory.mktemp("edge-state"),
        poll_interval=0.3, flush_interval=0.5, threshold=0.8, audit_rate=0.05, random_state=0,
    ).start()  # fmt: skip
    wait_for(lambda: edge.version == 1, what="version 1 on the edge")
    yield edge
    edge.close()


def probabilities(predictions: list[dict[str, Any]], classes: list[Any]) -> np.ndarray:
    return np.array([[p["probabilities"][str(c)] for c in classes] for p in predictions])


def test_edge_pulls_production_and_predicts_like_scikit_learn(runtime, product, trained):
    _, evaluation, _ = product
    expected = trained("logreg").predict_proba(evaluation)
    predictions = [runtime.predict(item) for item in records(evaluation)]
    got = probabilities(predictions, list(expected.columns))
    assert np.abs(got - expected.to_numpy()).max() < TOLERANCE
    assert {p["version"] for p in predictions} == {1}
    assert (runtime.state_dir / "models" / "1" / "model.onnx").is_file()


def test_local_http_endpoint_serves_predictions_metrics_and_health(runtime, product):
    _, evaluation, _ = product
    items = records(evaluation.head(5))
    server = EdgeServer(runtime, port=0).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            one = http.post("/predict", json=items[0]).json()
            assert one == runtime.predict(items[0])
            many = http.post("/predict", json={"items": items}).json()["predictions"]
            assert [p["label"] for p in many] == [runtime.predict(i)["label"] for i in items]
            unknown = http.post("/predict", json={"title": "another project's item", "price": 3})
            assert unknown.status_code == 422
            assert "none of the fields the model reads, ['text', 'text_b']" in unknown.json()["detail"]
            assert http.post("/predict", content=b"not json").status_code == 400
            wrong = http.post("/predict", json={"items": "x"})  # it was "lacks ['text', 'text_b']"
            assert wrong.status_code == 400 and '"items" must be a list' in wrong.json()["detail"]
            counted = _predictions_made(runtime)
            partly = http.post("/predict", json={"items": [items[0], {"title": "one side"}]})
            assert partly.status_code == 422 and "item 1 has none of the fields" in partly.json()["detail"]
            assert _predictions_made(runtime) == counted  # the first item was not counted either
            host, port = server.url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port)), timeout=5) as sock:  # it waited for the close
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n")
                assert sock.recv(200).split(b"\r\n")[0].endswith(b" 400 Bad Request")
            assert http.get("/health").json()["version"] == runtime.version
            metrics = http.get("/metrics").text
            assert "crowdloop_edge_predictions_total" in metrics and "crowdloop_edge_outbox_items" in metrics
    finally:
        server.stop()


def test_the_endpoint_refuses_what_a_web_page_on_the_device_can_send(runtime, product):
    """Any page open in the device's browser could POST text/plain to /predict (no preflight) and
    make edge items of what it sent; a page whose name was re-pointed at 127.0.0.1 could read it."""
    _, evaluation, _ = product
    item = records(evaluation.head(1))[0]
    server = EdgeServer(runtime, port=0).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.post("/predict", json=item).status_code == 200  # a program: no Origin
            attacks = [
                {"Origin": "http://evil.example", "Content-Type": "text/plain"},
                {"Origin": "null"},
                {"Sec-Fetch-Site": "cross-site"},
                {"Host": "evil.example:8765"},
            ]
            for headers in attacks:
                refused = http.post("/predict", content=json.dumps(item), headers=headers)
                assert refused.status_code == 403 and "programs on the device" in refused.json()["detail"], headers
            assert http.get("/metrics", headers={"Host": "evil.example"}).status_code == 403
            for host in ("localhost:1", "[::1]:1", "127.0.0.1"):
                assert http.get("/health", headers={"Host": host}).status_code == 200, host
    finally:
        server.stop()
    wide = EdgeServer(runtime, host="0.0.0.0", port=0).start()  # served to others, by names it cannot know
    try:
        url = f"http://127.0.0.1:{wide.server_address[1]}"
        assert httpx.get(f"{url}/health", headers={"Host": "edge:8765"}, timeout=30).status_code == 200
        origin = httpx.post(f"{url}/predict", json=item, headers={"Origin": "http://evil.example"}, timeout=30)
        assert origin.status_code == 403  # a web page is refused all the same
    finally:
        wide.stop()


def test_an_item_lacking_a_field_gets_the_servers_prediction_with_the_field_empty(runtime, product, trained):
    """A client that does not send a field the model reads (a version that reads a field added to
    the project since, say) got 422 from every request; training and the server's scoring read
    such an item with the field empty, and so does the edge now."""
    from crowdloop.learning.project_data import with_fields

    _, evaluation, _ = product
    model = trained("logreg")
    one_side = evaluation.head(20).drop(columns=["text_b"])
    expected = model.predict_proba(with_fields(one_side, model.featurizer.spec))
    server = EdgeServer(runtime, port=0).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            answers = [http.post("/predict", json=item) for item in records(one_side)]
            many = http.post("/predict", json={"items": records(one_side)})
    finally:
        server.stop()
    assert [a.status_code for a in answers] == [200] * len(answers) and many.status_code == 200
    predictions = [a.json() for a in answers]
    assert np.abs(probabilities(predictions, list(expected.columns)) - expected.to_numpy()).max() < TOLERANCE
    assert [p["label"] for p in many.json()["predictions"]] == [p["label"] for p in predictions]


def test_a_body_over_the_limit_is_413_and_the_connection_stays_usable(runtime, product):
    """It was 400 "the body must be a JSON item object: body over 1048576 bytes", answered before the
    body was read: the unread rest came in as the next request."""
    item = records(product[1].head(1))[0]
    server = EdgeServer(runtime, port=0).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            big = http.post("/predict", json={**item, "note": "x" * MAX_BODY})
            assert big.status_code == 413
            assert f"over the limit of {MAX_BODY} bytes (1 MiB)" in big.json()["detail"]
            after = http.post("/predict", json=item)  # the same connection: the big body was read and dropped
            assert after.status_code == 200 and after.json() == runtime.predict(item)
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:  # too big to read: closed
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n{" % (DRAIN_LIMIT + 1)
            )
            answer = b""
            with contextlib.suppress(ConnectionResetError):  # the unread rest of the body may reset it
                while chunk := sock.recv(65536):
                    answer += chunk
        head = answer.split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 413") and b"connection: close" in head
    finally:
        server.stop()


def test_hot_swap_drops_no_request(serve, world, runtime, product, trained, tmp_path):
    _, evaluation, _ = product
    items = records(evaluation)
    results: dict[int, list[dict[str, Any]]] = {n: [] for n in range(3)}  # each thread's, in its order
    failures: list[BaseException] = []
    stop = threading.Event()

    def hammer(n: int) -> None:
        k = n * 37
        while not stop.is_set():
            try:
                results[n].append(runtime.predict(items[k % len(items)]))
            except BaseException as error:  # any failure is a dropped request
                failures.append(error)
            k += 1

    threads = [threading.Thread(target=hammer, args=(n,), daemon=True) for n in range(3)]
    runtime.threshold, runtime.audit_rate = 0.0, 0.0  # this test is about the swap, not feedback
    for thread in threads:
        thread.start()
    try:
        new = publish(serve, world["project"], trained("naive_bayes"), tmp_path / "v2")
        wait_for(lambda: runtime.version == new, what=f"version {new} on the edge")
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        runtime.threshold, runtime.audit_rate = 0.8, 0.05
    versions = [r["version"] for mine in results.values() for r in mine]
    assert failures == [] and set(versions) == {1, new}
    # each thread's last prediction is the new model's (a thread starved of the interpreter lock may
    # finish an old-model prediction after another's new one: the order across threads proves nothing)
    assert all(mine and mine[-1]["version"] == new for mine in results.values())
    expected = trained("naive_bayes").predict_proba(evaluation)
    after = [runtime.predict(item) for item in items]
    assert np.abs(probabilities(after, list(expected.columns)) - expected.to_numpy()).max() < TOLERANCE


def _stored(serve: Serve, project_id: int) -> tuple[dict[str, dict[str, Any]], int]:
    """Feedback client id -> its item's data (``None`` if no item), and the predictions telemetry counted."""
    engine = make_engine(serve.database_url, pool_size=1)
    try:
        with unit_of_work(session_factory(engine)) as session:
            query = (
                select(EdgeFeedback.client_id, Item.data, Item.source)
                .outerjoin(Item, Item.id == EdgeFeedback.item_id)
                .where(EdgeFeedback.project_id == project_id)
            )
            rows = [(client_id, data, source) for client_id, data, source in session.execute(query)]
            total = select(func.coalesce(func.sum(EdgeTelemetry.predictions), 0))
            predictions = session.scalar(total.where(EdgeTelemetry.project_id == project_id))
    finally:
        engine.dispose()
    assert len(rows) == len({client_id for client_id, _, _ in rows})  # the unique key holds
    assert all(source == "edge" for _, _, source in rows)
    return {client_id: data for client_id, data, _ in rows}, int(predictions or 0)


def test_server_killed_and_restarted_predictions_never_stop_and_everything_arrives_once(
    serve, world, runtime, shared_dataset
):
    wait_for(lambda: runtime.outbox.size() == 0, timeout=120, what="the outbox to empty before the kill")
    serve.kill()
    fresh = records(shared_dataset("product").items.iloc[-400:])
    queued_before = _feedback_queued(runtime)
    offline = [runtime.predict(item) for item in fresh]
    assert len(offline) == len(fresh) and all(p["version"] == runtime.version for p in offline)
    time.sleep(1.5)  # the sync thread fails against the dead server and backs off meanwhile
    waiting = {e.id: e.payload for e in runtime.outbox.due("feedback", limit=100_000, now=float("inf"))}
    assert len(waiting) == _feedback_queued(runtime) - queued_before > 0
    serve.start()  # same port, same database file
    runtime.flush_telemetry()
    wait_for(lambda: runtime.outbox.size() == 0, timeout=120, what="the outbox to drain after the restart")
    stored, predicted = _stored(serve, world["project"])
    assert len(stored) == _feedback_queued(runtime)  # every item queued since the start, each once
    for client_id, payload in waiting.items():  # the ones queued while the server was dead
        assert stored[client_id] == normalize_fields(payload["data"])  # as every import stores it
    assert predicted == _predictions_made(runtime)  # telemetry counted every prediction once


def test_a_retried_delivery_creates_nothing_twice(runtime, world):
    entry = {"client_id": "retry-test-0001", "data": {"text": "a new lamp", "text_b": "an old lamp"},
             "model_version": 1, "reason": "audit", "label": 0, "confidence": 0.9}  # fmt: skip
    first = runtime.link.send("feedback", [entry])
    again = runtime.link.send("feedback", [entry, entry])
    assert first["created"] == 1
    assert again == {"received": 2, "created": 0, "merged": 0, "already_received": 2, "outside_fields": 0}


def test_an_edge_item_keeps_only_the_projects_fields(serve, runtime, world):
    """Edge feedback skipped the import's field checks: whatever an app sent /predict (its own
    answer column, a request id) became an item, and workers were shown it."""
    extra = {"client_id": "fields-test-0001", "model_version": 1, "reason": "unsure", "label": 0, "confidence": 0.5,
             "data": {"text": "a red kettle", "text_b": "a blue kettle", "label": "1", "request_id": "r-77"}}  # fmt: skip
    stranger = {**extra, "client_id": "fields-test-0002", "data": {"zzz": "only a field the project lacks"}}
    report = runtime.link.send("feedback", [extra, stranger])
    assert (report["created"], report["outside_fields"]) == (1, 1), report
    stored, _ = _stored(serve, world["project"])
    assert stored["fields-test-0001"] == {"text": "a red kettle", "text_b": "a blue kettle"}
    assert "fields-test-0002" not in stored


def test_an_edge_item_is_indexed_for_near_duplicates(serve, runtime, world):
    """Edge items got no signature nor LSH band keys: a later import never found them, and one much
    like an item already there was not marked."""
    from crowdloop.storage.models import ItemLshBand

    text = ("a stainless steel electric kettle with a blue light, a one litre jug, a removable filter, "
            "boil-dry protection and a cordless base that turns all the way round")  # fmt: skip
    entry = {"model_version": 1, "reason": "unsure", "label": 0, "confidence": 0.5}
    runtime.link.send("feedback", [{**entry, "client_id": "near-test-0001", "data": {"text": text, "text_b": "jug"}}])
    runtime.link.send(
        "feedback", [{**entry, "client_id": "near-test-0002", "data": {"text": text + "!", "text_b": "jug"}}]
    )
    engine = make_engine(serve.database_url, pool_size=1)
    try:
        with unit_of_work(session_factory(engine)) as session:
            first, second = (
                session.scalars(select(Item).where(Item.external_id == f"edge:near-test-000{n}")).one() for n in (1, 2)
            )
            bands = session.scalar(select(func.count()).where(ItemLshBand.item_id.in_([first.id, second.id])))
            assert (first.near_duplicate_of, second.near_duplicate_of) == (None, first.id)
            assert first.minhash is not None and bands == 2 * 8  # each item's band keys, as an import stores
    finally:
        engine.dispose()


def test_edge_items_go_to_the_crowd_before_imported_ones(serve, world, runtime):
    """The edge items are the ones the runtime above sent back (it needs the shared ``product``
    set, so without it this test skips with the others instead of finding no edge item)."""
    stored, _ = _stored(serve, world["project"])
    assert stored, "the runtime has sent nothing back yet"
    with Client(serve.url, world["worker"]) as worker:
        task = worker.next_task(world["project"])
    assert task is not None and not task["data"]["text"].startswith("imported")
    assert normalize_fields(task["data"]) in stored.values()  # an input an edge device sent back


def _feedback_queued(runtime: EdgeRuntime) -> int:
    return int(sum(m.value for m in _samples(runtime, "crowdloop_edge_feedback_queued_total")))


def _predictions_made(runtime: EdgeRuntime) -> int:
    return int(sum(m.value for m in _samples(runtime, "crowdloop_edge_predictions_total")))


def _samples(runtime: EdgeRuntime, name: str) -> list[Any]:
    return [s for metric in runtime.metrics.registry.collect() for s in metric.samples if s.name == name]


def test_cli_edge_run_serves_the_production_model(serve, world, runtime, product, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "crowdloop", "edge", "run", "--server", serve.url,
               "--project", str(world["project"]), "--port", str(port), "--state-dir", str(tmp_path / "state"),
               "--poll-interval", "0.5"]  # fmt: skip
    env = os.environ | {"CROWDLOOP_EDGE_TOKEN": world["token"]}  # not in the arguments, which ps shows
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(url), timeout=120, what="crowdloop edge run to serve a model")
        item = records(product[1].head(1))[0]
        answer = httpx.post(f"{url}/predict", json=item).json()
        assert answer == runtime.predict(item)  # same production version, same probabilities
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, process.stderr.read() if process.stderr else ""


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_an_entry_the_server_cannot_take_is_dropped_not_retried_for_ever(serve, world, runtime):
    """An empty item (the server refuses the whole batch) or a value strict JSON cannot carry
    (httpx refuses to send it) used to stop the feedback queue behind it for good."""
    empty = {"data": {"text": "", "text_b": " "}, "model_version": 1, "reason": "audit", "label": None,
             "confidence": 0.5}  # fmt: skip
    endless = {**empty, "data": {"text": float("inf"), "text_b": "x"}}
    good = {**empty, "data": {"text": "a queue that moves", "text_b": "on and on"}}
    ids = [runtime.outbox.put("feedback", payload) for payload in (empty, endless, good)]
    wait_for(lambda: ids[2] in _stored(serve, world["project"])[0], what="the good entry behind the bad ones")
    wait_for(lambda: runtime.outbox.size("feedback") == 0, what="the queue to empty")
    stored, _ = _stored(serve, world["project"])
    assert ids[0] not in stored and ids[1] not in stored
    refused = [s for s in _samples(runtime, "crowdloop_edge_deliveries_total") if s.labels["outcome"] == "refused"]
    assert sum(s.value for s in refused) >= 2


def test_an_edge_serves_a_kept_model_only_if_it_is_its_projects_and_intact(serve, runtime, world, tmp_path):
    """A damaged or edited copy was served as it was (and a corrupt one crashed the start), and an
    edge started for another project in the same state folder served this project's model."""

    def fresh(project: int, state: Path) -> EdgeRuntime:
        return EdgeRuntime(serve.url, world["token"], project, state, poll_interval=60)

    state = tmp_path / "state"
    shutil.copytree(runtime.state_dir, state, ignore=shutil.ignore_patterns("outbox*"))
    kept = fresh(world["project"], state)
    try:
        assert kept.load_local() and kept.version == runtime.version
    finally:
        kept.close()
    marker = state / "current.json"
    written = json.loads(marker.read_text())
    marker.write_text(json.dumps({k: v for k, v in written.items() if k != "project"}))  # as older edges wrote it
    older = fresh(world["project"], state)
    try:
        assert older.load_local() and json.loads(marker.read_text()) == written  # served, and rewritten
    finally:
        older.close()
    elsewhere = fresh(world["project"] + 1, state)
    try:
        assert not elsewhere.load_local()  # another project's model is not served
    finally:
        elsewhere.close()
    model = state / "models" / str(runtime.version) / "edge.json"
    edited = json.loads(model.read_text())
    edited["classes"] = edited["classes"][::-1]
    model.write_text(json.dumps(edited))
    damaged = fresh(world["project"], state)
    try:
        assert not damaged.load_local()  # it waits for the server's copy instead
    finally:
        damaged.close()


def test_an_edge_refuses_a_state_folder_of_another_servers_edge(serve, runtime, world, tmp_path):
    """The kept model was checked to be the same project's by number only: an edge started for
    another server (the default folder is the same for every run) served this server's model with
    that server away, and would have sent it this server's feedback."""
    from crowdloop.errors import InvalidParameterError

    state = tmp_path / "state"
    shutil.copytree(runtime.state_dir, state, ignore=shutil.ignore_patterns("outbox*"))
    assert json.loads((state / "server.json").read_text()) == {"server": serve.url}
    with pytest.raises(InvalidParameterError, match=f"holds the model and unsent feedback of an edge of {serve.url}"):
        EdgeRuntime("http://127.0.0.1:1", world["token"], world["project"], state, poll_interval=60)
    assert not (state / "outbox.sqlite").exists()  # refused before it opened anything
    respelled = serve.url.replace("http://", "HTTP://") + "/"
    same = EdgeRuntime(respelled, world["token"], world["project"], state, poll_interval=60)
    try:
        assert same.load_local() and same.version == runtime.version
    finally:
        same.close()
    (state / "server.json").unlink()  # a folder an older edge left: taken as this server's, and marked
    older = EdgeRuntime("http://127.0.0.1:1", world["token"], world["project"], state, poll_interval=60)
    older.close()
    assert json.loads((state / "server.json").read_text()) == {"server": "http://127.0.0.1:1"}


@pytest.mark.parametrize("server", ["127.0.0.1:8000", "localhost:8000", "ftp://example.org"])
def test_an_edge_refuses_a_server_url_without_http_and_writes_nothing(server, world, tmp_path):
    """It ran offline for ever ("missing an 'http://' or 'https://' protocol" at every poll) and kept
    the broken address as its server's, so the corrected command was then refused."""
    from crowdloop.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="must be an absolute http:// or https:// URL"):
        EdgeRuntime(server, world["token"], world["project"], tmp_path / "state", poll_interval=60)
    assert not (tmp_path / "state").exists()


def test_an_edge_whose_token_the_server_does_not_know_stops_at_start(serve, world, tmp_path):
    """It logged the 401 once and ran on, serving nothing, refused at every poll. A project not yet
    granted still starts (it may be granted later: test_predict_on_an_edge_the_server_refuses_says_why)."""
    from crowdloop.errors import AuthenticationError

    edge = EdgeRuntime(serve.url, "cl_no_such_token", world["project"], tmp_path / "state", poll_interval=60)
    with pytest.raises(AuthenticationError, match="does not know this device's token"):
        edge.start()
    assert edge._threads == []  # nothing left running, and the outbox is closed:
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        edge.outbox.due("feedback", 1)
    command = [sys.executable, "-m", "crowdloop", "edge", "run", "--server", serve.url, "--project",
               str(world["project"]), "--port", str(free_port()), "--state-dir", str(tmp_path / "cli-state")]  # fmt: skip
    env = os.environ | {"CROWDLOOP_EDGE_TOKEN": "cl_no_such_token"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == AuthenticationError.exit_code and "does not know this device's token" in done.stderr


@pytest.mark.parametrize(
    ("field", "value"),
    [("confidence_sample", [float("nan")]), ("input_stats", {"text": 5}), ("started_at", 1e20),
     ("class_counts", {"0": -3}), ("predictions", 2**40)],
)  # fmt: skip
def test_telemetry_a_drift_check_cannot_read_is_refused(serve, world, field, value):
    """Each was stored (or a 500), and from then on every drift check of the version failed."""
    batch = {"client_id": f"bad-telemetry-{field}", "model_version": 1, "started_at": 1.0, "ended_at": 2.0,
             "predictions": 5, "confidence_mean": 0.8, field: value}  # fmt: skip
    body = json.dumps([batch])  # NaN as the token a sloppy client writes
    answer = httpx.post(f"{serve.url}/api/v1/projects/{world['project']}/edge/telemetry", content=body,
                        headers={"Authorization": f"Bearer {world['token']}", "Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 422, answer.text
    assert field in answer.text


def test_an_edge_for_a_project_it_cannot_see_says_so(serve, world):
    """A wrong --project or a missing grant read as "no model yet": the edge waited without a word."""
    from crowdloop.deploy.link import ServerLink
    from crowdloop.errors import NotFoundError

    link = ServerLink(serve.url, world["token"], world["project"] + 1000)
    try:
        with pytest.raises(NotFoundError, match="granted to this device"):
            link.production()
    finally:
        link.close()


def test_predict_on_an_edge_the_server_refuses_says_why(serve, world, tmp_path):
    """/predict said "no production version, or it is loading" when the project was not granted
    to the device: the reason was only in the log."""
    from crowdloop.errors import BusyError

    def refusal() -> str:
        with pytest.raises(BusyError) as refused:
            edge.predict({"text": "a", "text_b": "b"})
        return str(refused.value)

    edge = EdgeRuntime(serve.url, world["token"], world["project"] + 1000, tmp_path / "state", poll_interval=60).start()
    try:
        deadline = time.monotonic() + 30  # the first pull runs in the background
        while "the last pull failed" not in refusal() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "granted to this device" in refusal()
    finally:
        edge.close()


def test_feedback_to_a_finished_project_puts_it_back_to_work(serve, world, runtime):
    """A project that finished (every item labeled) took the edge's items and never handed them out.
    One its owner finished by hand stays finished."""
    entry = {"model_version": 1, "reason": "unsure", "label": 0, "confidence": 0.55}
    with Client(serve.url, ADMIN_TOKEN) as admin:
        admin.update_project(world["project"], status="finished")  # by hand
        by_hand = {**entry, "client_id": "reopen-test-0000", "data": {"text": "a lamp, by hand", "text_b": "lamp"}}
        assert runtime.link.send("feedback", [by_hand])["created"] == 1
        assert admin.project(world["project"])["status"] == "finished"
        engine = make_engine(serve.database_url, pool_size=1)
        try:  # as the rule leaves a project whose last open item got its label
            with unit_of_work(session_factory(engine)) as session:
                session.get(Project, world["project"]).finished_by = "rule"
        finally:
            engine.dispose()
        by_rule = {**entry, "client_id": "reopen-test-0001", "data": {"text": "a lamp, reopened", "text_b": "lamp"}}
        assert runtime.link.send("feedback", [by_rule])["created"] == 1
        assert admin.project(world["project"])["status"] == "active"
    with Client(serve.url, world["worker"]) as worker:
        assert worker.next_task(world["project"]) is not None


@contextlib.contextmanager
def _portal(status: int, body: bytes) -> Iterator[str]:
    """A server that answers every GET and POST with ``status`` and ``body`` (a captive portal's
    page, a rate limit), at the URL yielded."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Portal(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.do_GET()

        def log_message(self, *_: Any) -> None:
            pass

    portal = ThreadingHTTPServer(("127.0.0.1", 0), Portal)
    threading.Thread(target=portal.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{portal.server_address[1]}"
    finally:
        portal.shutdown()
        portal.server_close()


def test_an_edge_starts_on_a_page_that_is_not_the_servers(tmp_path):
    """The token check at start let a captive portal's page (200, HTML) out of ``start()`` as a
    JSONDecodeError; it is the server away, and the edge starts."""
    with _portal(200, b"<html>Sign in to Wi-Fi</html>") as url:
        edge = EdgeRuntime(url, "t", 1, tmp_path / "s", poll_interval=60).start()
        try:
            wait_for(lambda: "not the server's JSON" in str(edge._no_model()), what="the first pull's reason")
        finally:
            edge.close()


@pytest.mark.parametrize(
    ("status", "body"), [(429, b'{"error": "slow down"}'), (200, b"<html>Sign in to Wi-Fi</html>")]
)
def test_an_answer_that_is_not_the_servers_verdict_keeps_the_entries(tmp_path, status, body):
    """A rate limit, or a captive portal's page, was taken for a refusal: the entries were dropped."""
    from crowdloop.deploy.link import ServerAwayError, ServerLink

    with _portal(status, body) as url:
        link = ServerLink(url, "token", 1)
        try:
            with pytest.raises(ServerAwayError):
                link.send("feedback", [{"client_id": "portal-test-01", "data": {"text": "x"}}])
        finally:
            link.close()
