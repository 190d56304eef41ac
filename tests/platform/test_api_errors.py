"""Bad requests get the API's error shape and the right status, never a bare 500, over a real server.

Each case here was once a 500 (or FastAPI's own ``{"detail": ...}``): a seed numpy refuses,
a version number too long for the database, a path no route has, an edge report naming a
model that does not exist or carrying an empty item. The last test runs a deliberately
failing route under uvicorn to show that a bug, too, is a JSON 500 that leaves the client's
kept-alive connection usable.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from crowdloop.api.app import InternalErrors
from crowdloop.errors import InvalidInputError, InvalidParameterError, NotFoundError
from crowdloop.ports import free_port

API = "/api/v1"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def owned(server: Any) -> dict[str, Any]:
    """A requester's project with one item, and a device granted it."""
    made, requester = server.user("errors-req", "requester")
    device, _ = server.user("errors-device", "device")
    project = requester.create_project(name="errors", labels=["a", "b"])
    requester.import_items(project["id"], [{"data": {"text": "an item"}}])
    requester.start(project["id"])
    requester.grant_access(project["id"], int(device["id"]))
    return {"id": project["id"], "client": requester, "token": str(made["token"]), "device_token": str(device["token"])}


def _call(server: Any, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        return http.request(method, API + path, **kwargs)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**40])
def test_a_seed_out_of_range_is_refused_before_any_work(server, owned, seed):
    for path, body in ((f"/projects/{owned['id']}/models/train", {"targets": "crowd", "random_state": seed}),
                       (f"/projects/{owned['id']}/priorities", {"random_state": seed})):  # fmt: skip
        with pytest.raises(InvalidInputError, match="random_state: Input should be"):
            owned["client"]._call("POST", path, json=body)
    with pytest.raises(InvalidParameterError, match="random_state must be between 0 and 4294967295; got -1"):
        from crowdloop.learning.service import TrainOptions

        TrainOptions(random_state=-1).check()  # the library path says the same


@pytest.mark.parametrize("ref", ["99999999999999999999", "2147483648"])
def test_a_version_number_no_model_can_have_is_a_404(owned, ref):
    with pytest.raises(NotFoundError, match=f"has no model version {ref}"):
        owned["client"].model(owned["id"], ref)


@pytest.mark.parametrize("ref", ["\u00b2", "\u0661"])  # superscript two, Arabic-Indic one: digits, not numbers
def test_a_version_that_only_looks_like_a_number_is_a_422(owned, ref):
    with pytest.raises(InvalidInputError, match="neither a number nor one of"):
        owned["client"].model(owned["id"], ref)


def test_an_id_out_of_the_databases_range_is_a_422(server, owned):
    response = _call(server, owned["token"], "GET", f"/projects/{2**70}")
    assert response.status_code == 422 and response.json()["error"] == "InvalidInputError", response.text
    assert "out of range" in response.json()["detail"]


def test_paths_and_methods_no_route_has_answer_in_the_error_shape(server, owned):
    token = owned["token"]
    missing = _call(server, token, "GET", f"/projects/{owned['id']}/models/1/nothing-here")
    assert missing.status_code == 404 and missing.json() == {
        "error": "NotFoundError", "detail": f"no route GET {API}/projects/{owned['id']}/models/1/nothing-here"}  # fmt: skip
    wrong = _call(server, token, "DELETE", f"/projects/{owned['id']}/models/1")
    assert wrong.status_code == 405 and wrong.json()["error"] == "MethodNotAllowedError"
    no_body = _call(server, token, "POST", f"/projects/{owned['id']}/models/1/promote")
    assert no_body.status_code == 422 and no_body.json()["detail"] == "request body: Field required"


