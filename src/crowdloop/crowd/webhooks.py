"""Webhooks: signed HTTP callbacks for project events, sent through a transactional outbox.

Why an outbox: an event (an item got its label, a worker was banned) is stored as a
:class:`WebhookDelivery` row in the *same* transaction as the change that caused it, so
a rolled-back change never announces itself and a committed one is never forgotten,
even if the receiver is down or the process dies. :func:`deliver_due_batch` (run by the
:class:`WebhookDispatcher` thread) sends what is due and retries failures with
exponential back-off, for up to :data:`MAX_ATTEMPTS` tries (about two and a half hours);
a ``410 Gone`` answer means the receiver asked to stop, and ends the delivery at once.

A receiver that fails makes its whole webhook back off, not only the delivery tried: the
dispatcher sends one request at a time, and a receiver that timed out cost each of its due
deliveries ten seconds or more, while every other project's webhooks waited behind them. So a
webhook counts its failed tries in a row (``failures``) and none of its deliveries is sent before
its ``retry_at``, on the same back-off schedule; the first success sends the rest. A delivery held
back still ends: once its receiver has failed for :data:`DELIVERY_HORIZON` on end, through the
delivery's life, it fails.

No transaction is open while a receiver is being called: a slow receiver must not hold
SQLite's single write lock (every write transaction there is ``BEGIN IMMEDIATE``), nor
PostgreSQL row locks and a connection. A batch therefore runs in three steps:

1. :func:`claim_due` (one short transaction) picks the due deliveries and *leases* them by
   moving their ``next_attempt_at`` :data:`CLAIM_LEASE` ahead, so no other sender takes them
   meanwhile; it returns plain :class:`Claim` data, already signed, and no ORM objects.
2. :func:`send` POSTs one claim with no transaction open.
3. :func:`record` (a second short transaction) stores the outcomes: delivered, retry later,
   or failed; claims that were not sent are handed back.

Delivery is *at least once*: if the process dies after a receiver answered but before the
outcome is recorded, the lease runs out and the delivery is sent again :data:`CLAIM_LEASE`
later. Receivers deduplicate on the ``X-Crowdloop-Delivery`` header (the same id as ``"id"``
in the body, stable across retries).

Every request is signed: ``X-Crowdloop-Signature: sha256=<hex>`` is an HMAC-SHA256, keyed
with the webhook's secret, of ``f"{timestamp}."`` followed by the raw body, where the
timestamp is ``X-Crowdloop-Timestamp``. Signing the timestamp lets a receiver refuse
replays of old requests; :func:`verify` does both checks.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpcore
import httpx
from sqlalchemy import Select, case, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from crowdloop import urls
from crowdloop.config import Network
from crowdloop.errors import InvalidInputError, NotFoundError
from crowdloop.storage.db import database_unavailable, unit_of_work
from crowdloop.storage.models import Project, Webhook, WebhookDelivery, utcnow
from crowdloop.urls import http_url

EVENTS = ("item.labeled", "item.reopened", "project.finished", "worker.banned", "drift.detected")
MAX_ATTEMPTS = 12  # 5 s, 10 s, ... then hourly: the last try comes about 2 h 25 min after the first
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(hours=1)
REQUEST_TIMEOUT = 10.0  # seconds, for each of connecting, writing and reading
CLAIM_LEASE = timedelta(seconds=60)
# A batch starts no request after this much of its lease has gone, which leaves a request started
# just before then 30 s (three timeouts) to finish before its row can be claimed by another sender.
SEND_WINDOW = CLAIM_LEASE - 3 * timedelta(seconds=REQUEST_TIMEOUT)
SIGNATURE_PREFIX = "sha256="
USER_AGENT = "crowdloop-webhooks"
_ERROR_LIMIT = 500

logger = logging.getLogger(__name__)


# --- registration ---------------------------------------------------------------------------------


def register_webhook(
    session: Session,
    project_id: int,
    url: str,
    events: list[str] | None = None,
    allowed: Sequence[Network] = (),
) -> Webhook:
    """Subscribe ``url`` to ``events`` of a project (``None``: all events).

    A URL whose host is written as an address outside the public internet (or ``localhost``)
    is refused unless one of the ``allowed`` networks holds it; a name is checked each time it is
    called (:class:`PublicOnlyTransport`), since what it resolves to can change.
    The secret is stored in clear because it must stay usable for signing; the route
    shows it to the requester once, at registration.
    """
    if session.get(Project, project_id) is None:
        raise NotFoundError(f"no project {project_id}.")
    url = http_url(url, "a webhook url")
    host = httpx.URL(url).host
    literal = [ipaddress.ip_address("127.0.0.1")] if host.lower() == "localhost" else _literal_address(host)
    for address in literal:
        if problem := _refusal(host, address, allowed):
            raise InvalidInputError(problem)
    webhook = Webhook(
        project_id=project_id,
        url=url,
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


def _literal_address(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The address ``host`` is written as, or [] for a name. IPv4 in the older forms a resolver
    reads too (``127.1``, ``0x7f000001``, ``2130706433``) counts: those were taken for names and
    passed registration, to be refused only when called."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        return [ipaddress.IPv4Address(socket.inet_aton(host))]
    except OSError:
        return []  # a name


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _refusal(host: str, address: Address, allowed: Sequence[Network]) -> str:
    """Why a webhook may not call ``address`` (empty: it may).

    Only public addresses by default: a requester's webhook must not reach this machine or its
    network (a database port, a cloud metadata service at 169.254.169.254) on the server's behalf.
    An IPv6 address that carries an IPv4 one (mapped, 6to4, Teredo, NAT64, IPv4-compatible) is
    judged by both, since the network may deliver it to the IPv4 address.
    """
    candidates = [address, *_embedded_ipv4(address)]
    if any(candidate in network for candidate in candidates for network in allowed):
        return ""  # the operator allowed it (as IPv6 or as the IPv4 address inside)
    if all(candidate.is_global for candidate in candidates):
        return ""
    return (
        f"webhook host {host} is not a public address; this server calls only public addresses unless "
        "CROWDLOOP_WEBHOOK_ALLOWED_NETWORKS includes it."
    )


def _embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    return [embedded for embedded in found if embedded is not None]


def checked_address(host: str, port: int, allowed: Sequence[Network]) -> str:
    """The address to connect to for ``host``: every address it resolves to must pass
    :func:`_refusal`, and the connection goes to the one checked, not to a second lookup.

    The error says what a requester may know (it is in their delivery log): not the address a
    name resolved to, nor the resolver's own words, which told them how this server's network
    names its hosts ("vm is 127.0.0.1"). Those go to the server's log.
    """
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        logger.info("webhook host %s does not resolve: %s", host, exc)
        raise httpcore.ConnectError(f"cannot resolve webhook host {host}") from None
    addresses = [str(sockaddr[0]).split("%")[0] for *_, sockaddr in found]
    for address in addresses:
        if problem := _refusal(host, ipaddress.ip_address(address), allowed):
            logger.info("webhook host %s resolves to %s, which is not allowed: not called", host, address)
            raise httpcore.ConnectError(problem)
    return addresses[0]


class _CheckedBackend(httpcore.SyncBackend):
    """Connects to the address :func:`checked_address` checked. Resolving again at connection time
    would let a name that changes between the two lookups (DNS rebinding) reach an internal
    address; TLS still checks the certificate against the host name."""

    def __init__(self, allowed: Sequence[Network]) -> None:
        self._allowed = tuple(allowed)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        address = checked_address(host, port, self._allowed)
        return super().connect_tcp(address, port, timeout, local_address, socket_options)


class PublicOnlyTransport(httpx.HTTPTransport):
    """The dispatcher's transport: it connects only to addresses that pass :func:`_refusal`.

    Redirects are never followed. With a transport of its own the client does not read proxy
    settings (``HTTPS_PROXY``) from the environment: webhooks go straight to their receivers.
    """

    def __init__(self, allowed: Sequence[Network] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool._network_backend = _CheckedBackend(allowed)  # httpcore's pool: the one place it connects


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


@dataclass(frozen=True)
class Claim:
    """One leased delivery, ready to send: plain data, valid after its transaction ended."""

    delivery_id: int
    event: str
    url: str
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(repr=False)  # signed in the claim: the secret stays in the database
    due_at: datetime  # ``next_attempt_at`` before the claim: restored if the claim is handed back unsent
    lease_until: datetime  # ``next_attempt_at`` while claimed: the row is still ours while they are equal
    webhook_id: int  # whose receiver: a failure holds back the webhook's other claims


@dataclass(frozen=True)
class Outcome:
    """What one try of a claim came to; ``error`` is None exactly when the receiver said 2xx."""

    claim: Claim
    status_code: int | None
    error: str | None


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed try: 5 s, 10 s, 20 s, ... at most an hour."""
    doublings = min(max(attempts - 1, 0), 20)  # bounded so a huge count cannot overflow timedelta
    return min(BACKOFF_BASE * (1 << doublings), BACKOFF_CAP)


