"""Webhooks end to end: a real database (SQLite file, and PostgreSQL when it answers),
a real HTTP receiver on a local port, real signatures.

Time is driven by passing ``now`` to ``deliver_due_batch`` (or to its steps ``claim_due``,
``send`` and ``record``); only the dispatcher tests wait for a real thread, with a generous limit.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from crowdloop.config import Settings, parse_networks
from crowdloop.crowd import webhooks
from crowdloop.crowd.webhooks import (
    CLAIM_LEASE,
    DELIVERY_HORIZON,
    EVENTS,
    MAX_ATTEMPTS,
    REQUEST_TIMEOUT,
    SEND_WINDOW,
    WebhookDispatcher,
    backoff,
    claim_due,
    delete_webhook,
    deliver_due_batch,
    delivery_log,
    enqueue,
    list_webhooks,
    record,
    register_webhook,
    send,
    sign,
    verify,
)
from crowdloop.errors import InvalidInputError, NotFoundError
from crowdloop.ports import free_port
from crowdloop.storage import migrate
from crowdloop.storage.db import make_engine, session_factory, unit_of_work
from crowdloop.storage.models import Project, User, Webhook, WebhookDelivery, utcnow

# --- fixtures: databases --------------------------------------------------------------------------


@dataclass
class Database:
    engine: Engine
    factory: sessionmaker[Session]

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"


@pytest.fixture
def db(engine: Engine) -> Database:
    """The empty database of each backend (``engine``, tests/crowd/conftest.py), migrated."""
    migrate.upgrade(engine)
    return Database(engine, session_factory(engine))


def _make_project(db: Database, name: str) -> int:
    with unit_of_work(db.factory) as session:
        owner = User(name=f"owner of {name}", role="requester")
        session.add(owner)
        session.flush()
        project = Project(owner_id=owner.id, name=name)
        session.add(project)
        session.flush()
        return project.id


@pytest.fixture
def project_id(db: Database) -> int:
    return _make_project(db, "cats")


# --- fixtures: a real HTTP receiver ---------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every POST; answers ``fail_status`` to the first ``fail_first`` of them, 200 after.

    ``while_handling``, when set, runs inside each request before the answer is sent.
    """

    url: str
    fail_first: int = 0
    fail_status: int = 500
    while_handling: Callable[[], None] | None = None
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: Received) -> int:
        if self.while_handling is not None:
            self.while_handling()
        with self.lock:
            self.requests.append(request)
            return self.fail_status if len(self.requests) <= self.fail_first else 200


def _handler_for(receiver_box: list[Receiver]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver_box[0].record(Received(self.path, dict(self.headers.items()), body))
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: list[Receiver] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(box))
    box.append(Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook"))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield box[0]
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as http:
        yield http


@pytest.fixture
def closed_port_url() -> str:
    """A URL on a local port that nothing listens on (bound, then released)."""
    return f"http://127.0.0.1:{free_port()}/hook"


# --- helpers --------------------------------------------------------------------------------------


LOCAL = parse_networks("127.0.0.0/8, ::1")
"""The receivers here listen on this machine: a network an operator must allow."""


def _register(db: Database, project_id: int, url: str, events: list[str] | None = None) -> Webhook:
    with unit_of_work(db.factory) as session:
        return register_webhook(session, project_id, url, events, allowed=LOCAL)


def _enqueue(db: Database, project_id: int, event: str = "item.labeled", payload: Any = None) -> int:
    with unit_of_work(db.factory) as session:
        return enqueue(session, project_id, event, payload or {"item_id": 7, "label": "cat"})


def _deliver(db: Database, client: httpx.Client, now: datetime | None = None) -> int:
    return deliver_due_batch(db.factory, client, now=now)


def _deliveries(db: Database) -> list[WebhookDelivery]:
    with db.factory() as session:
        return list(session.query(WebhookDelivery).order_by(WebhookDelivery.id))


def _only_delivery(db: Database) -> WebhookDelivery:
    rows = _deliveries(db)
    assert len(rows) == 1
    return rows[0]


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# --- registration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["", "not a url", "ftp://example.com/hook", "http://", "https:///path", "http://exa mple.com/", "http://a:xx/"],
)
def test_register_rejects_urls_that_are_not_absolute_http(db: Database, project_id: int, url: str) -> None:
    with db.factory() as session, pytest.raises(InvalidInputError, match="http:// or https://"):
        register_webhook(session, project_id, url)


