"""Who may call what, over a real `crowdloop serve` process, on SQLite and PostgreSQL.

``ROUTES`` maps every (method, path) of the app to the actors allowed to call it; a route the
table does not cover fails ``test_every_route_is_in_the_table``, so a new route cannot slip in
unchecked. The actors, all on one project owned by ``owner`` (active, with regular items, a
gold item and answers of other workers):

    admin     an admin                           owner     the requester who owns the project
    stranger  another requester                  worker    a worker (the assignments used are theirs)
    worker2   another worker                     device    a device-role user

An allowed actor gets a 2xx; an actor in ``hidden`` gets 404, because the resource is not
theirs to see (another requester's project, another worker's assignment), so its existence
does not leak; every other actor gets 403. Without a token, with a wrong, malformed or revoked
token, every route answers 401 ``{"error": "AuthenticationError", ...}``.

Decisions, read from the code and checked here:

* Public: ``GET /api/v1/health`` (for load balancers; answers only status and version, and
  does not read the token at all), and what FastAPI serves itself: ``/openapi.json``, and with
  ``CROWDLOOP_API_DOCS`` ``/docs``, ``/docs/oauth2-redirect`` and ``/redoc``. They describe the
  API, which the published SDK describes anyway, and hold no data: the schema is static and
  carries no id, no token and no item text. The pages are off by default: they load Swagger's
  and ReDoc's scripts from a CDN onto the origin where the web UI keeps its token.
* ``GET /metrics`` (Prometheus text, at the root) is for admins, or for the scrape-only
  ``CROWDLOOP_METRICS_TOKEN``: project ids and volumes are business data, never public.
* Admins manage every project, and may take tasks (``assignment.next_task`` lets ``worker``
  and ``admin`` in), but an assignment belongs to one worker: even an admin gets 404 on it.
* A device sees a project only once its owner grants it access (open to all or not: a device
  belongs to no requester, so "open to all workers" does not let every device in), and then in
  the worker's (not the requester's) view, with its own standing. It cannot take tasks (403)
  and gets 403 on everything a requester manages.
* Gold stays hidden from workers: no payload a worker, worker2 or device can get carries
  ``gold_label``, ``is_gold``, ``gold_explanation``, an ``answers`` list, another worker's id
  or the gold item's explanation text. The one designed exception is training feedback: with
  ``rules.training_feedback`` on (the default), a *wrong* answer to a gold item is answered with
  the expected label and its explanation, after the answer is stored.
* Nor does any such payload carry an ``item_id``, or an item's id under another name: gold and
  regular items are served from queues of their own, each newest first, and gold is usually
  imported as a block, so the ids out of sequence would be the gold ones (and training feedback
  would confirm their range). A task is named by its assignment; requesters keep item ids.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from crowdloop.api import create_app
from crowdloop.client import Client
from crowdloop.config import Settings
from support import item_id_of

API = "/api/v1"
ACTORS = ("admin", "owner", "stranger", "worker", "worker2", "device")
WORKER_SIDE = ("worker", "worker2", "device")
EVERYONE = frozenset(ACTORS)
MARKER = "GOLD-EXPLANATION-MARKER-5f1e"
"""Only the gold item's explanation carries this text; no worker may ever read it."""
GOLD_LABEL, OTHER_LABEL = "neg", "pos"
PUBLIC = {("GET", f"{API}/health")}
FASTAPI_DOCS = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc")}
WEB_UI = {("GET", "/")}
"""The web UI: ``/`` redirects to ``/ui/``, static pages and scripts that hold no data (they fetch it with the token)."""
TASK_KEYS = {"assignment_id", "project_id", "data", "labels", "instructions", "expires_at"}
REQUESTER_ONLY_PROJECT_FIELDS = ("budget", "spent", "aggregation_method", "rules")


# --- the world: users, a project with gold and answers ---------------------------------------------