DELIVERY_HORIZON = sum((backoff(n) for n in range(1, MAX_ATTEMPTS)), timedelta())
"""How long a delivery is retried for (about 2 h 25 min, its own :data:`MAX_ATTEMPTS` tries): one
held back with its failing webhook, and so tried fewer times, fails once the receiver has failed
this long on end while it waited."""


def deliver_due_batch(
    factory: sessionmaker[Session], client: httpx.Client, now: datetime | None = None, limit: int = 100
) -> int:
    """Send up to ``limit`` due deliveries, each try recorded; returns how many were tried.

    Claim, send and record are separate steps (see the module docstring), so no transaction is
    open during a request. ``now`` (timezone-aware) is the clock for due times, the lease,
    back-off and the signed timestamp; tests drive time with it. Network errors are recorded,
    never raised. Sending stops once :data:`SEND_WINDOW` has passed (at least one claim is
    always tried); the rest are handed back, due again at once. If sending raises (a bug, not
    a network error), what was sent is still recorded and the rest handed back before the
    error propagates.
    """
    now = now or utcnow()
    claims = claim_due(factory, now, limit)
    outcomes: list[Outcome] = []
    failed_after: dict[int, float] = {}  # webhook -> seconds into the batch its receiver failed: the rest wait
    started = time.monotonic()
    deadline = started + SEND_WINDOW.total_seconds()
    try:
        for claim in claims:
            if claim.webhook_id in failed_after:
                continue
            outcomes.append(send(client, claim))
            if receiver_failed(outcomes[-1]):
                failed_after[claim.webhook_id] = time.monotonic() - started
            if time.monotonic() >= deadline:
                break
    finally:
        sent = {outcome.claim.delivery_id for outcome in outcomes}
        unsent = [claim for claim in claims if claim.delivery_id not in sent]
        record(factory, outcomes, now, unsent=unsent, failed_after=failed_after)
    return len(outcomes)


