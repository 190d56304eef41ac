"""One line per request in crowdloop's log (logger ``crowdloop.access``, at INFO).

``GET /api/v1/projects/3/items?limit&offset 200 4.1 ms user=7``: the method, the path with the
names of its query parameters but not their values (a query can carry a token or a webhook
secret), the status, the time until the response was sent in full, and who called: the id of the
token's user once the request authenticated, ``metrics`` for ``CROWDLOOP_METRICS_TOKEN``, else
``anonymous`` (a request refused with 401 included). Never a token or a header.

uvicorn's own access log is off: it printed the query string whole, in a format of its own, and
only with ``--workers N``.
"""

from __future__ import annotations

import logging
import re
import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

from crowdloop.monitoring.metrics import noting_status

log = logging.getLogger("crowdloop.access")


class _Caller:
    """Who the current request turned out to be; set from the worker thread that authenticated it."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = "anonymous"


_CALLER: ContextVar[_Caller | None] = ContextVar("crowdloop_access_caller", default=None)
"""The request's :class:`_Caller`. A route's worker thread runs in a copy of the request's context:
it sees the same object, so what it notes there is seen by :class:`AccessLog` afterwards."""


def note_caller(name: str | int) -> None:
    """Record who the current request's caller is (a user id, or ``metrics``); outside a request, nothing."""
    caller = _CALLER.get()
    if caller is not None:
        caller.name = f"{name}"


_QUERY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-\[\]]{0,39}")


def _target(scope: Scope) -> str:
    """The path, control characters escaped (a decoded ``%0A`` wrote a forged second line), and the
    query's parameter names; a part that is not a plain short name (a bare token, ``cl_...``) is
    shown as ``?``, never itself."""
    path = str(scope.get("path", "")).encode("unicode_escape").decode("ascii")
    query: bytes = scope.get("query_string") or b""
    if not query:
        return path
    names = (_shown_name(part.split(b"=", 1)[0].decode("latin-1")) for part in query.split(b"&") if part)
    return f"{path}?{'&'.join(sorted(set(names)))}"


def _shown_name(name: str) -> str:
    return name if _QUERY_NAME.fullmatch(name) and not name.startswith("cl_") else "?"


class AccessLog:
    """Pure ASGI middleware, outermost, so the status is the one the client got (a 500 from
    ``InternalErrors``, a 413 from ``BodyLimit``) and the time covers all of the app's work."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started, status, caller = time.perf_counter(), [500], _Caller()
        token = _CALLER.set(caller)
        try:
            await self.app(scope, receive, noting_status(send, status))
        finally:
            _CALLER.reset(token)
            elapsed = (time.perf_counter() - started) * 1000
            log.info("%s %s %d %.1f ms user=%s", scope["method"], _target(scope), status[0], elapsed, caller.name)


__all__ = ["AccessLog", "note_caller"]