@dataclass
class World:
    http: httpx.Client
    tokens: dict[str, str]
    ids: dict[str, int]
    owner: Client
    """The SDK as ``owner``: to find the item behind a worker's task (workers are never told item ids)."""
    project: int
    gold_item: int
    target: int
    """A worker granted access, whom the ban and bonus routes ban, unban and pay."""
    spare: int
    """A user who is issued new tokens by the token route."""
    hook: int
    """A webhook of the project that no route deletes."""
    other_lease: int
    """An open assignment of worker2."""
    make_user: Callable[[str, str], dict[str, Any]]

    def request(self, token: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        headers |= kwargs.pop("headers", {})
        return self.http.request(method, path, headers=headers, **kwargs)

    def as_actor(self, actor: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.request(self.tokens[actor], method, path, **kwargs)

    def lease(self, actor: str, project: int | None = None) -> int:
        """An open assignment of ``actor`` (their current one, or a new one)."""
        response = self.as_actor(actor, "POST", f"{API}/projects/{project or self.project}/tasks/next")
        assert response.status_code == 200, response.text
        return int(response.json()["assignment_id"])


@pytest.fixture(scope="module")
def world(server: Any) -> Iterator[World]:
    made: dict[str, dict[str, Any]] = {}

    def make_user(name: str, role: str) -> dict[str, Any]:
        created, _ = server.user(name, role)
        return dict(created)

    for actor, role in [("admin", "admin"), ("owner", "requester"), ("stranger", "requester"), ("worker", "worker"),
                        ("worker2", "worker"), ("device", "device")]:  # fmt: skip
        made[actor] = make_user(actor, role)
    tokens = {actor: str(user["token"]) for actor, user in made.items()}
    ids = {actor: int(user["id"]) for actor, user in made.items()}
    owner = server.client(tokens["owner"])
    project = owner.create_project(
        name="authz", labels=[OTHER_LABEL, GOLD_LABEL], min_overlap=1, max_overlap=3, gold_share=0.3, price=0.01,
        budget=100.0, instructions="Is the sentence positive?", rules={"training_feedback": False},
    )  # fmt: skip
    rows: list[dict[str, Any]] = [{"data": {"text": f"regular sentence number {i}"}} for i in range(14)]
    rows.append({"data": {"text": "a control sentence"}, "gold_label": GOLD_LABEL, "gold_explanation": MARKER})
    assert owner.import_items(project["id"], rows)["created"] == len(rows)
    gold_item = next(item["id"] for item in owner.items(project["id"]) if item["is_gold"])
    owner.start(project["id"])
    for i in range(2):  # answers of other workers, so that a leak of them would show
        seeder = server.client(str(make_user(f"seeder{i}", "worker")["token"]))
        for _ in range(3):  # the control right, odd sentences one class and even ones the other (labels of both)
            task = seeder.next_task(project["id"])
            first = task["data"]["text"][-1] in "13579" or task["data"]["text"] == "a control sentence"
            seeder.submit(task["assignment_id"], GOLD_LABEL if first else OTHER_LABEL, seconds=2.0)
    owner.aggregate(project["id"])
    owner.grant_access(project["id"], ids["device"])
    hook = owner.add_webhook(project["id"], "http://127.0.0.1:9/crowdloop-hook", ["project.finished"])
    with httpx.Client(base_url=server.url, timeout=30) as http:
        state = World(
            http=http, tokens=tokens, ids=ids, owner=owner, project=project["id"], gold_item=gold_item,
            target=int(make_user("target", "worker")["id"]), spare=int(make_user("spare", "worker")["id"]),
            hook=int(hook["id"]), other_lease=0, make_user=make_user,
        )  # fmt: skip
        state.other_lease = state.lease("worker2")
        owner.grant_access(project["id"], state.target)  # bans and bonuses are for the project's workers
        yield state


# --- the table -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    root: bool = False
    """The path is from the server's root (``/metrics``), not under /api/v1."""


Build = Callable[[World, str, dict[str, Any]], Call]


@dataclass(frozen=True)
class Rule:
    """Who may call a route: ``allowed`` get one of ``ok``, ``hidden`` get 404, the others 403."""

    allowed: frozenset[str]
    build: Build
    hidden: frozenset[str] = frozenset()
    ok: tuple[int, ...] = (200,)
    prepare: Callable[[World], dict[str, Any]] | None = None
    """Fresh resources for one run of the route (an open assignment, webhooks to delete)."""
    intact: Callable[[World, dict[str, Any]], None] | None = None
    """Checked after the refused calls and before the allowed ones: nothing changed."""
    check: Callable[[World, str, httpx.Response], None] | None = None
    """Checked on each allowed answer."""


def manage(build: Build, ok: tuple[int, ...] = (200,), **extra: Any) -> Rule:
    """The project's requester and admins; another requester does not see the project at all."""
    return Rule(frozenset({"admin", "owner"}), build, frozenset({"stranger"}), ok, **extra)


def project_path(suffix: str = "") -> Build:
    return lambda w, actor, ctx: Call(f"/projects/{w.project}{suffix}")


def _lease_for_worker(w: World) -> dict[str, Any]:
    return {"assignment": w.lease("worker")}


def _answer_of_worker(w: World) -> dict[str, Any]:
    assignment = w.lease("worker")
    answered = w.as_actor("worker", "POST", f"{API}/assignments/{assignment}/answer", json={"label": OTHER_LABEL})
    assert answered.status_code == 200, answered.text
    return {"assignment": assignment}


def _the_task_again(w: World, actor: str, response: httpx.Response) -> None:
    assert set(response.json()) == TASK_KEYS


def _hooks_to_delete(w: World) -> dict[str, Any]:
    owner = {"url": "http://127.0.0.1:9/to-delete", "events": ["worker.banned"]}
    made = {}
    for actor in ("shared", "admin", "owner"):
        response = w.as_actor("owner", "POST", f"{API}/projects/{w.project}/webhooks", json=owner)
        assert response.status_code == 201, response.text
        made[actor] = response.json()["id"]
    return {"hooks": made}


def _hook_survived(w: World, ctx: dict[str, Any]) -> None:
    listed = w.as_actor("owner", "GET", f"{API}/projects/{w.project}/webhooks").json()
    assert set(ctx["hooks"].values()) <= {hook["id"] for hook in listed}


def _gold_to_remove(w: World) -> dict[str, Any]:
    spec = {"name": "authz-gold", "labels": [OTHER_LABEL, GOLD_LABEL]}
    project = w.as_actor("owner", "POST", f"{API}/projects", json=spec).json()["id"]
    rows = [{"external_id": actor, "data": {"text": f"an ambiguous control for {actor}"}, "gold_label": GOLD_LABEL}
            for actor in ("shared", "admin", "owner")]  # fmt: skip
    response = w.as_actor("owner", "POST", f"{API}/projects/{project}/items", json=rows)
    assert response.status_code == 200, response.text
    items = w.as_actor("owner", "GET", f"{API}/projects/{project}/items").json()
    return {"project": project, "gold": {item["external_id"]: item["id"] for item in items}}


def _gold_stayed(w: World, ctx: dict[str, Any]) -> None:
    items = w.as_actor("owner", "GET", f"{API}/projects/{ctx['project']}/items").json()
    assert all(item["is_gold"] for item in items)


def _no_longer_gold(w: World, actor: str, response: httpx.Response) -> None:
    assert response.json()["previous_label"] == GOLD_LABEL and response.json()["workers"] == []


def _user_with_token(w: World) -> dict[str, Any]:
    user = w.make_user("revokee", "worker")
    return {"user": user["id"], "token": user["token"]}


def _token_still_works(w: World, ctx: dict[str, Any]) -> None:
    assert w.request(ctx["token"], "GET", f"{API}/me").status_code == 200


def _first_answer_of_its_assignment(w: World, actor: str, response: httpx.Response) -> None:
    body = response.json()
    assert body["duplicate"] is False  # nobody answered it before
    assert set(body) <= {"answer_id", "reward", "duplicate", "label", "feedback"} and body["feedback"] is None
    assert body["label"] in (OTHER_LABEL, GOLD_LABEL)  # the worker's own answer, never another's


def _worker_view_of_projects(w: World, actor: str, response: httpx.Response) -> None:
    body = response.json()
    for project in body if isinstance(body, list) else [body]:
        if actor in WORKER_SIDE:
            assert all(project.get(name) is None for name in REQUESTER_ONLY_PROJECT_FIELDS), project
        elif project["id"] == w.project:
            assert project["budget"] == 100.0 and project["rules"] is not None
    if actor == "stranger" and isinstance(body, list):
        assert w.project not in {p["id"] for p in body}


def _a_model(w: World) -> dict[str, Any]:
    """A model version of the project (trained by its owner once, on the world's few labels)."""
    listed = w.as_actor("owner", "GET", f"{API}/projects/{w.project}/models")
    assert listed.status_code == 200, listed.text
    if not listed.json():
        body = {"family": "naive_bayes"}
        trained = w.as_actor("owner", "POST", f"{API}/projects/{w.project}/models/train", json=body)
        assert trained.status_code == 200, trained.text
    return {}


ROUTES: dict[tuple[str, str], Rule] = {
    # users
    ("GET", f"{API}/me"): Rule(EVERYONE, lambda w, a, c: Call("/me")),
    ("POST", f"{API}/users"): Rule(
        frozenset({"admin"}), lambda w, a, c: Call("/users", json={"name": f"made-by-{a}-{uuid.uuid4().hex[:6]}", "role": "worker"}), ok=(201,)
    ),
    ("GET", f"{API}/users"): Rule(frozenset({"admin"}), lambda w, a, c: Call("/users")),
    ("POST", f"{API}/users/{{user_id}}/tokens"): Rule(frozenset({"admin"}), lambda w, a, c: Call(f"/users/{w.spare}/tokens"), ok=(201,)),
    ("DELETE", f"{API}/users/{{user_id}}/tokens"): Rule(
        frozenset({"admin"}), lambda w, a, c: Call(f"/users/{c['user']}/tokens"), prepare=_user_with_token, intact=_token_still_works
    ),
    # projects
    ("POST", f"{API}/projects"): Rule(
        frozenset({"admin", "owner", "stranger"}), lambda w, a, c: Call("/projects", json={"name": f"by {a}", "labels": ["x", "y"]}), ok=(201,)
    ),
    ("GET", f"{API}/projects"): Rule(EVERYONE, lambda w, a, c: Call("/projects"), check=_worker_view_of_projects),
    ("GET", f"{API}/projects/{{project_id}}"): Rule(
        EVERYONE - {"stranger"}, project_path(), frozenset({"stranger"}), check=_worker_view_of_projects
    ),
    ("PATCH", f"{API}/projects/{{project_id}}"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}", json={"instructions": f"Is the sentence positive? ({a})"})
    ),
    ("GET", f"{API}/projects/{{project_id}}/status"): manage(project_path("/status")),
    ("POST", f"{API}/projects/{{project_id}}/access"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/access", json={"worker_id": w.ids["worker"]}), ok=(204,)
    ),
    ("POST", f"{API}/projects/{{project_id}}/aggregate"): manage(project_path("/aggregate")),
    # items
    ("POST", f"{API}/projects/{{project_id}}/items"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/items", json=[{"data": {"text": f"imported by {a}"}}])
    ),
    ("POST", f"{API}/projects/{{project_id}}/items/upload"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/items/upload", files={"file": ("items.csv", f"text\nuploaded by {a}\n".encode())})
    ),
    ("GET", f"{API}/projects/{{project_id}}/items"): manage(project_path("/items")),
    # the worker's loop
    ("POST", f"{API}/projects/{{project_id}}/tasks/next"): Rule(
        frozenset({"admin", "worker", "worker2"}), project_path("/tasks/next"), frozenset({"stranger"}), ok=(200, 204)
    ),
    ("POST", f"{API}/assignments/{{assignment_id}}/answer"): Rule(
        frozenset({"worker"}), lambda w, a, c: Call(f"/assignments/{c['assignment']}/answer", json={"label": OTHER_LABEL, "seconds": 3.0}),
        EVERYONE - {"worker"}, prepare=_lease_for_worker, check=_first_answer_of_its_assignment,
    ),
    ("POST", f"{API}/assignments/{{assignment_id}}/skip"): Rule(
        frozenset({"worker"}), lambda w, a, c: Call(f"/assignments/{c['assignment']}/skip"), EVERYONE - {"worker"}, ok=(204,),
        prepare=_lease_for_worker,
    ),
    ("GET", f"{API}/projects/{{project_id}}/me"): Rule(EVERYONE - {"stranger"}, project_path("/me"), frozenset({"stranger"})),
    # the web page's loop: tasks leased ahead (count=1 here, so that each worker keeps one open lease), undo
    ("POST", f"{API}/projects/{{project_id}}/tasks/batch"): Rule(
        frozenset({"admin", "worker", "worker2"}), lambda w, a, c: Call(f"/projects/{w.project}/tasks/batch", params={"count": 1}),
        frozenset({"stranger"}),
    ),
    ("POST", f"{API}/assignments/{{assignment_id}}/undo"): Rule(
        frozenset({"worker"}), lambda w, a, c: Call(f"/assignments/{c['assignment']}/undo"), EVERYONE - {"worker"},
        prepare=_answer_of_worker, check=_the_task_again,
    ),
    # crowd management
    ("GET", f"{API}/projects/{{project_id}}/workers"): manage(project_path("/workers")),
    ("POST", f"{API}/projects/{{project_id}}/workers/{{worker_id}}/ban"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/workers/{w.target}/ban", json={"reason": f"test by {a}"})
    ),
    ("POST", f"{API}/projects/{{project_id}}/workers/{{worker_id}}/unban"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/workers/{w.target}/unban", json={"reason": f"test by {a}"})
    ),
    ("GET", f"{API}/projects/{{project_id}}/bans"): manage(project_path("/bans")),
    ("POST", f"{API}/projects/{{project_id}}/bonuses"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/bonuses", json={"worker_id": w.target, "amount": 0.25, "reason": a}), ok=(201,)
    ),
    ("GET", f"{API}/projects/{{project_id}}/payouts"): manage(project_path("/payouts")),
    # Prometheus' scrape target: admins (and CROWDLOOP_METRICS_TOKEN, tested in tests/monitoring)
    ("GET", "/metrics"): Rule(frozenset({"admin"}), lambda w, a, c: Call("/metrics", root=True)),
    # dashboard and review (deciding the gold item's own label keeps the world as it was)
    ("GET", f"{API}/projects/{{project_id}}/dashboard"): manage(project_path("/dashboard")),
    ("GET", f"{API}/projects/{{project_id}}/review"): manage(project_path("/review")),
    ("POST", f"{API}/projects/{{project_id}}/review/{{item_id}}"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/review/{w.gold_item}", json={"label": GOLD_LABEL})
    ),
    ("GET", f"{API}/projects/{{project_id}}/gold"): manage(project_path("/gold")),
    # correcting the gold item to its own label keeps the world as it was, like the decision above
    ("PUT", f"{API}/projects/{{project_id}}/items/{{item_id}}/gold"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/items/{w.gold_item}/gold", json={"label": GOLD_LABEL})
    ),
    # taking a gold item out of gold: each allowed caller takes out a gold item of their own, in a
    # project of the owner's own, so that the world's gold stays as the other tests expect it
    ("DELETE", f"{API}/projects/{{project_id}}/items/{{item_id}}/gold"): manage(
        lambda w, a, c: Call(f"/projects/{c.get('project', w.project)}/items/{c['gold'].get(a, c['gold']['shared'])}/gold"),
        prepare=_gold_to_remove, intact=_gold_stayed, check=_no_longer_gold,
    ),
    # exports
    ("GET", f"{API}/projects/{{project_id}}/export/labels"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/export/labels", params={"format": "jsonl"})
    ),
    ("GET", f"{API}/projects/{{project_id}}/export/answers"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/export/answers", params={"format": "csv"})
    ),
    ("GET", f"{API}/projects/{{project_id}}/export/label-studio"): manage(project_path("/export/label-studio")),
    # webhooks
    ("POST", f"{API}/projects/{{project_id}}/webhooks"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/webhooks", json={"url": f"http://127.0.0.1:9/{a}"}), ok=(201,)
    ),
    ("GET", f"{API}/projects/{{project_id}}/webhooks"): manage(project_path("/webhooks")),
    ("DELETE", f"{API}/projects/{{project_id}}/webhooks/{{webhook_id}}"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/webhooks/{c['hooks'].get(a, c['hooks']['shared'])}"), ok=(204,),
        prepare=_hooks_to_delete, intact=_hook_survived,
    ),
    ("GET", f"{API}/projects/{{project_id}}/webhooks/deliveries"): manage(project_path("/webhooks/deliveries")),
    # models: requesters and admins manage them; a device reads the production or candidate model
    # of a project open to it; workers never see models
    ("POST", f"{API}/projects/{{project_id}}/models/train"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/models/train", json={"family": "naive_bayes"})
    ),
    ("GET", f"{API}/projects/{{project_id}}/models"): manage(project_path("/models"), prepare=_a_model),
    ("GET", f"{API}/projects/{{project_id}}/models/events"): manage(project_path("/models/events"), prepare=_a_model),
    ("GET", f"{API}/projects/{{project_id}}/models/{{ref}}"): Rule(
        frozenset({"admin", "owner", "device"}), project_path("/models/production"), frozenset({"stranger"}), prepare=_a_model,
    ),
    ("GET", f"{API}/projects/{{project_id}}/models/{{ref}}/artifact"): Rule(
        frozenset({"admin", "owner", "device"}), project_path("/models/production/artifact"), frozenset({"stranger"}),
        prepare=_a_model,
    ),
    ("POST", f"{API}/projects/{{project_id}}/models/{{ref}}/promote"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/models/production/promote", json={"reason": f"kept by {a}"}),
        prepare=_a_model,
    ),
    # drift of deployed models (the world's few telemetry predictions: answered "insufficient")
    ("POST", f"{API}/projects/{{project_id}}/models/{{ref}}/drift"): manage(
        project_path("/models/production/drift"), prepare=_a_model
    ),
    ("GET", f"{API}/projects/{{project_id}}/drift"): manage(project_path("/drift"), prepare=_a_model),
    ("POST", f"{API}/projects/{{project_id}}/priorities"): manage(
        lambda w, a, c: Call(f"/projects/{w.project}/priorities", json={"strategy": "entropy", "batch_size": 2}),
        prepare=_a_model,
    ),
    # edge devices report back (device tokens of projects open to them, and admins)
    ("POST", f"{API}/projects/{{project_id}}/edge/feedback"): Rule(
        frozenset({"admin", "device"}), lambda w, a, c: Call(f"/projects/{w.project}/edge/feedback", json=[{
            "client_id": uuid.uuid4().hex, "data": {"text": f"edge input sent by {a}"}, "model_version": 1,
            "reason": "unsure", "label": OTHER_LABEL, "confidence": 0.55}]),
        frozenset({"stranger"}), prepare=_a_model,  # the reports name model version 1
    ),
    ("POST", f"{API}/projects/{{project_id}}/edge/telemetry"): Rule(
        frozenset({"admin", "device"}), lambda w, a, c: Call(f"/projects/{w.project}/edge/telemetry", json=[{
            "client_id": uuid.uuid4().hex, "model_version": 1, "started_at": 1.7e9, "ended_at": 1.7e9 + 5,
            "predictions": 3, "confidence_mean": 0.8, "class_counts": {OTHER_LABEL: 3}}]),
        frozenset({"stranger"}), prepare=_a_model,  # the reports name model version 1
    ),
}  # fmt: skip


# --- the routes the app has ------------------------------------------------------------------------


def _walk(routes: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, through included routers and mounts; HEAD only where it is not GET's twin."""
    for route in routes:
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if path is not None and methods:
            yield from ((m, prefix + path) for m in methods if m != "HEAD" or "GET" not in methods)
        elif path is not None and getattr(route, "routes", None) is not None:
            yield from _walk(route.routes, prefix + path)
        inner = getattr(route, "original_router", None)  # FastAPI keeps included routers unflattened
        if inner is not None:
            yield from _walk(inner.routes, prefix + getattr(getattr(route, "include_context", None), "prefix", ""))


def _spec_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    verbs = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops if method in verbs}


def test_every_route_is_in_the_table(server, tmp_path):
    """The table covers every route of the app (walked and in its schema) and of the running server."""
    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'routes.db'}",
            webhook_dispatcher=False,
            admin_token=None,
            api_docs=True,
        )
    )
    walked = set(_walk(app.routes))
    in_schema = _spec_routes(app.openapi())
    served = _spec_routes(httpx.get(f"{server.url}/openapi.json").json())
    assert in_schema <= walked, f"the route walk missed {sorted(in_schema - walked)}"
    assert served == in_schema
    covered = set(ROUTES) | PUBLIC | FASTAPI_DOCS | WEB_UI
    assert sorted((walked | in_schema | served) - covered) == [], "routes without an authorization rule"
    assert sorted(set(ROUTES) - walked) == [], "rules for routes the app does not have"