def test_register_rejects_unknown_events_and_names_the_allowed_ones(db: Database, project_id: int) -> None:
    with db.factory() as session:
        with pytest.raises(InvalidInputError) as caught:
            register_webhook(session, project_id, "https://example.com/hook", ["item.labeled", "item.eaten"])
        assert "item.eaten" in caught.value.detail
        assert all(event in caught.value.detail for event in EVENTS)
        with pytest.raises(InvalidInputError, match="at least one event"):
            register_webhook(session, project_id, "https://example.com/hook", [])


def test_register_on_a_missing_project_is_not_found(db: Database) -> None:
    with db.factory() as session, pytest.raises(NotFoundError):
        register_webhook(session, 999, "https://example.com/hook")


def test_register_defaults_to_all_events_and_a_fresh_secret(db: Database, project_id: int) -> None:
    first = _register(db, project_id, " https://example.com/a ")
    second = _register(db, project_id, "http://example.com/b", ["worker.banned", "worker.banned"])
    assert first.url == "https://example.com/a"
    assert first.events == list(EVENTS)
    assert second.events == ["worker.banned"]
    assert len(first.secret) == 64 and int(first.secret, 16) >= 0
    assert first.secret != second.secret
    with db.factory() as session:
        stored = session.get(Webhook, first.id)
        assert stored is not None and stored.secret == first.secret  # kept usable for signing


def test_list_and_delete_are_scoped_to_the_project(db: Database, project_id: int) -> None:
    other_project = _make_project(db, "dogs")
    hook = _register(db, project_id, "https://example.com/hook")
    _enqueue(db, project_id)
    with unit_of_work(db.factory) as session:
        assert [w.id for w in list_webhooks(session, project_id)] == [hook.id]
        assert list_webhooks(session, other_project) == []
        with pytest.raises(NotFoundError):
            delete_webhook(session, other_project, hook.id)
        with pytest.raises(NotFoundError):
            delete_webhook(session, project_id, hook.id + 100)
    with unit_of_work(db.factory) as session:
        delete_webhook(session, project_id, hook.id)
    with db.factory() as session:
        assert list_webhooks(session, project_id) == []
    assert _deliveries(db) == []  # pending deliveries went with their webhook


# --- the outbox -----------------------------------------------------------------------------------


def test_enqueue_only_for_active_webhooks_subscribed_to_the_event(db: Database, project_id: int) -> None:
    labeled = _register(db, project_id, "https://example.com/labeled", ["item.labeled"])
    _register(db, project_id, "https://example.com/banned", ["worker.banned"])
    paused = _register(db, project_id, "https://example.com/paused")
    elsewhere = _make_project(db, "dogs")
    _register(db, elsewhere, "https://example.com/dogs")
    with unit_of_work(db.factory) as session:
        hook = session.get(Webhook, paused.id)
        assert hook is not None
        hook.active = False

    assert _enqueue(db, project_id, "item.labeled", {"item_id": 1}) == 1
    assert _enqueue(db, project_id, "drift.detected", {"psi": 0.3}) == 0
    row = _only_delivery(db)
    assert (row.webhook_id, row.event, row.payload, row.status) == (
        labeled.id,
        "item.labeled",
        {"item_id": 1},
        "pending",
    )


def test_enqueue_rejects_unknown_events_and_unserialisable_payloads(db: Database, project_id: int) -> None:
    _register(db, project_id, "https://example.com/hook")
    with db.factory() as session:
        with pytest.raises(InvalidInputError, match="project.finished"):
            enqueue(session, project_id, "item.eaten", {})
        with pytest.raises(InvalidInputError, match="JSON"):
            enqueue(session, project_id, "item.labeled", {"when": object()})


def test_enqueue_rolls_back_with_the_change_that_caused_it(db: Database, project_id: int) -> None:
    _register(db, project_id, "https://example.com/hook")
    with pytest.raises(RuntimeError), unit_of_work(db.factory) as session:
        enqueue(session, project_id, "project.finished", {"items": 10})
        raise RuntimeError("the change failed")
    assert _deliveries(db) == []


# --- delivery and signatures ----------------------------------------------------------------------


