"""The Python SDK: every API route as a method, errors as the same CrowdloopError classes.

    >>> from crowdloop.client import Client
    >>> client = Client("http://127.0.0.1:8000", token="cl_...")   # doctest: +SKIP
    >>> task = client.next_task(project_id=1)                      # doctest: +SKIP
    >>> client.submit(task["assignment_id"], label="cat")          # doctest: +SKIP

``transport`` accepts any ``httpx`` transport (``httpx.MockTransport`` in a test,
``fastapi.testclient`` style ASGI transports), the pluggable boundary.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Self
from urllib.parse import quote

import httpx

from crowdloop import errors
from crowdloop.errors import CrowdloopError, ServerUnreachableError
from crowdloop.urls import server_url

RETRIES = 3
"""Times a call is repeated when the database was busy (503: nothing was saved) or, for a call
that is safe to repeat, when the connection dropped before an answer came back."""

ITEMS_PAGE = 1000
"""The most items the API lists in one page."""

_SAFE_METHODS = frozenset({"GET", "PATCH"})
"""Methods every route answers the same way twice (a PATCH sets values, it does not add to them)."""

_ERRORS = {name: cls for name, cls in vars(errors).items() if isinstance(cls, type) and issubclass(cls, CrowdloopError)}


class Client:
    """A connection to a crowdloop server as one user (their bearer token)."""

    def __init__(
        self, url: str, token: str | None = None, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=server_url(url).rstrip("/") + "/api/v1", headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, repeatable: bool = False, **kwargs: Any) -> Any:
        """One API call, repeated (with back-off) while the database is busy, and while the connection
        drops if the call is ``repeatable`` (a POST the server answers the same way twice) or its
        method is: a proxy or a restarting server may close a kept-alive connection under a request."""
        for attempt in range(RETRIES + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                sent_nothing = isinstance(error, httpx.ConnectError)
                if attempt < RETRIES and (sent_nothing or repeatable or method in _SAFE_METHODS):
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise self._no_answer(error) from None
            if response.status_code != 503 or attempt == RETRIES:
                break
            time.sleep(0.05 * 2**attempt)  # busy database: nothing was saved, the call is safe to repeat
        _raise_for(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _no_answer(self, error: httpx.TransportError) -> CrowdloopError:
        """The error for a call that got no answer. A timeout means the request reached the server,
        which may well have done it (a long aggregation): "cannot reach" made callers repeat it."""
        if isinstance(error, httpx.ReadTimeout | httpx.WriteTimeout):
            timeout = self._http.timeout
            seconds = timeout.read if isinstance(error, httpx.ReadTimeout) else timeout.write
            within = f" within {seconds:g} s" if seconds is not None else ""
            return CrowdloopError(
                f"the server at {self._http.base_url} did not answer{within}; the request may have been"
                " done, so check before repeating it (or give the client a longer timeout)."
            )
        if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):  # nothing was sent
            return ServerUnreachableError(f"cannot reach the server at {self._http.base_url}: {error}")
        return CrowdloopError(f"cannot reach the server at {self._http.base_url}: {error}")

    # system and users
    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/health"))

    def me(self) -> dict[str, Any]:
        return dict(self._call("GET", "/me"))

    def create_user(self, name: str, role: str) -> dict[str, Any]:
        """Admins: a new user and their first token (shown once)."""
        return dict(self._call("POST", "/users", json={"name": name, "role": role}))

    def users(self, role: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/users", params={"role": role} if role else None))

    def issue_token(self, user_id: int) -> str:
        return str(self._call("POST", f"/users/{user_id}/tokens")["token"])

    def revoke_tokens(self, user_id: int) -> int:
        return int(self._call("DELETE", f"/users/{user_id}/tokens")["revoked"])

    # projects
    def create_project(self, **spec: Any) -> dict[str, Any]:
        return dict(self._call("POST", "/projects", json=spec))

    def projects(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/projects"))

    def project(self, project_id: int) -> dict[str, Any]:
        return dict(self._call("GET", f"/projects/{project_id}"))

    def update_project(self, project_id: int, **changes: Any) -> dict[str, Any]:
        return dict(self._call("PATCH", f"/projects/{project_id}", json=changes))

    def start(self, project_id: int) -> dict[str, Any]:
        return self.update_project(project_id, status="active")

    def pause(self, project_id: int) -> dict[str, Any]:
        return self.update_project(project_id, status="paused")

    def status(self, project_id: int) -> dict[str, Any]:
        return dict(self._call("GET", f"/projects/{project_id}/status"))

    def grant_access(self, project_id: int, worker_id: int) -> None:
        self._call("POST", f"/projects/{project_id}/access", json={"worker_id": worker_id})

    def aggregate(self, project_id: int) -> dict[str, Any]:
        return dict(self._call("POST", f"/projects/{project_id}/aggregate"))

    # items
    def import_items(self, project_id: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Import ``rows``, each ``{"data": {field: value, ...}}`` with optional ``external_id``,
        ``gold_label``, ``gold_explanation`` and ``priority``; returns the import report."""
        return dict(self._call("POST", f"/projects/{project_id}/items", json=rows))

    def upload_items(self, project_id: int, path: str | Path) -> dict[str, Any]:
        path = Path(path)
        with path.open("rb") as handle:
            files = {"file": (path.name, handle)}
            return dict(self._call("POST", f"/projects/{project_id}/items/upload", files=files))

    def items(self, project_id: int, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """One page of the project's items in id order; ``limit`` at most :data:`ITEMS_PAGE` (a larger one
        is refused). :meth:`iter_items` reads them all."""
        params = {"offset": offset, "limit": limit}
        return list(self._call("GET", f"/projects/{project_id}/items", params=params))

    def iter_items(self, project_id: int, page_size: int = ITEMS_PAGE) -> Iterator[dict[str, Any]]:
        """Every item of the project in id order, a page at a time; each page starts after the items
        received so far, so a page shorter than asked for never makes it skip any."""
        offset = 0
        while page := self.items(project_id, offset=offset, limit=page_size):
            yield from page
            offset += len(page)

    # the worker's loop
    def next_task(self, project_id: int) -> dict[str, Any] | None:
        """The next leased item, or None when nothing is left for this worker, or the project is
        paused (``project(project_id)["status"]`` tells which)."""
        task = self._call("POST", f"/projects/{project_id}/tasks/next", repeatable=True)  # same lease back
        return None if task is None else dict(task)

    def submit(self, assignment_id: int, label: str, seconds: float | None = None) -> dict[str, Any]:
        body = {"label": label, "seconds": seconds}
        return dict(self._call("POST", f"/assignments/{assignment_id}/answer", json=body, repeatable=True))

    def skip(self, assignment_id: int) -> None:
        self._call("POST", f"/assignments/{assignment_id}/skip", repeatable=True)

    def next_tasks(self, project_id: int, count: int = 2) -> list[dict[str, Any]]:
        """This worker's open leases, leasing more until there are ``count`` (the web page's look-ahead)."""
        return list(self._call("POST", f"/projects/{project_id}/tasks/batch", params={"count": count}, repeatable=True))

    def undo(self, assignment_id: int) -> dict[str, Any]:
        """Withdraw one's answer while the lease lasts; the task comes back, leased again."""
        return dict(self._call("POST", f"/assignments/{assignment_id}/undo"))

    def standing(self, project_id: int) -> dict[str, Any]:
        return dict(self._call("GET", f"/projects/{project_id}/me"))

    # the requester's desk
    def dashboard(self, project_id: int) -> dict[str, Any]:
        """Progress, pace, money, confidence histogram, agreement and the worker table."""
        return dict(self._call("GET", f"/projects/{project_id}/dashboard"))

    def review_queue(self, project_id: int, limit: int = 20) -> list[dict[str, Any]]:
        """The most doubtful answered items, each with every answer."""
        return list(self._call("GET", f"/projects/{project_id}/review", params={"limit": limit}))

    def decide(self, project_id: int, item_id: int, label: str, explanation: str | None = None) -> dict[str, Any]:
        """The requester's own label for an item: its gold and final label from now on."""
        body = {"label": label, "explanation": explanation}
        return dict(self._call("POST", f"/projects/{project_id}/review/{item_id}", json=body, repeatable=True))

    def gold_report(self, project_id: int, limit: int = 20) -> list[dict[str, Any]]:
        """The answered gold items the crowd misses most, with their votes (where a gold label may be wrong)."""
        return list(self._call("GET", f"/projects/{project_id}/gold", params={"limit": limit}))

    def correct_gold(self, project_id: int, item_id: int, label: str, explanation: str | None = None) -> dict[str, Any]:
        """Correct a gold item's label; ``workers``: the tallies of those whose gold answers were judged again."""
        body = {"label": label, "explanation": explanation}
        path = f"/projects/{project_id}/items/{item_id}/gold"
        return dict(self._call("PUT", path, json=body, repeatable=True))

    def remove_gold(self, project_id: int, item_id: int) -> dict[str, Any]:
        """Make a gold item regular again; ``workers``: the tallies of those whose gold answers it took out."""
        return dict(self._call("DELETE", f"/projects/{project_id}/items/{item_id}/gold"))

    # edge devices (device tokens of the projects granted to them)
    def send_feedback(self, project_id: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """Inputs the edge model was unsure about (or audited) as crowd items; idempotent on ``client_id``."""
        return dict(self._call("POST", f"/projects/{project_id}/edge/feedback", json=entries, repeatable=True))

    def send_telemetry(self, project_id: int, batches: list[dict[str, Any]]) -> dict[str, Any]:
        """Per-version prediction summaries from the edge; idempotent on each batch's ``client_id``."""
        return dict(self._call("POST", f"/projects/{project_id}/edge/telemetry", json=batches, repeatable=True))

    # crowd management
    def workers(self, project_id: int) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/projects/{project_id}/workers"))

    def ban(self, project_id: int, worker_id: int, reason: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/projects/{project_id}/workers/{worker_id}/ban", json={"reason": reason}))

    def unban(self, project_id: int, worker_id: int, reason: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/projects/{project_id}/workers/{worker_id}/unban", json={"reason": reason}))

    def bans(self, project_id: int) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/projects/{project_id}/bans"))

    def bonus(self, project_id: int, worker_id: int, amount: float, reason: str = "") -> dict[str, Any]:
        body = {"worker_id": worker_id, "amount": amount, "reason": reason}
        return dict(self._call("POST", f"/projects/{project_id}/bonuses", json=body))

    def payouts(self, project_id: int) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/projects/{project_id}/payouts"))

    # export
    def export(
        self, project_id: int, what: str = "labels", fmt: str = "csv", path: str | Path | BinaryIO | None = None
    ) -> bytes:
        """Labels or answers (csv, jsonl, parquet) or ``label-studio``; streamed to ``path`` if given.

        A file is written as ``path`` + ``.part`` and renamed only when whole: a download cut off
        (the server restarted) left a truncated file, and a CSV cut at a row looks valid. A path
        that is not a regular file (``/dev/stdout``, a pipe) is written to directly, and so is an
        open binary stream (``sys.stdout.buffer``).
        """
        route = f"/projects/{project_id}/export/{what}"
        params = None if what == "label-studio" else {"format": fmt}
        stream = None if path is None or isinstance(path, str | Path) else path
        target = Path(path) if isinstance(path, str | Path) else None
        partial = None
        if target is not None and (not target.exists() or target.is_file()):
            partial = target.with_name(target.name + ".part")
        try:
            with self._http.stream("GET", route, params=params) as response:
                if response.is_error:
                    response.read()
                    _raise_for(response)
                if stream is not None:
                    for chunk in response.iter_bytes():
                        stream.write(chunk)
                    return b""
                if target is None:
                    return response.read()
                with (partial or target).open("wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
        except httpx.TransportError as error:
            if partial is not None:
                partial.unlink(missing_ok=True)
            written = "what was written is incomplete" if stream is not None else "nothing was written"
            raise CrowdloopError(f"the export from {self._http.base_url} was cut off: {error}; {written}.") from None
        if partial is not None and target is not None:
            partial.replace(target)
        return b""

    # webhooks
    def add_webhook(self, project_id: int, url: str, events: list[str] | None = None) -> dict[str, Any]:
        return dict(self._call("POST", f"/projects/{project_id}/webhooks", json={"url": url, "events": events}))

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/projects/{project_id}/webhooks"))

    def delete_webhook(self, project_id: int, webhook_id: int) -> None:
        self._call("DELETE", f"/projects/{project_id}/webhooks/{webhook_id}")

    def deliveries(self, project_id: int) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/projects/{project_id}/webhooks/deliveries"))

    # models (training runs on the server and may take minutes: no client timeout for it)
    def train_model(
        self, project_id: int, family: str | None = None, trials: int = 0, timeout: float | None = None, seed: int = 0,
        targets: str = "labels",
    ) -> dict[str, Any]:  # fmt: skip
        """Train (or tune, with ``trials``/``timeout`` or ``family="auto"``), register and maybe promote.

        ``targets="crowd"`` learns from the raw answers (the classifier and the workers' confusion
        matrices together) instead of the aggregated labels.
        """
        body = {"family": family, "trials": trials, "timeout": timeout, "random_state": seed, "targets": targets}
        return dict(self._call("POST", f"/projects/{project_id}/models/train", json=body, timeout=None))

    def models(self, project_id: int) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/projects/{project_id}/models"))

    def model(self, project_id: int, ref: str | int = "production") -> dict[str, Any]:
        return dict(self._call("GET", f"/projects/{project_id}/models/{_ref(ref)}"))

    def promote_model(self, project_id: int, ref: str | int, reason: str) -> dict[str, Any]:
        """Make a version production by hand; the answer's ``comparison`` holds both versions' scores on
        today's gold that neither learned from, how many items that was (``gold_items``), and a
        ``warning`` when the version reads fields production did not (``changed`` is false when it
        already was production)."""
        body = {"reason": reason}
        return dict(self._call("POST", f"/projects/{project_id}/models/{_ref(ref)}/promote", json=body))

    def check_drift(self, project_id: int, ref: str | int = "production") -> dict[str, Any]:
        """Check one version for drift now: its edge telemetry since the last check against its training data."""
        return dict(self._call("POST", f"/projects/{project_id}/models/{_ref(ref)}/drift"))

    def drift(self, project_id: int) -> list[dict[str, Any]]:
        """The latest drift check of each version."""
        return list(self._call("GET", f"/projects/{project_id}/drift"))

    def model_events(self, project_id: int, limit: int = 200, before: int | None = None) -> list[dict[str, Any]]:
        """The latest ``limit`` events, oldest first; ``before`` (an event id) for the page before."""
        params: dict[str, Any] = {"limit": limit} | ({"before": before} if before is not None else {})
        return list(self._call("GET", f"/projects/{project_id}/models/events", params=params))

    def set_priorities(
        self, project_id: int, strategy: str = "activelab", batch_size: int = 50, seed: int = 0
    ) -> dict[str, Any]:
        """Let the deployed model set which open items people label next (active learning)."""
        body = {"strategy": strategy, "batch_size": batch_size, "random_state": seed}
        return dict(self._call("POST", f"/projects/{project_id}/priorities", json=body, timeout=None))

    def download_model(self, project_id: int, ref: str | int, folder: str | Path) -> dict[str, Any]:
        """Download a version's artifact into ``folder`` (made; must be empty) and check its digest."""
        import tarfile
        import tempfile

        from crowdloop.deploy.artifact import artifact_digest

        target = Path(folder)
        if target.exists() and any(target.iterdir()):
            raise errors.InvalidInputError(f"{target} is not empty; download a model into a new folder.")
        with tempfile.TemporaryFile() as spool:
            headers = self._download_to(f"/projects/{project_id}/models/{_ref(ref)}/artifact", spool)
            spool.seek(0)
            with tarfile.open(fileobj=spool, mode="r:gz") as archive:
                archive.extractall(target, filter="data")
        digest = artifact_digest(target)
        if digest != headers.get("x-crowdloop-digest"):
            raise errors.InvalidInputError(f"the downloaded model in {target} does not match its digest.")
        return {"version": int(headers.get("x-crowdloop-version", 0)), "digest": digest, "path": str(target)}

    def _download_to(self, route: str, handle: Any) -> httpx.Headers:
        """Stream ``route`` into ``handle``; a server that cannot be reached, or a download cut off,
        is a CrowdloopError naming the server (it was httpx's traceback)."""
        try:
            with self._http.stream("GET", route, timeout=None) as response:
                if response.is_error:
                    response.read()
                    _raise_for(response)
                for chunk in response.iter_bytes():
                    handle.write(chunk)
                return response.headers
        except httpx.ConnectError as error:
            raise self._no_answer(error) from None
        except httpx.TransportError as error:
            raise CrowdloopError(f"the download from {self._http.base_url} was cut off: {error}.") from None


def _ref(ref: str | int) -> str:
    """A version reference as one path segment: ``production/artifact`` must not become a route."""
    return quote(str(ref), safe="")


def _raise_for(response: httpx.Response) -> None:
    """Turn an error answer back into the CrowdloopError class the server raised."""
    if not response.is_error:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    kind = _ERRORS.get(str(body.get("error")), CrowdloopError)
    error = kind(str(body.get("detail") or f"HTTP {response.status_code} from the server"))
    raise error