# --- no token, a wrong one, a revoked one ---------------------------------------------------------


@pytest.fixture(scope="module")
def revoked_token(world: World) -> str:
    user = world.make_user("revoked", "worker")
    assert world.as_actor("admin", "DELETE", f"{API}/users/{user['id']}/tokens").json() == {"revoked": 1}
    return str(user["token"])


def _send(world: World, route: tuple[str, str], call: Call, headers: dict[str, str]) -> httpx.Response:
    return world.http.request(
        route[0], call.path if call.root else API + call.path, json=call.json, params=call.params, files=call.files,
        headers=headers,
    )  # fmt: skip


@pytest.mark.parametrize("route", sorted(ROUTES), ids=" ".join)
def test_without_a_valid_token_every_route_is_401(world, revoked_token, route):
    ctx = {"assignment": world.other_lease, "hooks": {"shared": world.hook}, "user": world.spare, "token": "",
           "gold": {"shared": world.gold_item}}  # fmt: skip
    call = ROUTES[route].build(world, "admin", ctx)  # a request that would succeed for the right caller
    attempts = {
        "no token": {},
        "wrong token": {"Authorization": "Bearer cl_" + uuid.uuid4().hex},
        "bearer without token": {"Authorization": "Bearer"},
        "basic scheme": {"Authorization": f"Basic {world.tokens['admin']}"},
        "token without scheme": {"Authorization": world.tokens["admin"]},
        "revoked token": {"Authorization": f"Bearer {revoked_token}"},
    }
    for what, headers in attempts.items():
        response = _send(world, route, call, headers)
        assert response.status_code == 401, f"{what}: {response.status_code} {response.text[:300]}"
        body = response.json()
        assert body["error"] == "AuthenticationError" and set(body) == {"error", "detail"}, what
    if call.json is not None:  # a body that fails validation, with no token: 401, not 422 about the body
        response = _send(world, route, replace(call, json=[12345]), {})
        assert response.status_code == 401, f"bad body: {response.status_code} {response.text[:300]}"
    assert world.request(world.tokens["worker2"], "GET", f"{API}/me").status_code == 200
    # the refused calls changed nothing: worker2's lease is still open, the webhook still there
    assert world.lease("worker2") == world.other_lease
    assert world.hook in {
        h["id"] for h in world.as_actor("owner", "GET", f"{API}/projects/{world.project}/webhooks").json()
    }


