"""The edge runtime: predictions from the project's production model, with the server or without.

::

    runtime = EdgeRuntime("http://server:8000", token, project=3, state_dir=Path("edge-state"))
    runtime.start()                         # loads the last model on disk, then keeps in sync
    runtime.predict({"text": "...", "text_b": "..."})
    # {'label': 'match', 'probabilities': {...}, 'version': 4, 'confidence': 0.93}

A background thread polls the server for the ``production`` version; a new one is
downloaded, checked against its SHA-256 digest, loaded, and swapped in by replacing one
reference, so predictions in flight finish on the old model and none is refused. A
second thread delivers the outbox (:mod:`.outbox`): inputs the model was unsure about
(confidence under ``threshold``) and a random ``audit_rate`` share of the others go back to
the server as crowd items, and per-version telemetry (:mod:`.telemetry`) goes with them.
While the server is away, predictions go on from the model on disk and the outbox waits.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from crowdloop.crowd.dedup import has_content
from crowdloop.deploy.artifact import artifact_digest
from crowdloop.deploy.edge_model import EdgeModel
from crowdloop.deploy.features import check_fields
from crowdloop.deploy.link import ServerAwayError, ServerLink
from crowdloop.deploy.outbox import DEFAULT_MAX_ENTRIES, KINDS, Outbox
from crowdloop.deploy.telemetry import EdgeMetrics, Telemetry
from crowdloop.errors import (
    AuthenticationError,
    BusyError,
    CrowdloopError,
    InvalidInputError,
    InvalidParameterError,
    MissingColumnsError,
    NotFoundError,
    PermissionDeniedError,
)
from crowdloop.urls import origin, server_url

log = logging.getLogger("crowdloop.edge")
START_CHECK_TIMEOUT = httpx.Timeout(2.0)
"""The most the check of the token at start waits: the model on disk is served after it."""
CURRENT = "current.json"
SERVER = "server.json"
"""Which server a state folder's model and queued feedback belong to (:func:`claim_state_dir`)."""


def server_identity(server: str) -> str:
    """``scheme://host[:port][/path]`` of a server URL, as two spellings of one address compare
    equal: the scheme and host in lower case, a default port and a trailing slash left out."""
    url = httpx.URL(server.strip())
    return origin(url) + url.path.rstrip("/")


def claim_state_dir(state_dir: Path, server: str) -> None:
    """Refuse a state folder that holds another server's model and feedback; mark a new one as this
    server's. The model kept there was served at start with the server away, only checked to be
    the same project's number: a folder left by an edge of another server (the default folder
    is the same for every run) served that server's model, and would have sent it its feedback.
    A folder from before the mark is taken as this server's, as its model was by project."""
    marker = state_dir / SERVER
    wanted = server_identity(server)
    if marker.is_file():
        try:
            recorded = str(json.loads(marker.read_text())["server"])
        except (ValueError, KeyError, TypeError):
            raise InvalidParameterError(f"{marker} is damaged: remove it, or give another --state-dir.") from None
        if recorded != wanted:
            raise InvalidParameterError(
                f"{state_dir} holds the model and unsent feedback of an edge of {recorded}, not {wanted}: give "
                f"another --state-dir, or remove {marker} if that server moved to this address."
            )
        return
    marker.write_text(json.dumps({"server": wanted}))