def test_delivery_is_signed_and_verify_accepts_only_the_genuine_request(
    db: Database, project_id: int, receiver: Receiver, client: httpx.Client
) -> None:
    hook = _register(db, project_id, receiver.url, ["item.labeled"])
    _enqueue(db, project_id, "item.labeled", {"item_id": 7, "label": "cat"})
    now = utcnow()
    assert _deliver(db, client, now) == 1

    (request,) = receiver.requests
    row = _only_delivery(db)
    assert request.path == "/hook"
    assert request.headers["X-Crowdloop-Event"] == "item.labeled"
    assert request.headers["X-Crowdloop-Delivery"] == str(row.id)
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {
        "id": row.id,
        "event": "item.labeled",
        "project_id": project_id,
        "created_at": row.created_at.isoformat(),
        "data": {"item_id": 7, "label": "cat"},
    }
    timestamp = request.headers["X-Crowdloop-Timestamp"]
    signature = request.headers["X-Crowdloop-Signature"]
    assert signature == "sha256=" + sign(hook.secret, request.body, int(timestamp))
    assert verify(hook.secret, request.body, timestamp, signature, now=now)
    assert verify(hook.secret, request.body, int(timestamp), signature.removeprefix("sha256="), now=now)
    assert not verify(hook.secret, request.body.replace(b"cat", b"dog"), timestamp, signature, now=now)
    assert not verify(hook.secret, request.body, timestamp, signature, now=now + timedelta(seconds=301))
    assert not verify(hook.secret, request.body, str(int(timestamp) + 1), signature, now=now)
    assert not verify("0" * 64, request.body, timestamp, signature, now=now)
    assert not verify(hook.secret, request.body, "yesterday", signature, now=now)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("delivered", 1, 200, None)
    assert row.delivered_at == now