@pytest.mark.parametrize("token", [None, "cl_not-a-token", "revoked"])
def test_health_is_public_and_reveals_only_status_and_version(world, revoked_token, token):
    response = world.request(revoked_token if token == "revoked" else token, "GET", f"{API}/health")
    assert response.status_code == 200
    assert set(response.json()) == {"status", "version"} and response.json()["status"] == "ok"


def test_the_web_ui_is_public_and_holds_no_data(world):
    assert world.request(None, "GET", "/").headers["location"] == "/ui/"
    for path in ("/ui/", "/ui/work.html", "/ui/project.html", "/ui/js/work.js", "/ui/js/api.js"):
        response = world.request(None, "GET", path)
        assert response.status_code == 200 and "script-src 'self'" in response.headers["content-security-policy"]
        for secret in [MARKER, "regular sentence number", *world.tokens.values()]:
            assert secret not in response.text


def test_the_schema_is_public_and_holds_no_data_and_the_docs_pages_are_off_by_default(world):
    response = world.request(None, "GET", "/openapi.json")
    assert response.status_code == 200
    for secret in [MARKER, "regular sentence number", *world.tokens.values()]:
        assert secret not in response.text
    for path in ("/docs", "/docs/oauth2-redirect", "/redoc"):
        assert world.request(None, "GET", path).status_code == 404, path


