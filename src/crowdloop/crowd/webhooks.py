"""Webhooks: signed HTTP callbacks for project events, sent through a transactional outbox.

Why an outbox: an event (an item got its label, a worker was banned) is stored as a
:class:`WebhookDelivery` row in the *same* transaction as the change that caused it, so
a rolled-back change never announces itself and a committed one is never forgotten,
even if the receiver is down or the process dies. :func:`deliver_due` (run by the
:class:`WebhookDispatcher` thread) sends what is due and retries failures with
exponential back-off.

Delivery is *at least once*: if the process dies after the receiver answered but before
the transaction commits, the delivery is sent again. Receivers deduplicate on the
``X-Crowdloop-Delivery`` header (the same id as ``"id"`` in the body, stable across retries).

Every request is signed: ``X-Crowdloop-Signature: sha256=<hex>`` is an HMAC-SHA256, keyed
with the webhook's secret, of ``f"{timestamp}."`` followed by the raw body, where the
timestamp is ``X-Crowdloop-Timestamp``. Signing the timestamp lets a receiver refuse
replays of old requests; :func:`verify` does both checks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from crowdloop.errors import InvalidInputError, NotFoundError
from crowdloop.storage.db import unit_of_work
from crowdloop.storage.models import Project, Webhook, WebhookDelivery, utcnow

EVENTS = ("item.labeled", "project.finished", "worker.banned", "drift.detected")
MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(hours=1)
REQUEST_TIMEOUT = 10.0
SIGNATURE_PREFIX = "sha256="
USER_AGENT = "crowdloop-webhooks"
_ERROR_LIMIT = 500

logger = logging.getLogger(__name__)


# --- registration ---------------------------------------------------------------------------------


def register_webhook(session: Session, project_id: int, url: str, events: list[str] | None = None) -> Webhook:
    """Subscribe ``url`` to ``events`` of a project (``None``: all events).

    The secret is stored in clear because it must stay usable for signing; the route
    shows it to the requester once, at registration.
    """
    if session.get(Project, project_id) is None:
        raise NotFoundError(f"no project {project_id}.")
    webhook = Webhook(
        project_id=project_id,
        url=_checked_url(url),
        secret=secrets.token_hex(32),
        events=_checked_events(events),
    )
    session.add(webhook)
    session.flush()
    return webhook


def list_webhooks(session: Session, project_id: int) -> list[Webhook]:
    return list(session.scalars(select(Webhook).where(Webhook.project_id == project_id).order_by(Webhook.id)))


def delete_webhook(session: Session, project_id: int, webhook_id: int) -> None:
    """Remove a webhook; its pending deliveries go with it (ON DELETE CASCADE)."""
    webhook = session.get(Webhook, webhook_id)
    if webhook is None or webhook.project_id != project_id:
        # Another project's webhook is reported as missing, so ids reveal nothing.
        raise NotFoundError(f"no webhook {webhook_id} in project {project_id}.")
    session.delete(webhook)
    session.flush()


def _checked_url(url: str) -> str:
    url = url.strip()
    problem = f"a webhook url must be an absolute http:// or https:// URL with a host; got {url!r}."
    if any(char.isspace() for char in url):
        raise InvalidInputError(problem)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidInputError(problem) from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInputError(problem)
    return url


def _checked_events(events: list[str] | None) -> list[str]:
    if events is None:
        return list(EVENTS)
    if not events:
        raise InvalidInputError(f"subscribe to at least one event ({', '.join(EVENTS)}), or pass none for all.")
    for event in events:
        _check_event(event)
    return list(dict.fromkeys(events))  # drop repeats, keep the caller's order


def _check_event(event: str) -> None:
    if event not in EVENTS:
        raise InvalidInputError(f"unknown webhook event {event!r}; the events are {', '.join(EVENTS)}.")


# --- the outbox -----------------------------------------------------------------------------------


def enqueue(session: Session, project_id: int, event: str, payload: dict[str, Any]) -> int:
    """Store one delivery of ``event`` per active webhook of the project subscribed to it.

    Call it inside the transaction that makes the change, so both commit or neither does.
    Returns the number of deliveries queued.
    """
    _check_event(event)
    _check_json(payload)
    hooks = session.scalars(select(Webhook).where(Webhook.project_id == project_id, Webhook.active.is_(True)))
    # Subscriptions are filtered here rather than in SQL: JSON containment differs per database
    # and a project has a handful of webhooks.
    rows = [WebhookDelivery(webhook_id=hook.id, event=event, payload=payload) for hook in hooks if event in hook.events]
    session.add_all(rows)
    session.flush()
    return len(rows)


def delivery_log(session: Session, project_id: int, limit: int = 100) -> list[WebhookDelivery]:
    """The project's most recent deliveries, newest first (for the requester's audit page)."""
    query = (
        select(WebhookDelivery)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(Webhook.project_id == project_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def _check_json(payload: dict[str, Any]) -> None:
    # Fail in the caller's code, with a clear message, rather than at flush time deep in SQLAlchemy.
    try:
        json.dumps(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"a webhook payload must be JSON-serialisable: {exc}") from exc


def body_of(delivery: WebhookDelivery, project_id: int) -> bytes:
    """The exact bytes POSTed: built from the row, so every retry sends the same body."""
    envelope = {
        "id": delivery.id,
        "event": delivery.event,
        "project_id": project_id,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


# --- signatures -----------------------------------------------------------------------------------


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}."`` + ``body``, keyed with ``secret``."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    body: bytes,
    timestamp: int | str,
    signature: str,
    tolerance_seconds: int = 300,
    now: datetime | None = None,
) -> bool:
    """For receivers: is this request signed with ``secret`` and recent enough?

    ``timestamp`` and ``signature`` are the header values as received (``signature`` with or
    without its ``sha256=`` prefix). The comparison is constant-time so that timing does not
    leak how much of a forged signature was right.
    """
    try:
        seconds = int(timestamp)
    except ValueError:
        return False
    if abs((now or utcnow()).timestamp() - seconds) > tolerance_seconds:
        return False
    expected = sign(secret, body, seconds)
    return hmac.compare_digest(expected.encode(), signature.removeprefix(SIGNATURE_PREFIX).encode())


def headers_for(delivery: WebhookDelivery, secret: str, body: bytes, now: datetime) -> dict[str, str]:
    timestamp = int(now.timestamp())
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Crowdloop-Event": delivery.event,
        "X-Crowdloop-Delivery": str(delivery.id),
        "X-Crowdloop-Timestamp": str(timestamp),
        "X-Crowdloop-Signature": SIGNATURE_PREFIX + sign(secret, body, timestamp),
    }


# --- sending --------------------------------------------------------------------------------------


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed try: 5 s, 10 s, 20 s, ... at most an hour."""
    doublings = min(max(attempts - 1, 0), 20)  # bounded so a huge count cannot overflow timedelta
    return min(BACKOFF_BASE * (1 << doublings), BACKOFF_CAP)