def receiver_failed(outcome: Outcome) -> bool:
    """Whether the try counts against its webhook: any failure but ``410 Gone``, which is the
    receiver answering, about that delivery alone."""
    return outcome.error is not None and outcome.status_code != 410


def claim_due(factory: sessionmaker[Session], now: datetime, limit: int = 100) -> list[Claim]:
    """Lease up to ``limit`` due deliveries for :data:`CLAIM_LEASE`, in one short transaction."""
    lease_until = now + CLAIM_LEASE
    with unit_of_work(factory) as session:
        claims = []
        for delivery, webhook in session.execute(_due_query(session, now, limit)).tuples():
            body = body_of(delivery, webhook.project_id)
            claims.append(
                Claim(
                    delivery_id=delivery.id,
                    event=delivery.event,
                    url=webhook.url,
                    body=body,
                    headers=headers_for(delivery, webhook.secret, body, now),
                    due_at=delivery.next_attempt_at,
                    lease_until=lease_until,
                    webhook_id=webhook.id,
                )
            )
            delivery.next_attempt_at = lease_until
        return claims


def _due_query(session: Session, now: datetime, limit: int) -> Select[tuple[WebhookDelivery, Webhook]]:
    query = (
        select(WebhookDelivery, Webhook)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            Webhook.active.is_(True),  # a paused webhook keeps its deliveries pending
            or_(Webhook.retry_at.is_(None), Webhook.retry_at <= now),  # one backing off too
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if _is_sqlite(session):
        return query  # writes are serialised (BEGIN IMMEDIATE): no other process can pick these rows
    # Several server processes may run a dispatcher: each takes rows nobody else is claiming.
    return query.with_for_update(skip_locked=True, of=WebhookDelivery)


def origin(url: str) -> str:
    """``scheme://host:port`` of a receiver's URL, for logs: its user, password, path and query
    often carry the secret that lets anyone post to it (Slack's and Discord's hooks do)."""
    try:
        return urls.origin(url)
    except (httpx.InvalidURL, TypeError, AttributeError):
        return "<invalid URL>"


def send(client: httpx.Client, claim: Claim) -> Outcome:
    """POST one claim; call it with no transaction open. Network errors become the outcome's error."""
    try:
        # Streamed and never read: a receiver cannot make us buffer a huge answer.
        with client.stream(
            "POST", claim.url, content=claim.body, headers=claim.headers, timeout=REQUEST_TIMEOUT
        ) as answer:
            code = answer.status_code
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        logger.info("webhook delivery %s (%s) to %s failed: %s", claim.delivery_id, claim.event, origin(claim.url),
                    type(exc).__name__)  # fmt: skip
        return Outcome(claim, None, f"{type(exc).__name__}: {exc}"[:_ERROR_LIMIT])
    return Outcome(claim, code, None if 200 <= code < 300 else f"HTTP {code}")


def record(
    factory: sessionmaker[Session],
    outcomes: Sequence[Outcome],
    now: datetime,
    unsent: Sequence[Claim] = (),
    failed_after: Mapping[int, float] | None = None,
) -> None:
    """Store the outcomes and hand back the ``unsent`` claims, in one short transaction.

    A row whose claim was lost meanwhile (its lease ran out and another sender took it, or its
    webhook was deleted) is left alone: its current holder records it. ``failed_after`` gives,
    per webhook whose receiver failed, the seconds after ``now`` it did, which its back-off counts
    from: counted from ``now``, a receiver that timed out (10 s) was due again before the first
    steps of its back-off (5 s, 10 s) had begun, and cost the next batch a timeout too.
    """
    if not outcomes and not unsent:
        return
    with unit_of_work(factory) as session:
        hooks = _lock_webhooks(session, outcomes)
        ids = [outcome.claim.delivery_id for outcome in outcomes] + [claim.delivery_id for claim in unsent]
        query = select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
        if not _is_sqlite(session):
            query = query.with_for_update()
        rows = {row.id: row for row in session.scalars(query)}
        for outcome in outcomes:
            row = _still_claimed(rows, outcome.claim)
            if row is not None:
                _apply(row, outcome, now)
        for claim in unsent:
            row = _still_claimed(rows, claim)
            if row is not None:
                row.next_attempt_at = claim.due_at
        _back_off(session, hooks, outcomes, now, failed_after or {})


def _lock_webhooks(session: Session, outcomes: Sequence[Outcome]) -> dict[int, Webhook]:
    """The webhooks tried, locked in id order before their deliveries are (a webhook's deletion
    locks it, then its deliveries: the other order could deadlock with it), and ``FOR NO KEY
    UPDATE``, which the foreign-key checks of new deliveries being queued do not wait for."""
    hooks = {}
    for webhook_id in sorted({outcome.claim.webhook_id for outcome in outcomes}):
        hook = session.get(Webhook, webhook_id, with_for_update={"key_share": True})
        if hook is not None:  # else deleted meanwhile
            hooks[webhook_id] = hook
    return hooks


def _back_off(
    session: Session,
    hooks: Mapping[int, Webhook],
    outcomes: Sequence[Outcome],
    now: datetime,
    failed_after: Mapping[int, float],
) -> None:
    """Each webhook tried: back on its feet after a success, else one more failure and its
    ``retry_at`` further off. Once its receiver has failed for :data:`DELIVERY_HORIZON` on end,
    its deliveries that lived through all of it fail: held back, they were tried fewer times
    than :data:`MAX_ATTEMPTS`, and would otherwise wait for ever on a dead receiver. (Counted by
    a delivery's age alone, a dispatcher that had been down for hours failed old deliveries on
    their first try.)"""
    last: dict[int, Outcome] = {outcome.claim.webhook_id: outcome for outcome in outcomes}
    for webhook_id, hook in hooks.items():
        if not receiver_failed(last[webhook_id]):
            hook.failures, hook.retry_at, hook.failing_since = 0, None, None
            continue
        if hook.retry_at is not None and hook.retry_at > now:
            continue  # another sender, which took this webhook's other deliveries, recorded this outage's failure
        failed_at = now + timedelta(seconds=int(failed_after.get(webhook_id, 0.0)))  # whole seconds: a refusal is 0
        hook.failures += 1
        hook.failing_since = hook.failing_since or failed_at
        hook.retry_at = failed_at + backoff(hook.failures)
        if failed_at - hook.failing_since < DELIVERY_HORIZON:
            continue
        tried = [outcome.claim.delivery_id for outcome in outcomes if outcome.claim.webhook_id == webhook_id]
        session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.webhook_id == webhook_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.created_at <= failed_at - DELIVERY_HORIZON,
                # due or handed back, or tried just now; not one another sender holds (leased ahead)
                or_(WebhookDelivery.next_attempt_at <= now, WebhookDelivery.id.in_(tried)),
            )
            .values(
                status="failed",  # a delivery tried just now keeps what its receiver said
                last_error=case(
                    (WebhookDelivery.id.in_(tried), WebhookDelivery.last_error),
                    else_=f"its receiver kept failing for {_span(DELIVERY_HORIZON)}",
                ),
            )
            .execution_options(synchronize_session=False)
        )