def test_the_docs_pages_when_the_operator_turns_them_on(tmp_path):
    with warnings.catch_warnings():  # starlette's note that its test client will move off httpx
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'docs.db'}", webhook_dispatcher=False, api_docs=True)
    with TestClient(create_app(settings)) as http:
        for path in sorted(path for _, path in FASTAPI_DOCS):
            response = http.get(path)  # no token: public
            assert response.status_code == 200, path
        assert "/openapi.json" in http.get("/docs").text and "/openapi.json" in http.get("/redoc").text


# --- each role on each route -----------------------------------------------------------------------


FORBIDDEN_KEYS = {"gold_label", "is_gold", "gold_explanation", "expected", "item_id"}


def leaks(body: str, own_id: int) -> list[str]:
    """What in a response a worker-side user must not read: gold, item ids, or other workers' answers."""
    found = [f"the gold explanation {MARKER!r}"] if MARKER in body else []
    try:
        value = json.loads(body)
    except ValueError:
        return found

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                if key in FORBIDDEN_KEYS:
                    found.append(f"{where}.{key}")
                if key == "answers" and isinstance(child, list):
                    found.append(f"{where}.answers (a list of answers)")
                if key in ("worker_id", "worker") and child != own_id:
                    found.append(f"{where}.{key}={child} (another worker)")
                walk(child, f"{where}.{key}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{where}[{index}]")

    walk(value, "$")
    return found