def deliver_due(session: Session, client: httpx.Client, now: datetime | None = None, limit: int = 100) -> int:
    """POST every pending delivery whose time has come; returns how many were attempted.

    ``now`` (timezone-aware) is the clock for due times, back-off and the signed timestamp;
    tests drive time with it. Network errors are recorded on the row, never raised.
    """
    now = now or utcnow()
    due = session.execute(_due_query(session, now, limit)).tuples().all()
    for delivery, webhook in due:
        _attempt(client, delivery, webhook, now)
    session.flush()
    return len(due)


def _due_query(session: Session, now: datetime, limit: int) -> Select[tuple[WebhookDelivery, Webhook]]:
    query = (
        select(WebhookDelivery, Webhook)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            Webhook.active.is_(True),  # a paused webhook keeps its deliveries pending
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "sqlite":
        return query  # writes are serialised (BEGIN IMMEDIATE): no other process can pick these rows
    # Several server processes may run a dispatcher: each takes rows nobody else holds.
    return query.with_for_update(skip_locked=True, of=WebhookDelivery)


def _attempt(client: httpx.Client, delivery: WebhookDelivery, webhook: Webhook, now: datetime) -> None:
    delivery.attempts += 1
    status_code, error = _post(client, delivery, webhook, now)
    delivery.last_status_code = status_code
    delivery.last_error = error
    if error is None:
        delivery.status = "delivered"
        delivery.delivered_at = now
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = "failed"
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts)


def _post(
    client: httpx.Client, delivery: WebhookDelivery, webhook: Webhook, now: datetime
) -> tuple[int | None, str | None]:
    """(status code, error) of one try; the error is None exactly when the receiver said 2xx."""
    body = body_of(delivery, webhook.project_id)
    headers = headers_for(delivery, webhook.secret, body, now)
    try:
        # Streamed and never read: a receiver cannot make us buffer a huge answer.
        with client.stream("POST", webhook.url, content=body, headers=headers, timeout=REQUEST_TIMEOUT) as answer:
            code = answer.status_code
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        logger.info("webhook delivery %s to %s failed: %r", delivery.id, webhook.url, exc)
        return None, f"{type(exc).__name__}: {exc}"[:_ERROR_LIMIT]
    return code, None if 200 <= code < 300 else f"HTTP {code}"


# --- the background sender ------------------------------------------------------------------------


class WebhookDispatcher:
    """A daemon thread that calls :func:`deliver_due` every ``interval`` seconds.

    Each round is its own unit of work, so a round's outcome is committed before the next
    starts. Errors are logged and the thread carries on: a bad round must not silently stop
    all future deliveries. When a round fills its batch it starts the next one at once.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        client: httpx.Client | None = None,
        interval: float = 1.0,
        batch: int = 100,
    ) -> None:
        self._factory = factory
        self._client = client  # None: the thread opens (and closes) its own
        self._interval = interval
        self._batch = batch
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="crowdloop-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2 * REQUEST_TIMEOUT) -> None:
        """Ask the thread to finish its current request and wait for it (at most ``timeout`` s)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("webhook dispatcher still busy after %.1f s; leaving it (daemon)", timeout)

    def _run(self) -> None:
        if self._client is not None:
            self._loop(self._client)
            return
        with httpx.Client(timeout=REQUEST_TIMEOUT, follow_redirects=False) as client:
            self._loop(client)

    def _loop(self, client: httpx.Client) -> None:
        while not self._stopping.is_set():
            try:
                if self._round(client) >= self._batch:
                    continue  # more may be due: no pause
            except Exception:
                logger.exception("webhook dispatch round failed; retrying in %.1f s", self._interval)
            self._stopping.wait(self._interval)

    def _round(self, client: httpx.Client) -> int:
        with unit_of_work(self._factory) as session:
            return deliver_due(session, client, limit=self._batch)