def test_a_check_of_our_own_reads_without_pydantics_prefix(server, owned):
    """It read "request body: Value error, max_overlap must be at least min_overlap"."""
    body = {"name": "backwards", "labels": ["a", "b"], "min_overlap": 5, "max_overlap": 1}
    refused = _call(server, owned["token"], "POST", "/projects", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == "request body: max_overlap must be at least min_overlap", refused.text


def test_edge_reports_name_a_real_version_and_carry_content(server, owned):
    token, pid = owned["device_token"], owned["id"]
    entry = {"client_id": uuid.uuid4().hex, "data": {"text": "a lamp"}, "model_version": 999, "reason": "unsure",
             "confidence": 0.2}  # fmt: skip
    unknown = _call(server, token, "POST", f"/projects/{pid}/edge/feedback", json=[entry])
    assert unknown.status_code == 422 and "has no model version 999; nothing was stored" in unknown.json()["detail"]
    for empty in ({}, {"text": "   ", "text_b": ""}):
        refused = _call(server, token, "POST", f"/projects/{pid}/edge/feedback", json=[{**entry, "data": empty}])
        assert refused.status_code == 422 and "empty item: no field has content" in refused.json()["detail"]
    items = owned["client"].items(pid)
    assert [item["data"]["text"] for item in items] == ["an item"]  # nothing was stored


@pytest.fixture
def failing_server() -> Iterator[str]:
    """uvicorn serving an app whose one route is a bug, behind :class:`InternalErrors`."""
    app = FastAPI()
    app.add_middleware(InternalErrors)

    @app.get("/bug")
    def bug() -> None:
        raise RuntimeError("a bug")

    @app.get("/fine")
    def fine() -> dict[str, bool]:
        return {"fine": True}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, f"the test app did not start on port {port}"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _local_port(response: httpx.Response) -> int:
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


def test_a_bug_is_a_json_500_and_the_connection_stays_usable(failing_server):
    """Let out of the app, the error made uvicorn close the connection after its plain-text 500,
    and the SDK's next call on it failed with "connection reset"."""
    with httpx.Client(base_url=failing_server, timeout=10) as http:
        first = http.get("/bug")
        port = _local_port(first)
        assert first.status_code == 500 and first.json() == {
            "error": "InternalError", "detail": "the server failed on this request; the error is in its log."}  # fmt: skip
        time.sleep(0.2)  # time for a close to arrive, were there one
        second = http.get("/fine")
        assert second.json() == {"fine": True} and _local_port(second) == port  # the same connection


def test_a_body_over_the_limit_is_refused_before_it_is_read(server, owned):
    """Only the headers are sent, announcing 200 MB (over CROWDLOOP_MAX_UPLOAD_MB's 100): the answer
    comes at once, so the server never waited for, or held, the body."""
    host, port = server.url.removeprefix("http://").split(":")
    head = (f"POST {API}/projects/{owned['id']}/models/train HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {owned['token']}\r\nContent-Type: application/json\r\n"
            "Content-Length: 200000000\r\n\r\n")  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())
        chunks = []
        while chunk := sock.recv(65536):  # to the end: the server closes the connection after it
            chunks.append(chunk)
        answer = b"".join(chunks).decode()
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert '"error":"PayloadTooLargeError"' in answer and "over the 100 MB limit" in answer


