"""The FastAPI application: routes under /api/v1, errors rendered in one place."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from crowdloop import __version__
from crowdloop.api.access_log import AccessLog
from crowdloop.api.routes import ROUTERS
from crowdloop.api.routes import metrics as metrics_routes
from crowdloop.config import Settings
from crowdloop.crowd.aggregation import AggregationProcess
from crowdloop.crowd.startup import prepare_server
from crowdloop.crowd.webhooks import WebhookDispatcher
from crowdloop.errors import BusyError, CrowdloopError, DatabaseUnavailableError, InvalidInputError
from crowdloop.monitoring.crowd_metrics import CROWD_SOURCES
from crowdloop.monitoring.metrics import HttpMetrics, MetricsMiddleware, ServerMetrics
from crowdloop.monitoring.model_metrics import MODEL_SOURCES
from crowdloop.storage.db import database_unavailable, session_factory
from crowdloop.web import mount_web


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings``; the app keeps no state between requests but the engine."""
    settings = settings or Settings()
    engine = prepare_server(settings)  # what it refuses, it refuses here, before anything is served
    factory = session_factory(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # as many threads as connections: a request never waits for a connection in a thread
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        dispatcher = (
            WebhookDispatcher(factory, allowed=settings.webhook_networks) if settings.webhook_dispatcher else None
        )
        if dispatcher is not None:
            dispatcher.start()
        yield
        if dispatcher is not None:
            dispatcher.stop()
        app.state.aggregations.close()
        engine.dispose()
        sys.setswitchinterval(switch_interval)

    docs = settings.api_docs  # CDN scripts on the web UI's origin: only when the operator asks
    app = FastAPI(title="crowdloop", version=__version__, openapi_url="/openapi.json", lifespan=lifespan,
                  responses=ERROR_RESPONSES, docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None)  # fmt: skip
    app.openapi = lambda: _openapi_with_bearer(app)  # type: ignore[method-assign]
    app.state.settings, app.state.factory = settings, factory
    app.state.read_factory = session_factory(engine, read_only=True)
    app.state.training_slots = threading.BoundedSemaphore(settings.max_trainings)
    app.state.aggregations = AggregationProcess(settings.database_url, settings.log_level, settings.max_memory_mb)
    _error_handlers(app, settings)
    _monitoring(app, settings)
    for router in ROUTERS:
        app.include_router(router, prefix="/api/v1")
    mount_web(app)
    app.add_middleware(AccessLog)  # added last, so outermost: the status the client got, the whole time
    return app


def _monitoring(app: FastAPI, settings: Settings) -> None:
    """Request metrics on every route, and GET /metrics (see crowdloop.monitoring.metrics)."""
    metrics = ServerMetrics(HttpMetrics(settings.metrics_dir), settings.metrics_max_projects, list(CROWD_SOURCES))
    for source in MODEL_SOURCES:
        metrics.add_source(source)
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics.http)
    app.include_router(metrics_routes.router)