def _verdict(code: int) -> str | int:
    return "allowed" if 200 <= code < 300 else code


@pytest.mark.parametrize("route", sorted(ROUTES), ids=" ".join)
def test_each_role_gets_exactly_its_access(world, route):
    rule = ROUTES[route]
    ctx = rule.prepare(world) if rule.prepare else {}
    refused = [actor for actor in ACTORS if actor not in rule.allowed]
    responses: dict[str, httpx.Response] = {}
    for actor in refused:  # the refused first: they must leave the resource as it was
        responses[actor] = _send(
            world, route, rule.build(world, actor, ctx), {"Authorization": f"Bearer {world.tokens[actor]}"}
        )
    if rule.intact:
        rule.intact(world, ctx)
    for actor in sorted(rule.allowed):
        responses[actor] = _send(
            world, route, rule.build(world, actor, ctx), {"Authorization": f"Bearer {world.tokens[actor]}"}
        )
    observed = {actor: _verdict(responses[actor].status_code) for actor in ACTORS}
    expected = {actor: "allowed" if actor in rule.allowed else 404 if actor in rule.hidden else 403 for actor in ACTORS}
    details = {actor: responses[actor].text[:200] for actor in ACTORS if observed[actor] != expected[actor]}
    assert observed == expected, details
    for actor in ACTORS:
        response = responses[actor]
        if actor in rule.allowed:
            assert response.status_code in rule.ok, (actor, response.status_code, response.text[:200])
            if rule.check:
                rule.check(world, actor, response)
        else:
            kind = "NotFoundError" if actor in rule.hidden else "PermissionDeniedError"
            assert response.json()["error"] == kind, (actor, response.text[:200])
        if actor in WORKER_SIDE:
            assert leaks(response.text, world.ids[actor]) == [], (actor, response.text[:500])


def test_a_worker_cannot_touch_another_workers_assignment(world):
    mine = world.lease("worker")
    for path, body in [("answer", {"label": OTHER_LABEL}), ("skip", None)]:
        for actor, assignment in [("worker", world.other_lease), ("worker2", mine)]:
            response = world.as_actor(actor, "POST", f"{API}/assignments/{assignment}/{path}", json=body)
            assert response.status_code == 404 and response.json()["error"] == "NotFoundError"
    assert world.lease("worker") == mine and world.lease("worker2") == world.other_lease  # both still open


def test_a_second_requester_sees_nothing_of_the_first(world):
    assert world.project not in {p["id"] for p in world.as_actor("stranger", "GET", f"{API}/projects").json()}
    for (method, path), rule in ROUTES.items():
        if "{project_id}" in path:
            assert "stranger" in rule.hidden, f"{method} {path}: another requester must get 404, not 403"


def test_bans_and_bonuses_reach_only_the_projects_own_workers(world):
    """Any worker id used to do: the stranger banned the owner's worker, paid them a bonus out of
    the stranger's budget, and then read their name in the stranger's worker table and payouts.
    Nobody, a requester and another project's worker all get the same 404, which says nothing
    of who they are; once granted access, the worker may be banned."""
    created = world.as_actor("stranger", "POST", f"{API}/projects", json={"name": "other", "labels": ["x", "y"],
                                                                          "budget": 10.0})  # fmt: skip
    assert created.status_code == 201, created.text
    project = created.json()["id"]
    calls = [("workers/{}/ban", {"reason": "not mine"}), ("workers/{}/unban", {"reason": "not mine"}),
             ("bonuses", {"amount": 1.0, "reason": "not mine"})]  # fmt: skip
    for target in (world.ids["worker"], world.ids["owner"], 10**9):
        for path, body in calls:
            response = world.as_actor("stranger", "POST", f"{API}/projects/{project}/{path.format(target)}",
                                      json={"worker_id": target, **body})  # fmt: skip
            assert response.status_code == 404, response.text
            assert response.json()["detail"] == f"worker {target} has not worked on project {project}."
    for path in ("workers", "payouts"):
        assert world.as_actor("stranger", "GET", f"{API}/projects/{project}/{path}").json() == []
    assert world.as_actor("stranger", "GET", f"{API}/projects/{project}").json()["spent"] == 0
    granted = world.as_actor(
        "stranger", "POST", f"{API}/projects/{project}/access", json={"worker_id": world.ids["worker"]}
    )
    assert granted.status_code == 204, granted.text
    banned = world.as_actor("stranger", "POST", f"{API}/projects/{project}/workers/{world.ids['worker']}/ban",
                            json={"reason": "granted, then banned"})  # fmt: skip
    assert banned.status_code == 200 and banned.json()["banned"] is True, banned.text


# --- gold stays hidden from workers ------------------------------------------------------------------


def _fresh_worker(world: World, role: str = "worker") -> tuple[str, int]:
    user = world.make_user(f"fresh-{role}", role)
    return str(user["token"]), int(user["id"])