def test_a_chunked_body_over_the_limit_is_a_413_too(server, owned):
    """Sent in chunks (no Content-Length) it was read until over the limit and then answered with
    FastAPI's 400 "There was an error parsing the body"."""
    import httpx

    def chunks():
        yield b"["
        for _ in range(110):  # 110 MB of rows, over the 100 MB limit
            yield b'{"data": {"text": "' + b"x" * (2**20 - 30) + b'"}},'
        yield b"{}]"

    answer = httpx.post(f"{server.url}{API}/projects/{owned['id']}/items", content=chunks(), timeout=60,
                        headers={"Authorization": f"Bearer {owned['token']}", "Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 413, answer.text[:200]
    assert answer.json()["error"] == "PayloadTooLargeError"


def test_only_a_multipart_upload_gets_room_beyond_the_limit(tmp_path):
    """The 1 MiB a multipart upload needs around its file was added to every request: with a limit
    of 0.05 MB a JSON import of 0.06 MB was stored (and the 413 said "over the 0 MB limit")."""
    import warnings

    from crowdloop.api import create_app
    from crowdloop.config import Settings

    with warnings.catch_warnings():  # starlette's note that its test client will move off httpx
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'limit.db'}", webhook_dispatcher=False,
                        admin_token="cl_limit_admin_token", max_upload_mb=0.05)  # fmt: skip
    limit = int(0.05 * 2**20)
    rows = [f"item {i} {uuid.uuid4().hex * 8}" for i in range(200)]
    with TestClient(create_app(settings)) as http:
        http.headers["Authorization"] = "Bearer cl_limit_admin_token"
        project = http.post(f"{API}/projects", json={"name": "limit", "labels": ["a", "b"]}).json()["id"]
        body = [{"data": {"text": text}} for text in rows]
        json_import = http.post(f"{API}/projects/{project}/items", json=body)
        assert len(json_import.request.content) > limit and json_import.status_code == 413, json_import.text
        assert json_import.json()["detail"] == "the request is over the 0.05 MB limit; nothing was stored."
        csv = "text\n" + "\n".join(rows[: limit // 300]) + "\n"
        csv += "x" * (limit - len(csv) - 1) + "\n"  # the file is just under the limit, the request over it
        upload = http.post(f"{API}/projects/{project}/items/upload", files={"file": ("items.csv", csv.encode())})
        assert len(upload.request.content) > limit and upload.status_code == 200, upload.text
        over = http.post(f"{API}/projects/{project}/items/upload", files={"file": ("items.csv", csv.encode() + b"y\n")})
        assert over.status_code == 413 and "over the 0.05 MB limit" in over.json()["detail"], over.text
        assert len(http.get(f"{API}/projects/{project}/items", params={"limit": 1000}).json()) == limit // 300 + 1


@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
def test_text_no_database_can_store_is_a_422_naming_the_field(server, owned, bad):
    """A NUL was a 500 on PostgreSQL (which refuses it in text) and stored on SQLite, where a label
    with one was accepted; a lone surrogate (JSON's "\\ud800") was a 500 on both. Nothing is stored."""
    worker, _ = server.user("text-worker", "worker")
    owned["client"].grant_access(owned["id"], int(worker["id"]))
    project, item = f"/projects/{owned['id']}", owned["client"].items(owned["id"])[0]["id"]
    owner, ban = owned["token"], f"/projects/{owned['id']}/workers/{worker['id']}"
    cases = [
        (server.admin_token, "POST", "/users", {"name": f"a{bad}b", "role": "worker"}, "name"),
        (owner, "POST", "/projects", {"name": f"p{bad}", "labels": ["a", "b"]}, "name"),
        (owner, "POST", "/projects", {"name": "p", "labels": ["a", "b"], "instructions": f"i{bad}"}, "instructions"),
        (owner, "POST", "/projects", {"name": "p", "labels": ["a", f"b{bad}"]}, "labels.1"),
        (owner, "PATCH", project, {"name": f"p{bad}"}, "name"),
        (owner, "PATCH", project, {"instructions": f"i{bad}"}, "instructions"),
        (owner, "POST", f"{ban}/ban", {"reason": f"r{bad}"}, "reason"),
        (owner, "POST", f"{ban}/unban", {"reason": f"r{bad}"}, "reason"),
        (owner, "POST", f"{project}/bonuses", {"worker_id": worker["id"], "amount": 0.5, "reason": f"r{bad}"}, "reason"),
        (owner, "POST", f"{project}/review/{item}", {"label": "a", "explanation": f"e{bad}"}, "explanation"),
    ]  # fmt: skip
    for token, method, path, body, field in cases:
        response = _call(server, token, method, path, content=json.dumps(body), headers=JSON)
        assert response.status_code == 422 and response.json()["error"] == "InvalidInputError", (path, response.text)
        detail = response.json()["detail"]
        if bad == "\x00":
            assert detail == f"{field}: holds a NUL character, which cannot be stored", (path, detail)
        else:  # pydantic's own words where the field has a length (it checks the text first)
            assert detail.startswith(f"{field}: ") and "nicode" in detail, (path, detail)
    assert [p["name"] for p in owned["client"].projects()] == ["errors"]
    assert owned["client"].project(owned["id"])["instructions"] == ""
    assert owned["client"].bans(owned["id"]) == [] and owned["client"].payouts(owned["id"]) == []
    assert owned["client"].items(owned["id"])[0]["is_gold"] is False  # no review decision


def test_trainings_past_the_limit_are_refused_at_once_and_the_place_comes_back():
    from crowdloop.api.deps import Api
    from crowdloop.config import Settings
    from crowdloop.errors import BusyError

    api = Api(None, None, Settings(max_trainings=1), None, threading.BoundedSemaphore(1))  # type: ignore[arg-type]
    refused = pytest.raises(BusyError, match=r"training 1 model\(s\) already \(CROWDLOOP_MAX_TRAININGS\)")
    with api.training_slot(), refused, api.training_slot():
        pass
    with api.training_slot():  # released when the first training ended
        pass
    with pytest.raises(RuntimeError), api.training_slot():
        raise RuntimeError("a training that fails gives its place back too")
    with api.training_slot():
        pass


def test_numbers_that_are_not_finite_are_refused_not_stored(server, owned):
    body = '{"name": "x", "labels": ["a", "b"], "price": Infinity}'  # JSON as JavaScript writes it
    created = _call(server, owned["token"], "POST", "/projects", content=body,
                    headers={"Content-Type": "application/json"})  # fmt: skip
    assert created.status_code == 422 and created.json()["error"] == "InvalidInputError", created.text
    items = '[{"data": {"text": "priced"}, "priority": NaN}]'
    imported = _call(server, owned["token"], "POST", f"/projects/{owned['id']}/items", content=items,
                     headers={"Content-Type": "application/json"})  # fmt: skip
    assert imported.status_code == 200, imported.text  # the row is rejected, with its reason, not a 500
    report = imported.json()
    assert report["created"] == 0 and "priority" in report["rejected"][0]["reason"]
    made, _ = server.user("errors-infinite-bonus", "worker")
    bonus = _call(server, owned["token"], "POST", f"/projects/{owned['id']}/bonuses", headers=JSON,
                  content=f'{{"worker_id": {made["id"]}, "amount": Infinity}}')  # fmt: skip
    assert bonus.status_code == 422 and "amount" in bonus.json()["detail"], bonus.text  # it overflowed: a 500


def test_nesting_too_deep_to_read_is_refused(server, owned, tmp_path):
    """Item data nested 600 deep ran the storability check out of stack, and a file nested 100,000
    deep the JSON parser itself: each was a 500."""
    items = f"/projects/{owned['id']}/items"
    nested = '[{"data": {"text": "d", "n": ' + "[" * 600 + "]" * 600 + "}}]"
    imported = _call(server, owned["token"], "POST", items, content=nested, headers=JSON)
    assert imported.status_code == 200, imported.text
    assert "field 'n' is nested more than 32 levels deep" in imported.json()["rejected"][0]["reason"]
    deepest = "[" * 100_000 + "]" * 100_000
    body = _call(server, owned["token"], "POST", items, content=deepest, headers=JSON)
    assert body.status_code == 400 and "error parsing the body" in body.json()["detail"], body.text  # FastAPI's
    for name, content in (("deep.jsonl", '{"data": ' + deepest + "}\n"), ("deep.json", deepest)):
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(InvalidInputError, match="nested too deeply"):
            owned["client"].upload_items(owned["id"], path)
    assert owned["client"].status(owned["id"])["items"] == 1  # nothing stored but the item it had