def _span(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min"


def _still_claimed(rows: dict[int, WebhookDelivery], claim: Claim) -> WebhookDelivery | None:
    row = rows.get(claim.delivery_id)
    if row is None or row.status != "pending" or row.next_attempt_at != claim.lease_until:
        logger.warning("webhook delivery %s: claim lost before its outcome was recorded", claim.delivery_id)
        return None
    return row


def _apply(delivery: WebhookDelivery, outcome: Outcome, now: datetime) -> None:
    delivery.attempts += 1
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    if outcome.error is None:
        delivery.status = "delivered"
        delivery.delivered_at = now
    elif outcome.status_code == 410 or delivery.attempts >= MAX_ATTEMPTS:
        delivery.status = "failed"  # 410 Gone: the receiver asked us to stop
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts)


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


# --- the background sender ------------------------------------------------------------------------


DISPATCH_BACKOFF_CAP = 60.0
"""Seconds between two rounds of a dispatcher whose rounds keep failing, at most (see :class:`WebhookDispatcher`)."""


class WebhookDispatcher:
    """A daemon thread that calls :func:`deliver_due_batch` every ``interval`` seconds.

    Each round claims, sends and records in short transactions of its own (none is open while
    a receiver is called). Errors are logged and the thread carries on: a bad round must not
    silently stop all future deliveries. When a round fills its batch it starts the next one
    at once.

    Rounds that keep failing (the database is down) are retried with exponential back-off, from
    ``interval`` up to ``max_backoff`` seconds, and said once in full: a traceback for a bug, one
    line for a database that cannot be reached (:func:`~crowdloop.storage.db.database_unavailable`),
    then one line per failed round, and one when a round succeeds again. With the database down
    it logged a full traceback every second.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        client: httpx.Client | None = None,
        interval: float = 1.0,
        batch: int = 100,
        allowed: Sequence[Network] = (),
        max_backoff: float = DISPATCH_BACKOFF_CAP,
    ) -> None:
        self._factory = factory
        self._client = client  # None: the thread opens (and closes) its own, calling public addresses
        self._allowed = tuple(allowed)  # and these networks
        self._interval = interval
        self._max_backoff = max(max_backoff, interval)
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
        transport = PublicOnlyTransport(self._allowed)
        with httpx.Client(timeout=REQUEST_TIMEOUT, follow_redirects=False, transport=transport) as client:
            self._loop(client)

    def _loop(self, client: httpx.Client) -> None:
        failures, failing_since = 0, 0.0
        while not self._stopping.is_set():
            try:
                tried = self._round(client)
            except Exception as error:
                failures += 1
                failing_since = failing_since or time.monotonic()
                wait = min(self._interval * 2 ** min(failures - 1, 30), self._max_backoff)
                self._log_failure(error, failures, wait)
                self._stopping.wait(wait)
                continue
            if failures:
                logger.info("webhook dispatch works again, after %d failed round(s) in %.0f s",
                            failures, time.monotonic() - failing_since)  # fmt: skip
                failures, failing_since = 0, 0.0
            if tried < self._batch:  # a full batch: more may be due, no pause
                self._stopping.wait(self._interval)

    @staticmethod
    def _log_failure(error: Exception, failures: int, wait: float) -> None:
        lines = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
        if failures > 1:
            logger.warning("webhook dispatch round failed again (%d in a row: %s); retrying in %g s",
                           failures, reason, wait)  # fmt: skip
        elif database_unavailable(error):
            logger.warning("webhook dispatch round failed: the database is unavailable (%s); retrying in %g s",
                           reason, wait)  # fmt: skip
        else:
            logger.exception("webhook dispatch round failed; retrying in %g s", wait)

    def _round(self, client: httpx.Client) -> int:
        return deliver_due_batch(self._factory, client, limit=self._batch)