class EdgeRuntime:
    """Serve one project's production model; see the module docstring."""

    def __init__(
        self,
        server: str,
        token: str,
        project: int,
        state_dir: Path,
        *,
        poll_interval: float = 10.0,
        flush_interval: float = 5.0,
        threshold: float = 0.6,
        audit_rate: float = 0.01,
        batch_size: int = 200,
        outbox_limit: int | None = DEFAULT_MAX_ENTRIES,
        random_state: int | None = None,
    ) -> None:
        self.project, self.state_dir = project, Path(state_dir)
        self.poll_interval, self.flush_interval = poll_interval, flush_interval
        self.threshold, self.audit_rate, self.batch_size = threshold, audit_rate, batch_size
        self.server = server = server_url(server)  # before anything is written: a bad one was kept as the server's
        self.state_dir.mkdir(parents=True, exist_ok=True)
        claim_state_dir(self.state_dir, server)
        self.link = ServerLink(server, token, project)
        self.metrics = EdgeMetrics()
        self.outbox = Outbox(self.state_dir / "outbox.sqlite", max_entries=outbox_limit, on_drop=self._dropped)
        self._warned_drop_at = float("-inf")
        self.telemetry = Telemetry()
        self._model: EdgeModel | None = None
        self._rng = random.Random(random_state)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._problems: dict[Any, str] = {}  # each sync step's last error, until it next succeeds
        self._next_flush = 0.0
        self._swap_lock = threading.Lock()
        self._away_since: float | None = None  # when the server went away; None while it answers
        self._away_lock = threading.Lock()

    # -- the model -----------------------------------------------------------------

    @property
    def model(self) -> EdgeModel | None:
        return self._model

    @property
    def version(self) -> int | None:
        model = self._model
        return None if model is None else model.version

    def swap(self, model: EdgeModel) -> None:
        """Serve ``model`` from now on (one reference assignment: atomic for readers)."""
        self.telemetry.text_fields = model.features.spec.fields
        self._model = model
        self.metrics.version.set(model.version)
        self.metrics.swaps.inc()
        log.info("serving model version %s", model.version)

    def load_local(self) -> bool:
        """Serve the last version this device verified and kept, if any (works offline): only if it
        still matches its digest and is this project's. A marker written before it named its project
        is taken as this project's (on its digest) and rewritten with it."""
        marker = self.state_dir / CURRENT
        if not marker.is_file():
            return False
        current = json.loads(marker.read_text())
        if current.setdefault("project", self.project) != self.project:
            log.warning("%s holds a model of project %s, not %s: not serving it", marker, current.get("project"),
                        self.project)  # fmt: skip
            return False
        folder = self.state_dir / "models" / str(current["version"])
        try:
            if artifact_digest(folder) != current["digest"]:
                raise InvalidInputError(f"{folder} does not match its digest")
            self.swap(EdgeModel(folder, current["version"], current["digest"]))
        except Exception as error:  # a damaged local copy: download it again instead
            log.warning("local model version %s unusable (%s); waiting for the server", current["version"], error)
            return False
        marker.write_text(json.dumps(current))
        return True

    def refresh(self) -> bool:
        """Pull the production version if it is not the one served; ``True`` when swapped."""
        meta = self.link.production()
        if meta is None:
            return False
        version, digest = int(meta["version"]), str(meta.get("artifact_digest") or meta["digest"])
        current = self._model
        if current is not None and current.version == version and current.digest == digest:
            return False
        with self._swap_lock:
            folder = self.link.download(version, digest, self._models_dir() / str(version))
            self.swap(EdgeModel(folder, version, digest))
            (self.state_dir / CURRENT).write_text(
                json.dumps({"project": self.project, "version": version, "digest": digest})
            )
        return True

    def _models_dir(self) -> Path:
        path = self.state_dir / "models"
        path.mkdir(exist_ok=True)
        return path

    # -- predictions ---------------------------------------------------------------

    def predict(self, item: dict[str, Any]) -> dict[str, Any]:
        """``{label, probabilities, version, confidence}`` of one item (a mapping of its fields)."""
        model = self._model  # read once: a swap during this call does not affect it
        if model is None:
            raise self._no_model()
        start = time.perf_counter()
        prediction = model.predict(item)
        latency = time.perf_counter() - start
        self.metrics.observe(prediction.version, prediction.confidence, latency)
        self.telemetry.record(prediction.version, prediction.label, prediction.confidence, latency, item)
        reason = self._feedback_reason(prediction.confidence)
        if reason is not None:
            self._queue_feedback(model, item, prediction.to_dict(), reason)
        return prediction.to_dict()

    def _no_model(self) -> BusyError:
        """Why nothing is served yet: with the server's last word on a pull (the project not granted
        to this device, a revoked token, the server away), which was only in the log."""
        said = self._problems.get(self.refresh)
        reason = f"the last pull failed: {said}" if said else "the project has no production version, or it is loading"
        return BusyError(f"the edge has no model yet: {reason}.")

    def predict_many(self, items: list[Any]) -> list[dict[str, Any]]:
        """:meth:`predict` of each item, once every item is known to be predictable (an object with
        at least one of the model's fields; one it lacks is read as empty): a refused item used to
        fail the request after the items before it were counted."""
        model = self._model
        if model is None:
            raise self._no_model()
        for number, item in enumerate(items):
            try:
                check_fields(item, model.fields, f"item {number}")
            except MissingColumnsError as error:
                raise MissingColumnsError(f"{error} Nothing was predicted.") from None
        return [self.predict(item) for item in items]

    def _feedback_reason(self, confidence: float) -> str | None:
        if confidence < self.threshold:
            return "unsure"
        if self.audit_rate > 0 and self._rng.random() < self.audit_rate:
            return "audit"
        return None

    def _queue_feedback(self, model: EdgeModel, item: dict[str, Any], prediction: dict[str, Any], reason: str) -> None:
        data = {name: _json_value(item[name]) for name in model.fields if name in item}
        if not has_content(data):
            return  # the server refuses an item with nothing to label
        payload = {
            "data": data,
            "model_version": prediction["version"],
            "reason": reason,
            "label": prediction["label"],
            "confidence": prediction["confidence"],
            "observed_at": time.time(),
        }
        self.outbox.put("feedback", payload)
        self.metrics.feedback.labels(reason).inc()

    def _dropped(self, kind: str, count: int) -> None:
        """The outbox was full: count it, and say so in the log at most once a minute."""
        self.metrics.dropped.labels(kind).inc(count)
        if time.monotonic() - self._warned_drop_at >= 60.0:
            self._warned_drop_at = time.monotonic()
            log.warning(
                "outbox full (%s entries of %s): dropping the oldest; %s dropped so far. Is the server reachable?",
                self.outbox.max_entries, kind, self.outbox.dropped[kind],
            )  # fmt: skip

    # -- delivery ------------------------------------------------------------------

    def flush_telemetry(self) -> int:
        """Move the telemetry gathered so far into the outbox; how many batches."""
        batches = self.telemetry.drain()
        for batch in batches:
            self.outbox.put("telemetry", batch)
        return len(batches)

    def deliver(self, max_batches: int = 20) -> int:
        """Send due outbox entries (up to ``max_batches`` batches of each kind); how many the server
        acknowledged. Raises :class:`ServerAwayError` when the server is away."""
        delivered = 0
        for kind in KINDS:
            for _ in range(max_batches):
                entries = self.outbox.due(kind, self.batch_size)
                if not entries:
                    break
                try:
                    self.link.send(kind, [{"client_id": e.id, **e.payload} for e in entries])
                except (ServerAwayError, AuthenticationError, PermissionDeniedError, NotFoundError):
                    self.outbox.defer(entries)
                    self.metrics.deliveries.labels(kind, "failed").inc()
                    raise
                except InvalidInputError:  # refused, or not encodable: find the bad ones
                    delivered += self._one_by_one(kind, entries)
                    continue
                self.outbox.ack([e.id for e in entries])
                self.metrics.deliveries.labels(kind, "delivered").inc(len(entries))
                delivered += len(entries)
        return delivered

    def _one_by_one(self, kind: str, entries: list[Any]) -> int:
        """Send each entry alone; drop (and log) those the server refuses or JSON cannot carry,
        so one bad entry never blocks the queue behind it. How many the server took."""
        taken = 0
        for number, entry in enumerate(entries):
            try:
                self.link.send(kind, [{"client_id": entry.id, **entry.payload}])
            except InvalidInputError as error:
                log.warning("dropping %s entry %s the server cannot take: %s", kind, entry.id, error)
                self.metrics.deliveries.labels(kind, "refused").inc()
            except CrowdloopError:  # the way there failed: this one and the rest wait
                self.outbox.defer(entries[number:])
                raise
            else:
                taken += 1
                self.metrics.deliveries.labels(kind, "delivered").inc()
            self.outbox.ack([entry.id])
        return taken

    def queue_sizes(self) -> dict[str, int]:
        sizes = {kind: self.outbox.size(kind) for kind in KINDS}
        for kind, size in sizes.items():
            self.metrics.queue.labels(kind).set(size)
        return sizes

    # -- the background thread -----------------------------------------------------

    def start(self) -> EdgeRuntime:
        """Serve the model on disk (if any) and start syncing with the server in the background.

        Two threads: one polls for new model versions, one delivers the outbox, so a long
        backlog of feedback never delays a new model (nor the other way round).
        """
        self.load_local()
        self._refuse_an_unknown_token()
        for name, step, interval in (("models", self.refresh, self.poll_interval), ("outbox", self._sync, 0.2)):
            thread = threading.Thread(target=self._every, args=(step, interval), name=f"crowdloop-edge-{name}")
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
        return self

    def _refuse_an_unknown_token(self) -> None:
        """Raise :class:`AuthenticationError` when the server does not know this device's token: it
        never will, and the edge ran on, refused at every poll, with the reason in its log only. A
        project not granted yet may be granted later (the sync steps and ``/predict`` say so), and
        a server away proves nothing: the edge serves its model on disk meanwhile. The check waits
        :data:`START_CHECK_TIMEOUT` at most, and whatever else goes wrong with it is logged, not
        raised: the sync steps try again. (With the server away at start, an unknown token is
        logged when it answers, as before.)"""
        try:
            self.link.production(timeout=START_CHECK_TIMEOUT)
        except ServerAwayError as error:
            self._server_away(error)
        except (PermissionDeniedError, NotFoundError):
            return
        except AuthenticationError as error:
            self.close()
            raise AuthenticationError(
                f"{server_identity(self.server)} does not know this device's token ({error}): give a device "
                "user's token (--token or CROWDLOOP_EDGE_TOKEN)."
            ) from None
        except CrowdloopError as error:  # the sync steps say it again, and retry
            log.warning("could not check the device's token at start: %s", error)

    def _sync(self) -> None:
        if time.monotonic() >= self._next_flush:
            self._next_flush = time.monotonic() + self.flush_interval
            self.flush_telemetry()
        try:
            self.deliver()
        finally:
            self.queue_sizes()

    def _every(self, step: Any, interval: float) -> None:
        while not self._stop.is_set():
            self._quietly(step)
            self._stop.wait(interval)

    def _quietly(self, step: Any) -> None:
        try:
            step()
        except ServerAwayError as error:
            self._server_away(error)
            self._problems[step] = str(error)  # kept for what predict says
            return
        except CrowdloopError as error:  # the server's word: said once, not at every poll
            self._server_back()
            if self._problems.get(step) != str(error):
                log.warning("edge sync step %s: %s", getattr(step, "__name__", step), error)
            self._problems[step] = str(error)
            return
        except Exception:  # keep serving whatever happens to one sync step
            log.exception("edge sync step %s failed", getattr(step, "__name__", step))
        self._server_back()
        self._problems.pop(step, None)

    def _server_away(self, error: ServerAwayError) -> None:
        """Say once that the server is away (it was said at every poll, every second), not again
        until it has been back."""
        with self._away_lock:
            if self._away_since is None:
                self._away_since = time.monotonic()
                log.warning("server away: %s; serving the model on disk, the outbox waits", error)

    def _server_back(self) -> None:
        """Say once that the server is back: when it has answered since it went away (a step that
        had nothing to send proves nothing)."""
        with self._away_lock:
            if self._away_since is not None and self.link.reached > self._away_since:
                self._away_since = None
                log.info("server back")

    def close(self, timeout: float = 10.0) -> None:
        """Stop syncing; telemetry gathered so far goes into the outbox (kept for next start)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self.flush_telemetry()
        self.outbox.close()
        self.link.close()


def _json_value(value: Any) -> Any:
    """A field value as strict JSON can carry it: NaN and infinities become ``None``, lone
    surrogates are replaced, nested lists and objects likewise."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_json_value(str(k)): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value
