"""The edge's side of the server's API, over httpx: read the production model's metadata,
download and verify its artifact, deliver feedback and telemetry.

Every failure to reach the server (refused, timed out, 5xx) raises :class:`ServerAwayError`,
which the runtime treats as "try again later"; a 4xx is the caller's mistake and raises
:class:`~crowdloop.errors.CrowdloopError` subclasses with the server's message.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from crowdloop.deploy.artifact import artifact_digest
from crowdloop.errors import AuthenticationError, BusyError, InvalidInputError, NotFoundError, PermissionDeniedError

TIMEOUT = httpx.Timeout(10.0, connect=2.0)
REFUSED = (400, 413, 422)
"""Statuses that refuse what was sent, for good; other 4xx are the way there (retried)."""


class ServerAwayError(BusyError):
    """The server did not answer, or answered 5xx: nothing is lost, the edge retries."""


class ServerLink:
    """One device token, one project, one server."""

    def __init__(self, server: str, token: str, project: int, transport: httpx.BaseTransport | None = None) -> None:
        self.project = project
        self._http = httpx.Client(
            base_url=server.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT,
            transport=transport,
        )
        self.reached = float("-inf")
        """When (``time.monotonic``) the server last answered: anything but a :class:`ServerAwayError`."""

    def _request(self, method: str, route: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, route, **kwargs)
        except httpx.TransportError as error:
            raise ServerAwayError(f"server unreachable: {error}") from error
        if response.status_code >= 500:
            raise ServerAwayError(f"server error {response.status_code}: {response.text[:200]}")
        self.reached = time.monotonic()
        if response.status_code == 404:
            raise NotFoundError(_detail(response))
        if response.status_code in (401, 403):  # this device, not the entry: keep it and retry later
            refused = AuthenticationError if response.status_code == 401 else PermissionDeniedError
            raise refused(f"{method} {route} refused ({response.status_code}): {_detail(response)}")
        if response.status_code in REFUSED:
            raise InvalidInputError(f"{method} {route} refused ({response.status_code}): {_detail(response)}")
        if response.is_error:  # a timeout, conflict or rate limit on the way: not the entries' fault
            raise ServerAwayError(f"{method} {route} answered {response.status_code}; trying again later")
        return response

    def production(self, timeout: httpx.Timeout = TIMEOUT) -> dict[str, Any] | None:
        """The production version's metadata, or ``None`` when the project has none yet.

        A project this device cannot see is an error that says so: it used to read as "no model
        yet", so a wrong ``--project`` or a missing grant left the edge waiting without a word.
        """
        route = f"/projects/{self.project}/models/production"
        try:
            response = self._request("GET", route, timeout=timeout)
        except NotFoundError as error:
            if str(error).startswith("no project"):
                raise NotFoundError(
                    f"{error} Is the project id right, and is the project granted to this device "
                    f"(crowdloop projects grant {self.project} DEVICE)?"
                ) from None
            return None
        try:
            meta = response.json()
        except ValueError:
            meta = None
        if not isinstance(meta, dict):  # a captive portal's page, or another service on that port
            raise ServerAwayError("the answer about the production model is not the server's JSON; trying again later")
        return meta

    def download(self, version: int, digest: str, target: Path) -> Path:
        """Download version ``version`` into ``target`` (replaced) and check it hashes to ``digest``."""
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
        try:
            self._extract(f"/projects/{self.project}/models/{version}/artifact", staging)
            if artifact_digest(staging) != digest:
                raise InvalidInputError(f"model version {version} does not match its digest {digest[:12]}...")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def _extract(self, route: str, folder: Path) -> None:
        with tempfile.TemporaryFile() as spool:
            try:
                with self._http.stream("GET", route, timeout=httpx.Timeout(60.0, connect=2.0)) as response:
                    if response.is_error:
                        response.read()
                        raise ServerAwayError(f"artifact download failed ({response.status_code}): {_detail(response)}")
                    self.reached = time.monotonic()
                    for chunk in response.iter_bytes():
                        spool.write(chunk)
            except httpx.TransportError as error:
                raise ServerAwayError(f"artifact download interrupted: {error}") from error
            spool.seek(0)
            with tarfile.open(fileobj=spool, mode="r:gz") as archive:
                archive.extractall(folder, filter="data")

    def send(self, kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """POST a batch to ``/edge/feedback`` or ``/edge/telemetry``; the server's report.

        :class:`InvalidInputError` means these entries can never go (strict JSON cannot carry them,
        or the server refused them); anything else is the way there, and the entries wait.
        """
        try:
            body = json.dumps(entries, allow_nan=False)
        except ValueError as error:
            raise InvalidInputError(f"{kind} entries JSON cannot carry: {error}") from None
        headers = {"Content-Type": "application/json"}
        response = self._request("POST", f"/projects/{self.project}/edge/{kind}", content=body, headers=headers)
        try:
            report: dict[str, Any] = response.json()
        except ValueError:  # a captive portal's page, say: the server never saw the entries
            raise ServerAwayError(f"the answer to {kind} is not the server's JSON; trying again later") from None
        return report

    def close(self) -> None:
        self._http.close()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail") or body.get("error") or body) if isinstance(body, dict) else str(body)