GIL_SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL while another waits for it (Python's default: 0.005). With
every worker thread busy, the event loop, which reads requests and writes responses, waited
up to 5 ms for each turn: with 100 concurrent workers on PostgreSQL one process did 94 answer
cycles/s at the default and 110 at 0.5 ms (three runs each); with 10 workers no difference."""

TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available


def _transient(error: DBAPIError) -> bool:
    """A failure that a retry of the whole request can fix."""
    code = getattr(error.orig, "sqlstate", None)
    return code in TRANSIENT_SQLSTATES or "database is locked" in str(error.orig)


def _error_handlers(app: FastAPI, settings: Settings) -> None:
    @app.exception_handler(CrowdloopError)
    async def crowdloop_error(_request: Request, error: CrowdloopError) -> JSONResponse:
        return JSONResponse(error.to_dict(), status_code=error.status_code)

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, error: DBAPIError) -> JSONResponse:
        if database_unavailable(error):
            return _unavailable(request, error)
        if getattr(error.orig, "sqlstate", None) == "22003":  # numeric value out of range
            return JSONResponse(OUT_OF_RANGE.to_dict(), status_code=OUT_OF_RANGE.status_code)
        if not _transient(error):
            raise error
        busy = BusyError("the database was busy (deadlock or lock timeout); nothing was saved, retry the call.")
        return JSONResponse(busy.to_dict(), status_code=busy.status_code, headers={"Retry-After": "1"})

    @app.exception_handler(OverflowError)
    async def overflow_error(_request: Request, error: OverflowError) -> JSONResponse:
        if "SQLite" not in str(error):  # SQLite's word for a number out of range; any other is a bug
            raise error
        return JSONResponse(OUT_OF_RANGE.to_dict(), status_code=OUT_OF_RANGE.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = str(first.get("msg")).removeprefix("Value error, ")  # pydantic's word for our own checks
        detail = f"{where}: {message}" if where else f"request body: {message}"
        return JSONResponse({"error": "InvalidInputError", "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        name = HTTP_ERROR_NAMES.get(error.status_code, "HTTPError")
        detail = f"no route {request.method} {request.url.path}" if error.status_code in (404, 405) else error.detail
        return JSONResponse({"error": name, "detail": detail}, status_code=error.status_code, headers=error.headers)

    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes, limit_text=settings.max_upload_text)
    app.add_middleware(InternalErrors)  # added last, so outermost: it sees what BodyLimit lets through


class ErrorOut(BaseModel):
    """Every error the API answers: the kind (a crowdloop error class name) and a sentence."""

    error: str
    detail: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": what}
    for status, what in ((401, "no token, or a wrong one"), (403, "the caller's role may not do this"),
                         (404, "no such object, or one the caller may not see"),
                         (409, "the object's state forbids it"), (413, "the request is over the size limit"),
                         (422, "the request is not valid: the detail says what is wrong"))
}  # fmt: skip
"""Documented on every route (the 422 replaces FastAPI's own shape, which this API never sends)."""


def _openapi_with_bearer(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, once, with the bearer token every route but health asks for."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API token (cl_...)"}
        }
        schema["security"] = [{"bearer": []}]
        schema["paths"]["/api/v1/health"]["get"]["security"] = []  # the one public route
        app.openapi_schema = schema
    return app.openapi_schema


UNAVAILABLE = DatabaseUnavailableError("the server cannot reach its database; retry later.")
UNAVAILABLE_RETRY_SECONDS = 5


def _unavailable(request: Request, error: DBAPIError) -> JSONResponse:
    """A database that is down or unreachable: 503 with ``Retry-After``, health included (a load
    balancer takes the instance out until the database is back), and one warning line. Each
    request was a 500 ``InternalError`` with a traceback of some 100 lines, and health one too.
    Nothing is kept: the pool checks each connection before use, so the first request after
    the database is back gets a fresh one."""
    reason = str(error.orig).strip().splitlines()[0] if error.orig is not None else type(error).__name__
    log.warning("database unavailable: %s %s answered 503 (%s)", request.method, request.url.path, reason)
    headers = {"Retry-After": str(UNAVAILABLE_RETRY_SECONDS)}
    return JSONResponse(UNAVAILABLE.to_dict(), status_code=UNAVAILABLE.status_code, headers=headers)


OUT_OF_RANGE = InvalidInputError("a number in the request is out of range (ids and counts are at most 2**63 - 1).")

HTTP_ERROR_NAMES = {404: "NotFoundError", 405: "MethodNotAllowedError", 413: "PayloadTooLargeError"}

log = logging.getLogger(__name__)


MULTIPART_SLACK = 2**20
"""Bytes a multipart upload adds around its file: the upload route itself checks the file's size.
Only multipart requests get them; a JSON body of the limit and up to 1 MiB more was accepted."""


class _TooLargeError(Exception):
    """Raised by :class:`BodyLimit`'s receive once a chunked body passes the limit."""


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` (``CROWDLOOP_MAX_UPLOAD_MB``, described
    as ``limit_text``; a multipart upload may add :data:`MULTIPART_SLACK`) is refused with a 413
    before it is read whole, by its Content-Length or, when it is sent in chunks, as soon as it
    passes the limit. Without it a JSON body of any size was read into memory first."""

    def __init__(self, app: Any, max_bytes: int, limit_text: str) -> None:
        self.app, self.max_bytes, self.limit_text = app, max_bytes, limit_text

    def _limit(self, headers: dict[bytes, bytes]) -> int:
        multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
        return self.max_bytes + (MULTIPART_SLACK if multipart else 0)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        limit, declared = self._limit(headers), headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send)
            return
        seen, too_large, answered = 0, False, False

        async def counting() -> Any:
            nonlocal seen, too_large
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                too_large = True
                raise _TooLargeError
            return message

        async def unless_too_large(message: Any) -> None:
            """FastAPI turns an error while it reads a body into its own 400 ("There was an error
            parsing the body"): once the body went over, that answer is dropped for the 413."""
            nonlocal answered
            if not too_large:
                answered = True
                await send(message)

        with suppress(_TooLargeError):  # a 413 follows
            await self.app(scope, counting, unless_too_large)
        if too_large and not answered:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        detail = f"the request is over the {self.limit_text} limit; nothing was stored."
        body = {"error": "PayloadTooLargeError", "detail": detail}
        await JSONResponse(body, status_code=413, headers={"Connection": "close"})(scope, receive, send)


class InternalErrors:
    """ASGI middleware: an error no handler knows (a bug) becomes a JSON 500 in the API's error
    shape and a logged traceback, and the connection stays open.

    Let out of the app, such an error made uvicorn close the client's kept-alive connection
    after sending its plain-text 500, and the SDK's next call on that connection failed with
    "connection reset". A response already under way (a stream) cannot be replaced: that
    error still goes up.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if started:
                raise
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            body = {"error": "InternalError", "detail": "the server failed on this request; the error is in its log."}
            await JSONResponse(body, status_code=500)(scope, receive, send)