def test_tasks_and_answers_never_carry_gold(world):
    """A new worker works the project to its end: gold is served, and looks like any other item."""
    token, own = _fresh_worker(world)
    served = []
    while True:
        response = world.request(token, "POST", f"{API}/projects/{world.project}/tasks/next")
        if response.status_code == 204:
            break
        assert response.status_code == 200, response.text
        task = response.json()
        assert set(task) == TASK_KEYS and leaks(response.text, own) == []
        served.append(item_id_of(world.owner, world.project, task))
        answer = world.request(
            token, "POST", f"{API}/assignments/{task['assignment_id']}/answer", json={"label": OTHER_LABEL}
        )
        assert answer.status_code == 200 and answer.json()["feedback"] is None, answer.text
        assert leaks(answer.text, own) == []
        for path in ("/me", ""):
            seen = world.request(token, "GET", f"{API}/projects/{world.project}{path}")
            assert seen.status_code == 200 and leaks(seen.text, own) == [], seen.text
        assert len(served) < 100
    assert world.gold_item in served, "the gold item was never served: the check above proves nothing"
    assert len(served) == len(set(served))


def test_standing_does_not_reveal_which_item_was_gold(world):
    """With training feedback off, a worker must not learn which of their items was gold.

    A worker's standing (GET /projects/{id}/me) counts their gold answers and their gold accuracy
    as of the last answer; reading it before and after each answer tells which item was gold, and
    (with two labels) the gold label itself.
    """
    token, _ = _fresh_worker(world)
    changes: dict[int, set[str]] = {}
    for _ in range(3):
        before = world.request(token, "GET", f"{API}/projects/{world.project}/me").json()
        task = world.request(token, "POST", f"{API}/projects/{world.project}/tasks/next").json()
        world.request(token, "POST", f"{API}/assignments/{task['assignment_id']}/answer", json={"label": OTHER_LABEL})
        after = world.request(token, "GET", f"{API}/projects/{world.project}/me").json()
        changes[item_id_of(world.owner, world.project, task)] = {key for key in after if after[key] != before[key]}
    gold = changes.pop(world.gold_item)  # a new worker's first task is gold at gold_share 0.3
    regular = set.union(*changes.values())
    assert gold == regular, (
        f"after the gold item the worker's standing changed in {sorted(gold)}, after regular items only in "
        f"{sorted(regular)}: the worker can tell the gold item, and from gold_accuracy whether their label was right"
    )


def test_training_feedback_is_the_one_designed_reveal(world):
    """With feedback on, a wrong gold answer gets the expected label, only after it is stored."""
    owner = world.tokens["owner"]
    spec = {"name": "feedback", "labels": [OTHER_LABEL, GOLD_LABEL], "gold_share": 0.5, "max_overlap": 3}
    project = world.request(owner, "POST", f"{API}/projects", json=spec).json()["id"]
    rows = [
        {"data": {"text": "plain sentence"}},
        {"data": {"text": "control"}, "gold_label": GOLD_LABEL, "gold_explanation": MARKER},
    ]
    world.request(owner, "POST", f"{API}/projects/{project}/items", json=rows)
    world.request(owner, "PATCH", f"{API}/projects/{project}", json={"status": "active"})
    outcomes = {}
    for label in (OTHER_LABEL, GOLD_LABEL):
        token, own = _fresh_worker(world)
        task = world.request(token, "POST", f"{API}/projects/{project}/tasks/next")
        assert leaks(task.text, own) == [] and set(task.json()) == TASK_KEYS
        answer = world.request(
            token, "POST", f"{API}/assignments/{task.json()['assignment_id']}/answer", json={"label": label}
        )
        outcomes[label] = answer.json()["feedback"]
    assert outcomes == {
        OTHER_LABEL: {"correct": False, "expected": GOLD_LABEL, "explanation": MARKER},
        GOLD_LABEL: None,
    }


ITEM_ID_FILLER = 1000
"""Items made before the project of the item-id test, so that its items' ids lie far above every
assignment, answer and project id of this module: a value equal to one of them is then a leak,
never a coincidence."""