def test_failures_are_retried_on_the_back_off_schedule_until_delivered(
    db: Database, project_id: int, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.fail_first = 2
    _register(db, project_id, receiver.url)
    _enqueue(db, project_id)
    start = utcnow()

    assert _deliver(db, client, start) == 1
    row = _only_delivery(db)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("pending", 1, 500, "HTTP 500")
    assert row.next_attempt_at == start + timedelta(seconds=5)

    assert _deliver(db, client, start + timedelta(seconds=4)) == 0  # not due yet
    second = start + timedelta(seconds=5)
    assert _deliver(db, client, second) == 1
    row = _only_delivery(db)
    assert (row.attempts, row.next_attempt_at) == (2, second + timedelta(seconds=10))

    third = second + timedelta(seconds=10)
    assert _deliver(db, client, third) == 1
    row = _only_delivery(db)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("delivered", 3, 200, None)
    assert row.delivered_at == third
    assert len(receiver.requests) == 3
    assert len({r.headers["X-Crowdloop-Delivery"] for r in receiver.requests}) == 1  # same id: receivers dedupe


def test_back_off_doubles_from_five_seconds_and_is_capped_at_an_hour() -> None:
    assert [backoff(n).total_seconds() for n in range(1, 6)] == [5, 10, 20, 40, 80]
    assert backoff(11) == timedelta(hours=1)
    assert backoff(10_000) == timedelta(hours=1)


def test_retries_span_more_than_two_hours() -> None:
    assert MAX_ATTEMPTS == 12
    span = sum((backoff(n) for n in range(1, MAX_ATTEMPTS)), timedelta())  # first try to last
    assert span == DELIVERY_HORIZON
    assert timedelta(hours=2) < DELIVERY_HORIZON < timedelta(hours=3)


def test_the_lease_outlasts_the_send_window_plus_a_slow_request() -> None:
    # connect, write and read each get REQUEST_TIMEOUT: a request started at the end of the window ends in time
    assert timedelta(0) < SEND_WINDOW
    assert SEND_WINDOW + 3 * timedelta(seconds=REQUEST_TIMEOUT) <= CLAIM_LEASE


def test_a_delivery_fails_for_good_after_max_attempts(
    db: Database, project_id: int, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.fail_first = 10_000
    _register(db, project_id, receiver.url)
    _enqueue(db, project_id)
    now = utcnow()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert _deliver(db, client, now) == 1
        row = _only_delivery(db)
        assert row.attempts == attempt
        now = row.next_attempt_at
    assert (row.status, row.attempts, row.last_status_code) == ("failed", MAX_ATTEMPTS, 500)
    assert _deliver(db, client, now + timedelta(days=1)) == 0
    assert len(receiver.requests) == MAX_ATTEMPTS


def test_410_gone_fails_the_delivery_at_once(
    db: Database, project_id: int, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.fail_first, receiver.fail_status = 1, 410
    _register(db, project_id, receiver.url)
    _enqueue(db, project_id)
    now = utcnow()
    assert _deliver(db, client, now) == 1
    row = _only_delivery(db)
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("failed", 1, 410, "HTTP 410")
    assert _deliver(db, client, now + timedelta(days=1)) == 0  # the receiver asked to stop: no retry
    assert len(receiver.requests) == 1


def test_an_unreachable_receiver_is_recorded_not_raised(
    db: Database, project_id: int, closed_port_url: str, client: httpx.Client
) -> None:
    _register(db, project_id, closed_port_url)
    _enqueue(db, project_id)
    now = utcnow()
    assert _deliver(db, client, now) == 1
    row = _only_delivery(db)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, None)
    assert row.last_error is not None and "ConnectError" in row.last_error
    assert row.next_attempt_at == now + timedelta(seconds=5)


def test_a_failed_delivery_is_logged_without_the_urls_secrets(
    db: Database, project_id: int, closed_port_url: str, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The log line carried the whole URL: a Slack-style hook's path, a token in the query, a password."""
    port = httpx.URL(closed_port_url).port
    _register(db, project_id, f"http://alice:hunter2@127.0.0.1:{port}/services/T0/XoXsEcReT?token=s3cr3t")
    _enqueue(db, project_id)
    with caplog.at_level(logging.INFO, logger="crowdloop.crowd.webhooks"):
        assert _deliver(db, client, utcnow()) == 1
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert f"to http://127.0.0.1:{port} failed: ConnectError" in logged
    assert not {"hunter2", "XoXsEcReT", "s3cr3t", "alice"} & set(re.split(r"\W+", logged))


def test_no_delivery_is_sent_twice(db: Database, project_id: int, receiver: Receiver, client: httpx.Client) -> None:
    _register(db, project_id, receiver.url)
    _enqueue(db, project_id)
    now = utcnow()
    (claim,) = claim_due(db.factory, now)
    assert claim_due(db.factory, now) == []  # leased to the first sender
    assert _deliver(db, client, now + CLAIM_LEASE - timedelta(seconds=1)) == 0  # still leased
    record(db.factory, [send(client, claim)], now)
    assert _deliver(db, client, now + timedelta(days=1)) == 0  # delivered: never again
    assert len(receiver.requests) == 1
    assert _only_delivery(db).status == "delivered"


def test_no_lock_is_held_while_the_receiver_is_called(
    db: Database, project_id: int, receiver: Receiver, client: httpx.Client
) -> None:
    """While the receiver handles the request, another connection can write (SQLite) or lock the row (PostgreSQL)."""
    outcomes: list[bool | str] = []

    def write_elsewhere() -> None:
        try:
            if db.is_postgres:
                with db.engine.connect() as connection:  # a connection of its own, rolled back on close
                    connection.execute(text("SELECT id FROM webhook_deliveries FOR UPDATE NOWAIT")).all()
                    connection.execute(text("UPDATE webhook_deliveries SET attempts = attempts"))
            else:
                path = db.engine.url.database
                assert path is not None
                connection = sqlite3.connect(path, timeout=1, isolation_level=None)
                try:
                    connection.execute("BEGIN IMMEDIATE")  # the write lock: waits at most 1 s
                    connection.execute("UPDATE webhook_deliveries SET attempts = attempts")
                    connection.execute("ROLLBACK")
                finally:
                    connection.close()
        except Exception as exc:  # recorded, not raised: the receiver's thread would swallow it
            outcomes.append(repr(exc))
        else:
            outcomes.append(True)

    receiver.while_handling = write_elsewhere
    _register(db, project_id, receiver.url)
    _enqueue(db, project_id)
    assert _deliver(db, client) == 1
    assert outcomes == [True]  # SQLite: got the write lock within 1 s; PostgreSQL: NOWAIT found the row free
    assert _only_delivery(db).status == "delivered"


def test_a_claim_never_recorded_is_due_again_after_the_lease(
    db: Database, project_id: int, receiver: Receiver, client: httpx.Client
) -> None:
    _register(db, project_id, receiver.url)
    _enqueue(db, project_id)
    now = utcnow()
    (lost,) = claim_due(db.factory, now)  # the sender dies here: never sends, never records
    row = _only_delivery(db)
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, now + CLAIM_LEASE)
    assert _deliver(db, client, now + CLAIM_LEASE - timedelta(seconds=1)) == 0
    assert _deliver(db, client, now + CLAIM_LEASE) == 1
    row = _only_delivery(db)
    assert (row.status, row.attempts) == ("delivered", 1)
    assert receiver.requests[0].headers["X-Crowdloop-Delivery"] == str(lost.delivery_id)


def test_a_late_sender_does_not_overwrite_the_outcome_of_the_one_that_took_over(
    db: Database, project_id: int, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.fail_first = 1
    _register(db, project_id, receiver.url)
    _enqueue(db, project_id)
    now = utcnow()
    (slow,) = claim_due(db.factory, now)
    later = now + CLAIM_LEASE  # the slow sender's lease ran out: another sender takes the row
    (fast,) = claim_due(db.factory, later)
    record(db.factory, [send(client, fast)], later)  # HTTP 500: retry in 5 s
    record(db.factory, [send(client, slow)], now)  # HTTP 200, but the row is no longer its claim
    row = _only_delivery(db)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
    assert row.next_attempt_at == later + backoff(1)  # the current holder's schedule stands


def test_claims_left_when_the_send_window_closes_are_handed_back(
    db: Database, project_id: int, receiver: Receiver, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "SEND_WINDOW", timedelta(0))  # closes after the first request
    _register(db, project_id, receiver.url)
    _enqueue(db, project_id, "item.labeled")
    _enqueue(db, project_id, "worker.banned")
    now = utcnow()
    due_at = [row.next_attempt_at for row in _deliveries(db)]
    assert _deliver(db, client, now) == 1
    first, second = _deliveries(db)
    assert (first.status, first.attempts) == ("delivered", 1)
    assert (second.status, second.attempts, second.next_attempt_at) == ("pending", 0, due_at[1])  # due again at once
    assert _deliver(db, client, now) == 1
    assert [row.status for row in _deliveries(db)] == ["delivered", "delivered"]
    assert [r.headers["X-Crowdloop-Event"] for r in receiver.requests] == ["item.labeled", "worker.banned"]


def _hook(db: Database, webhook_id: int) -> Webhook:
    with db.factory() as session:
        hook = session.get(Webhook, webhook_id)
        assert hook is not None
        return hook


def test_a_failing_receiver_holds_back_its_own_webhook_not_the_others(
    db: Database, project_id: int, receiver: Receiver, closed_port_url: str, client: httpx.Client
) -> None:
    """Each due delivery to a dead receiver was tried in turn, one at a time, ten seconds or more
    each when it timed out, and every other webhook's deliveries waited behind them."""
    dead, alive = _register(db, project_id, closed_port_url), _register(db, project_id, receiver.url)
    for _ in range(4):
        _enqueue(db, project_id)
    now = utcnow()
    assert _deliver(db, client, now) == 1 + 4  # one try of the dead receiver, then its deliveries wait
    assert len(receiver.requests) == 4
    tries = sorted(row.attempts for row in _deliveries(db) if row.webhook_id == dead.id)
    assert tries == [0, 0, 0, 1]
    assert (_hook(db, dead.id).failures, _hook(db, dead.id).retry_at) == (1, now + timedelta(seconds=5))
    assert (_hook(db, alive.id).failures, _hook(db, alive.id).retry_at) == (0, None)
    assert _deliver(db, client, now + timedelta(seconds=4)) == 0  # the webhook backs off as a whole
    later = now + timedelta(seconds=5)
    assert _deliver(db, client, later) == 1
    assert (_hook(db, dead.id).failures, _hook(db, dead.id).retry_at) == (2, later + timedelta(seconds=10))
    assert all(row.status == "pending" for row in _deliveries(db) if row.webhook_id == dead.id)


def test_a_receiver_that_timed_out_backs_off_from_when_it_failed(
    db: Database, project_id: int, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted from the batch's start, a receiver that took a 10 s timeout was due again before its
    first back-off steps (5 s, 10 s) had begun, and cost the next batch a timeout too."""
    monkeypatch.setattr(webhooks, "REQUEST_TIMEOUT", 1.5)
    with socket.socket() as silent:  # accepts connections into its backlog and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(10)
        hook = _register(db, project_id, f"http://127.0.0.1:{silent.getsockname()[1]}/hook")
        _enqueue(db, project_id)
        now = utcnow()
        assert _deliver(db, client, now) == 1
    assert "Timeout" in (_only_delivery(db).last_error or "")
    assert _hook(db, hook.id).retry_at == now + timedelta(seconds=1 + 5)  # failed after 1.5 s, in whole seconds


def test_two_senders_failing_on_one_receiver_count_one_failure(
    db: Database, project_id: int, closed_port_url: str, client: httpx.Client
) -> None:
    """Two dispatcher processes each took some of a webhook's deliveries and each recorded their
    failure: the back-off skipped a step for every process."""
    hook = _register(db, project_id, closed_port_url)
    _enqueue(db, project_id)
    _enqueue(db, project_id)
    now = utcnow()
    first, second = claim_due(db.factory, now, limit=1), claim_due(db.factory, now, limit=1)
    record(db.factory, [send(client, first[0])], now)
    record(db.factory, [send(client, second[0])], now)
    assert (_hook(db, hook.id).failures, _hook(db, hook.id).retry_at) == (1, now + timedelta(seconds=5))
    assert [row.attempts for row in _deliveries(db)] == [1, 1]  # each delivery's own try still counts


def test_the_first_success_sends_what_its_webhook_held_back(
    db: Database, project_id: int, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.fail_first = 1
    hook = _register(db, project_id, receiver.url)
    for _ in range(3):
        _enqueue(db, project_id)
    now = utcnow()
    assert _deliver(db, client, now) == 1
    assert _deliver(db, client, now + timedelta(seconds=5)) == 3
    assert [row.status for row in _deliveries(db)] == ["delivered"] * 3
    assert (_hook(db, hook.id).failures, _hook(db, hook.id).retry_at) == (0, None)
    assert len(receiver.requests) == 4


def test_deliveries_held_back_past_the_horizon_fail_when_their_webhook_fails_again(
    db: Database, project_id: int, closed_port_url: str, client: httpx.Client
) -> None:
    """Held back with their webhook, deliveries are tried fewer times than MAX_ATTEMPTS: they must
    still end, as one tried on its own schedule would, not wait for ever on a dead receiver."""
    _register(db, project_id, closed_port_url)
    for _ in range(3):
        _enqueue(db, project_id)
    now = utcnow()
    assert _deliver(db, client, now) == 1
    assert [row.status for row in _deliveries(db)] == ["pending"] * 3
    assert _deliver(db, client, now + DELIVERY_HORIZON + timedelta(seconds=1)) == 1
    rows = _deliveries(db)
    assert [row.status for row in rows] == ["failed"] * 3
    assert sum(row.attempts for row in rows) == 2
    assert sum(row.last_error == "its receiver kept failing for 2 h 25 min" for row in rows) == 2
    assert _deliver(db, client, now + timedelta(days=1)) == 0


def test_an_old_delivery_is_not_failed_on_its_first_try_after_the_dispatcher_was_down(
    db: Database, project_id: int, closed_port_url: str, client: httpx.Client
) -> None:
    """Counted by a delivery's age alone, one queued while no dispatcher ran for hours failed at
    its first try, saying its receiver had kept failing for 2 h 25 min."""
    hook = _register(db, project_id, closed_port_url)
    _enqueue(db, project_id)
    back = utcnow() + DELIVERY_HORIZON + timedelta(hours=1)
    assert _deliver(db, client, back) == 1
    row = _only_delivery(db)
    assert (row.status, row.attempts) == ("pending", 1)
    assert _hook(db, hook.id).failing_since == back


def test_a_410_does_not_hold_back_the_webhook(
    db: Database, project_id: int, receiver: Receiver, client: httpx.Client
) -> None:
    """410 Gone is the receiver answering, about that one delivery."""
    receiver.fail_first, receiver.fail_status = 1, 410
    hook = _register(db, project_id, receiver.url)
    _enqueue(db, project_id)
    _enqueue(db, project_id)
    assert _deliver(db, client, utcnow()) == 2
    assert [row.status for row in _deliveries(db)] == ["failed", "delivered"]
    assert _hook(db, hook.id).failures == 0


def test_postgres_rows_being_claimed_are_skipped_by_another_claimer(
    db: Database, project_id: int, receiver: Receiver
) -> None:
    if not db.is_postgres:
        pytest.skip("row locks are PostgreSQL's; SQLite serialises whole write transactions instead")
    _register(db, project_id, receiver.url, ["item.labeled"])
    _register(db, project_id, receiver.url, ["item.labeled"])
    _enqueue(db, project_id)  # one delivery per webhook
    held, free = (row.id for row in _deliveries(db))
    # A regression (no SKIP LOCKED) fails after 5 s instead of hanging.
    impatient = create_engine(db.engine.url, connect_args={"options": "-c lock_timeout=5s"})
    try:
        with unit_of_work(db.factory) as first:  # another claimer, mid-transaction, holding one row
            first.execute(text("SELECT id FROM webhook_deliveries WHERE id = :id FOR UPDATE"), {"id": held})
            assert [claim.delivery_id for claim in claim_due(session_factory(impatient), utcnow())] == [free]
    finally:
        impatient.dispose()


def test_delivery_log_is_newest_first_and_per_project(
    db: Database, project_id: int, receiver: Receiver, client: httpx.Client
) -> None:
    other = _make_project(db, "dogs")
    _register(db, project_id, receiver.url)
    _register(db, other, receiver.url)
    for event in ("item.labeled", "worker.banned", "project.finished"):
        _enqueue(db, project_id, event)
    _enqueue(db, other, "drift.detected")
    with db.factory() as session:
        assert [d.event for d in delivery_log(session, project_id)] == [
            "project.finished",
            "worker.banned",
            "item.labeled",
        ]
        assert [d.event for d in delivery_log(session, project_id, limit=1)] == ["project.finished"]
        assert [d.event for d in delivery_log(session, other)] == ["drift.detected"]


# --- the dispatcher thread ------------------------------------------------------------------------


def test_dispatcher_delivers_in_the_background_and_stops_cleanly(
    db: Database, project_id: int, receiver: Receiver
) -> None:
    _register(db, project_id, receiver.url)
    dispatcher = WebhookDispatcher(db.factory, interval=0.05, allowed=LOCAL)
    dispatcher.start()
    try:
        _enqueue(db, project_id)
        assert _wait_for(lambda: _only_delivery(db).status == "delivered")
    finally:
        dispatcher.stop()
    assert not dispatcher.running
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data",
     "http://10.1.2.3/hook", "http://[::1]:5432/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/",
     "http://2130706433/x", "http://0x7f000001/x", "http://127.1/x", "http://0xa9fea9fe/latest"],
)  # fmt: skip
def test_register_refuses_addresses_off_the_public_internet(db: Database, project_id: int, url: str) -> None:
    """A requester's webhook called this machine's ports or the cloud's metadata service for them."""
    with unit_of_work(db.factory) as session, pytest.raises(InvalidInputError, match="not a public address"):
        register_webhook(session, project_id, url)
    with unit_of_work(db.factory) as session:
        allowed = parse_networks("127.0.0.0/8, ::1, 10.0.0.0/8, 169.254.0.0/16, 0.0.0.0/32")
        assert register_webhook(session, project_id, url, allowed=allowed).url == url  # the operator allowed it


@pytest.mark.parametrize("url", ["http://[64:ff9b::a9fe:a9fe]/", "http://[2002:a9fe:a9fe::1]/", "http://[::a9fe:a9fe]/",
                                 "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/"])  # fmt: skip
def test_register_refuses_an_internal_ipv4_address_inside_an_ipv6_one(db: Database, project_id: int, url: str) -> None:
    """NAT64, 6to4, IPv4-compatible and Teredo addresses carrying 169.254.169.254 (or a private
    Teredo client) passed: only the mapped form (::ffff:) was unwrapped."""
    with unit_of_work(db.factory) as session, pytest.raises(InvalidInputError, match="not a public address"):
        register_webhook(session, project_id, url)


def test_the_dispatcher_calls_a_name_only_where_it_resolves_to_a_public_address(
    db: Database, project_id: int, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A name is checked each time it is called (what it resolves to, or the allowed networks, may
    have changed since registration): here ``localhost``, registered while this machine was allowed.
    The requester's delivery log says it is not public, not what it resolved to (that told a
    requester how the server's network names its hosts); the server's log says that."""
    _register(db, project_id, receiver.url.replace("127.0.0.1", "localhost"))
    _enqueue(db, project_id)
    for allowed, status in (((), "pending"), (LOCAL, "delivered")):
        dispatcher = WebhookDispatcher(db.factory, interval=0.05, allowed=allowed)
        with caplog.at_level(logging.INFO, logger=webhooks.__name__):
            dispatcher.start()
            try:
                assert _wait_for(
                    lambda want=status: _only_delivery(db).attempts >= 1 and _only_delivery(db).status == want
                )
            finally:
                dispatcher.stop()
        if not allowed:
            error = str(_only_delivery(db).last_error)
            assert error.startswith("ConnectError: webhook host localhost is not a public address;"), error
            assert "127.0.0.1" not in error and "::1" not in error
            assert "webhook host localhost resolves to " in caplog.text
            assert receiver.requests == []
            with unit_of_work(db.factory) as session:  # due again now rather than after the back-off
                session.get(WebhookDelivery, _only_delivery(db).id).next_attempt_at = utcnow()
    assert len(receiver.requests) == 1


def test_a_name_that_does_not_resolve_is_said_without_the_resolvers_words(
    db: Database, project_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    """ "cannot resolve webhook host X: [Errno -2] Name or service not known" told a requester how
    this server resolves names; the detail is for the server's log."""
    _register(db, project_id, "http://nonexistent-internal-name.invalid/hook")
    _enqueue(db, project_id)
    with (
        caplog.at_level(logging.INFO, logger=webhooks.__name__),
        httpx.Client(transport=webhooks.PublicOnlyTransport(LOCAL)) as client,
    ):
        assert _deliver(db, client) == 1
    error = _only_delivery(db).last_error
    assert error == "ConnectError: cannot resolve webhook host nonexistent-internal-name.invalid", error
    assert "webhook host nonexistent-internal-name.invalid does not resolve: [Errno" in caplog.text


def test_a_bad_allowed_network_fails_at_start() -> None:
    with pytest.raises(ValidationError, match="'10.0.0.300/8' is not a network"):
        Settings(webhook_allowed_networks="127.0.0.1, 10.0.0.300/8")


def test_dispatcher_logs_a_failing_round_and_keeps_going(
    db: Database, project_id: int, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    _register(db, project_id, receiver.url)
    _enqueue(db, project_id)
    closed = httpx.Client()
    closed.close()  # sending through a closed client raises RuntimeError: a bug, not a network error
    dispatcher = WebhookDispatcher(db.factory, client=closed, interval=0.05)
    with caplog.at_level(logging.WARNING, logger=webhooks.__name__):
        dispatcher.start()
        try:
            assert _wait_for(lambda: len(caplog.records) >= 2)  # two rounds: it survived the first
            assert dispatcher.running
        finally:
            dispatcher.stop()
    assert not dispatcher.running
    first, second = caplog.records[:2]
    assert "round failed" in first.getMessage() and first.exc_info is not None  # the bug's traceback, once
    assert "failed again (2 in a row: RuntimeError" in second.getMessage() and second.exc_info is None
    row = _only_delivery(db)
    assert (row.status, row.attempts) == ("pending", 0)  # each failed round handed its claim back


def test_a_dispatcher_backs_off_while_the_database_is_down_and_says_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the database down it logged "webhook dispatch round failed; retrying in 1.0 s" and a full
    traceback every second. The rounds now wait twice as long each time, up to a cap, each said in
    one line, and the round that works again says so."""
    from support import TcpRelay, postgres_available, postgres_database, require

    require(postgres_available(), "PostgreSQL does not answer on 127.0.0.1:5432")
    with postgres_database() as direct:
        relay = TcpRelay(("127.0.0.1", 5432))
        engine = make_engine(f"postgresql://postgres@127.0.0.1:{relay.port}/{direct.rsplit('/', 1)[1]}", pool_size=2)
        migrate.upgrade(engine)
        dispatcher = WebhookDispatcher(session_factory(engine), client=httpx.Client(), interval=0.05, max_backoff=0.4)
        try:
            with caplog.at_level(logging.INFO, logger=webhooks.__name__):
                dispatcher.start()
                relay.cut()
                assert _wait_for(lambda: len(caplog.records) >= 6)
                relay.restore()
                assert _wait_for(lambda: "works again" in caplog.text)
        finally:
            dispatcher.stop()
            engine.dispose()
            relay.close()
    failures = [record for record in caplog.records if "round failed" in record.getMessage()]
    assert all(record.exc_info is None and record.levelno == logging.WARNING for record in failures)
    assert "failed: the database is unavailable (OperationalError" in failures[0].getMessage()
    waits = [float(re.search(r"retrying in ([\d.]+) s", record.getMessage()).group(1)) for record in failures]
    assert waits[:5] == [0.05, 0.1, 0.2, 0.4, 0.4], waits  # doubling up to the cap
    back = next(record for record in caplog.records if "works again" in record.getMessage())
    assert back.levelno == logging.INFO and f"after {len(failures)} failed round(s)" in back.getMessage()