def _naming_an_item(node: Any, item_ids: set[int], where: str = "$") -> list[str]:
    """Where a response names an item: an ``item_id`` key, or any key or value equal to an item's id."""
    named = {*item_ids, *map(str, item_ids)}
    found = []
    if isinstance(node, dict):
        for key, child in node.items():
            if key == "item_id" or key in named:
                found.append(f"{where}.{key}")
            found += _naming_an_item(child, item_ids, f"{where}.{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _naming_an_item(child, item_ids, f"{where}[{index}]")
    elif not isinstance(node, bool | float) and node in named:
        found.append(f"{where}={node!r}")
    return found


def test_a_worker_is_never_told_item_ids_so_a_block_of_gold_looks_like_any_task(world):
    """Gold and regular items are leased from separate queues, each newest first, and gold is
    usually imported as a block of ids of its own: when tasks carried ``item_id``, the tasks out
    of sequence were exactly the gold ones, and the feedback after a gold answer gave away the
    block's range. No task, batch, answer, undo or skip response names the item, and gold tasks
    look like regular ones."""
    owner = world.tokens["owner"]
    spec = {"name": "authz-filler", "labels": [OTHER_LABEL, GOLD_LABEL]}
    filler = world.request(owner, "POST", f"{API}/projects", json=spec).json()["id"]
    rows = [{"data": {"text": uuid.uuid4().hex}} for _ in range(ITEM_ID_FILLER)]  # unlike each other: no near copies
    assert world.request(owner, "POST", f"{API}/projects/{filler}/items", json=rows).json()["created"] == len(rows)
    spec = {"name": "authz-ids", "labels": [OTHER_LABEL, GOLD_LABEL], "gold_share": 0.5, "max_overlap": 3,
            "rules": {"training_feedback": True}}  # fmt: skip
    project = world.request(owner, "POST", f"{API}/projects", json=spec).json()["id"]
    regular = [{"data": {"text": f"plain sentence {i}"}} for i in range(5)]
    gold = [{"data": {"text": f"checked sentence {i}"}, "gold_label": GOLD_LABEL, "gold_explanation": "it is"}
            for i in range(5)]  # a block of gold, after the regular items  # fmt: skip
    for block in (regular, gold):
        assert world.request(owner, "POST", f"{API}/projects/{project}/items", json=block).status_code == 200
    world.request(owner, "PATCH", f"{API}/projects/{project}", json={"status": "active"})
    listed = world.owner.items(project)
    item_ids = {int(item["id"]) for item in listed}
    is_gold = {item["data"]["text"]: bool(item["is_gold"]) for item in listed}
    token, _ = _fresh_worker(world)
    responses: list[tuple[str, Any]] = []

    def call(what: str, method: str, path: str, **kwargs: Any) -> Any:
        response = world.request(token, method, f"{API}{path}", **kwargs)
        assert response.status_code in (200, 204), (what, response.text)
        body = response.json() if response.content else None
        responses.append((what, body))
        return body

    batch = call("batch", "POST", f"/projects/{project}/tasks/batch", params={"count": 3})
    assert len(batch) == 3
    keys: dict[bool, set[frozenset[str]]] = {True: set(), False: set()}
    answer_keys: dict[bool, set[frozenset[str]]] = {True: set(), False: set()}
    undone, skipped = set(), False
    while (task := call("task", "POST", f"/projects/{project}/tasks/next")) is not None:
        gold_task = is_gold[task["data"]["text"]]
        keys[gold_task].add(frozenset(task))
        answer_path = f"/assignments/{task['assignment_id']}/answer"
        if gold_task not in undone:  # one of each kind answered right, undone, then answered again
            call("answer", "POST", answer_path, json={"label": GOLD_LABEL})
            again = call("undo", "POST", f"/assignments/{task['assignment_id']}/undo")
            assert again["assignment_id"] == task["assignment_id"] and set(again) == TASK_KEYS
            undone.add(gold_task)
        elif not gold_task and not skipped:
            assert call("skip", "POST", f"/assignments/{task['assignment_id']}/skip") is None
            skipped = True
            continue
        answer = call("answer", "POST", answer_path, json={"label": OTHER_LABEL})  # wrong on gold: feedback
        assert (answer["feedback"] is not None) == gold_task
        answer_keys[gold_task].add(frozenset(answer))
    assert undone == {True, False} and skipped, "the worker did not get both kinds: the checks prove nothing"
    assert keys[True] == keys[False] == {frozenset(TASK_KEYS)}, keys
    assert answer_keys[True] == answer_keys[False], answer_keys
    own = [body[key] for what, body in responses if isinstance(body, dict) for key in ("assignment_id", "answer_id")
           if key in body]  # fmt: skip
    assert max([*own, project]) < min(item_ids), "the filler did not keep item ids apart from the other ids"
    for what, body in responses:
        assert _naming_an_item(body, item_ids) == [], (what, body)


# --- devices ---------------------------------------------------------------------------------------


def test_a_device_sees_what_a_worker_sees_of_its_project_and_takes_no_task(world):
    as_device = world.as_actor("device", "GET", f"{API}/projects/{world.project}")
    as_worker = world.as_actor("worker", "GET", f"{API}/projects/{world.project}")
    assert as_device.status_code == as_worker.status_code == 200 and as_device.json() == as_worker.json()
    listed = world.as_actor("device", "GET", f"{API}/projects").json()
    assert [project["id"] for project in listed] == [world.project]  # granted it, and nothing else
    response = world.as_actor("device", "POST", f"{API}/projects/{world.project}/tasks/next")
    assert response.status_code == 403 and "only workers take tasks" in response.json()["detail"]
    standing = world.as_actor("device", "GET", f"{API}/projects/{world.project}/me").json()
    assert standing["answers"] == 0 and standing["earned"] == 0.0


def test_a_device_needs_a_grant_even_for_a_project_open_to_all_workers(world):
    """Devices belong to no requester: were "open to all" to let them in, any device token would
    read the deployed models of every open project and send items into it."""
    owner = world.tokens["owner"]
    for open_to_all in (True, False):
        spec = {"name": f"open {open_to_all}", "labels": ["a", "b"], "open_to_all": open_to_all}
        project = world.request(owner, "POST", f"{API}/projects", json=spec).json()["id"]
        world.request(owner, "POST", f"{API}/projects/{project}/items", json=[{"data": {"text": "an item"}}])
        world.request(owner, "PATCH", f"{API}/projects/{project}", json={"status": "active"})
        assert world.as_actor("device", "GET", f"{API}/projects/{project}").status_code == 404
        assert world.as_actor("worker2", "GET", f"{API}/projects/{project}").status_code == (
            200 if open_to_all else 404
        )
        for actor in ("device", "worker2"):
            body = {"worker_id": world.ids[actor]}
            assert world.request(owner, "POST", f"{API}/projects/{project}/access", json=body).status_code == 204
            assert world.as_actor(actor, "GET", f"{API}/projects/{project}").status_code == 200
        assert world.as_actor("device", "POST", f"{API}/projects/{project}/tasks/next").status_code == 403
    stranger = world.request(world.tokens["stranger"], "POST", f"{API}/projects/{project}/access",
                             json={"worker_id": world.ids["device"]})  # fmt: skip
    assert stranger.status_code == 404  # only the owner grants


def test_reading_a_standing_does_not_enrol_a_device_or_requester_as_a_worker(world):
    """GET /projects/{id}/me is a read: calling it must not put a non-worker in the worker table or payouts."""
    for actor in ("device", "owner"):
        assert world.as_actor(actor, "GET", f"{API}/projects/{world.project}/me").status_code == 200
    outsiders = {world.ids["device"]: "device", world.ids["owner"]: "owner"}
    for path in ("/workers", "/payouts"):
        rows = world.as_actor("owner", "GET", f"{API}/projects/{world.project}{path}").json()
        listed = sorted(outsiders[row["worker_id"]] for row in rows if row["worker_id"] in outsiders)
        assert listed == [], f"{path} lists non-workers as workers: {listed}"
