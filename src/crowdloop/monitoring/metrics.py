"""Prometheus metrics of the server: ``GET /metrics`` in the text exposition format.

Two kinds of metric, kept apart because they live in different places:

* **Request metrics** (``crowdloop_http_requests_total``, ``crowdloop_http_request_duration_seconds``)
  are counted in the process that served the request, by :class:`MetricsMiddleware`. With
  ``crowdloop serve --workers N`` a scrape reaches one process of N, so each process writes its
  counts to memory-mapped files in ``CROWDLOOP_METRICS_DIR`` (prometheus_client's multiprocess
  mode) and any process sums every process's files when scraped. ``serve`` makes a fresh
  directory for each start (in the one configured, a sub-directory of its own), because counts of
  an earlier run, or of another instance, must not be added in; a worker that dies and is
  restarted leaves its files, so the sums never go down. One process without a directory keeps its counts in memory.
* **State metrics** (answers, items by state, labels, leases, aggregation runs) are read from the
  database at scrape time by :data:`MetricSource` functions: every process answers the same, and
  nothing is kept between requests. A feature adds its own with one call,
  ``ServerMetrics.add_source(fn)`` in ``create_app`` (the model registry's per-version gauges will).

Cardinality: request metrics are labelled by method, route *template* (``/api/v1/projects/{project_id}``,
never the concrete path; unmatched paths are ``route="<unmatched>"``) and status code. State metrics
are labelled by ``project`` (its id) for at most ``CROWDLOOP_METRICS_MAX_PROJECTS`` projects (active
and paused ones first, then the newest); the others are summed into ``project="other"``.
"""

from __future__ import annotations

import hmac
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from pydantic import SecretStr
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crowdloop.crowd.auth import require_role
from crowdloop.monitoring.labels import ProjectLabels
from crowdloop.storage.models import User

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNMATCHED = "<unmatched>"
_MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class Scrape:
    """What a :data:`MetricSource` gets: the scrape's session (sources only read) and the bounded project labels."""

    session: Session
    projects: ProjectLabels


MetricSource = Callable[[Scrape], Iterable[Metric]]
"""Computes metric families (``prometheus_client.core.*MetricFamily``) from the database at scrape time."""


def _use_multiprocess(directory: Path) -> None:
    """Switch this process's prometheus_client to values in memory-mapped files under ``directory``.

    prometheus_client picks the value class when a labelled child is first used and reads the
    directory from ``PROMETHEUS_MULTIPROC_DIR``; both are process-wide, so this is too.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[_MULTIPROCESS_ENV] = str(directory)
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


@dataclass
class HttpMetrics:
    """Request counts and latencies of this process (and, with a directory, of its siblings)."""

    directory: Path | None = None
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        if self.directory is not None:
            _use_multiprocess(self.directory)
        names = ("method", "route", "status")
        self.requests = Counter(
            "crowdloop_http_requests", "HTTP requests answered, by route template and status.", names,
            registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "crowdloop_http_request_duration_seconds", "Time from request to the last byte of the response.",
            names, buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route, str(status)).observe(seconds)

    def collectors(self) -> Iterable[Collector]:
        """The request metrics to expose: every process's files, or this process's memory (without
        its ``*_created`` series: one process exposed one per counter and histogram child, several
        none, so a dashboard or alert built on them broke on scaling out)."""
        if self.directory is None:
            return [_WithoutCreated(self.registry)]
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=str(self.directory))  # type: ignore[no-untyped-call]
        return [merged]


def route_template(scope: Scope, root_path: str = "") -> str:
    """The matched route's full path template, so ``/projects/7`` and ``/projects/8`` share one series.

    FastAPI leaves a route of an included router with its own path (``/projects/{project_id}``),
    without the router's prefix; the prefix is what the request's path has before the part the
    route matched, which the route rebuilds from the path parameters (public Starlette API). A
    mounted app (the web UI) sets no route but extends ``root_path`` (from ``root_path`` on entry):
    its requests count as ``<mount>/{path}``.
    """
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if route is None or not template:
        mounted = str(scope.get("root_path", ""))
        return mounted[len(root_path) :] + "/{path}" if len(mounted) > len(root_path) else UNMATCHED
    try:
        matched = str(route.url_path_for(route.name, **scope.get("path_params", {})))
    except Exception:  # a route that cannot rebuild its path (a mount): its own template is bounded too
        return str(template)
    path = str(scope.get("path", ""))
    return path[: len(path) - len(matched)] + template if path.endswith(matched) else str(template)


def noting_status(send: Send, status: list[int]) -> Send:
    """``send`` that also puts the response's status in ``status[0]`` (it stays 500 if the app
    never answers), for a middleware that reports on every request."""

    async def send_and_note(message: Message) -> None:
        if message["type"] == "http.response.start":
            status[0] = int(message["status"])
        await send(message)

    return send_and_note


class MetricsMiddleware:
    """Pure ASGI middleware: times each HTTP request until its response is complete (streams included)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, root_path = time.perf_counter(), [500], str(scope.get("root_path", ""))
        try:
            await self.app(scope, receive, noting_status(send, status))
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe(scope["method"], route_template(scope, root_path), status[0], elapsed)


class _Families(Collector):
    """Already computed metric families, in the shape a registry collects."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


class _WithoutCreated(Collector):
    """Another collector's families without their ``*_created`` samples. Only for these: turning
    them off in prometheus_client is process-wide, and took them from an edge's metrics too when
    a server app had been made in the same process before."""

    def __init__(self, inner: Collector) -> None:
        self.inner = inner

    def collect(self) -> Iterable[Metric]:
        for family in self.inner.collect():
            family.samples = [sample for sample in family.samples if not sample.name.endswith("_created")]
            yield family


@dataclass
class ServerMetrics:
    """Everything ``/metrics`` exposes: request metrics plus the registered database sources."""

    http: HttpMetrics
    max_projects: int = 100
    sources: list[MetricSource] = field(default_factory=list)

    def add_source(self, source: MetricSource) -> None:
        """Register one more scrape-time source (e.g. the model registry's per-version gauges)."""
        self.sources.append(source)

    def render_for(self, session: Session, user: User) -> bytes:
        """:meth:`render` for an admin; anyone else is refused (``PermissionDeniedError``)."""
        require_role(user, "admin")
        return self.render(session)

    def render(self, session: Session) -> bytes:
        """The exposition text: request metrics, then each source's families read through ``session``."""
        scrape = Scrape(session, ProjectLabels.load(session, self.max_projects))
        registry = CollectorRegistry(auto_describe=False)
        for collector in self.http.collectors():
            registry.register(collector)
        families = [family for source in self.sources for family in source(scrape)]
        registry.register(_Families(families))
        return generate_latest(registry)


def is_metrics_token(configured: SecretStr | None, token: str | None) -> bool:
    """Whether ``token`` is ``CROWDLOOP_METRICS_TOKEN`` (a scrape-only credential), compared in constant time."""
    if configured is None or not token:
        return False
    return hmac.compare_digest(configured.get_secret_value().encode(), token.encode())


def prepare_metrics_dir(configured: Path | None, workers: int) -> tuple[Path | None, bool]:
    """The directory this ``serve``'s processes share for request metrics, new; and whether to delete it after.

    In a configured directory each ``serve`` gets a sub-directory of its own,
    ``serve-<host>-<pid>``, deleted when it stops. Two instances given the same directory used
    to share one set of files, and the second one's start-up cleaning deleted the first one's
    counts while it ran. Sub-directories of instances on this host that are no longer running,
    and loose files of earlier versions, are removed. So is one with this process's own name: it
    was left by an earlier process that had the same pid (a container restarted after a crash
    runs ``serve`` as pid 1 again, on the same host name), and it stopped ``serve`` from ever
    starting again ("File exists"). Several workers without a configured
    directory get a fresh temporary one; one worker needs none (it counts in memory).
    """
    if configured is not None:
        configured.mkdir(parents=True, exist_ok=True)
        _remove_stale_metrics(configured)
        own = configured / f"{_INSTANCE_PREFIX}{socket.gethostname()}-{os.getpid()}"
        own.mkdir()
        return own, True
    if workers <= 1:
        return None, False
    return Path(tempfile.mkdtemp(prefix="crowdloop-metrics-")), True


_INSTANCE_PREFIX = "serve-"


def _remove_stale_metrics(configured: Path) -> None:
    for kind in ("counter", "gauge", "histogram", "summary"):  # prometheus_client's files only
        for stale in configured.glob(f"{kind}_*.db"):
            stale.unlink()
    host = socket.gethostname()
    for directory in configured.glob(f"{_INSTANCE_PREFIX}{host}-*"):
        pid = directory.name.rpartition("-")[2]
        if directory.is_dir() and pid.isdigit() and (int(pid) == os.getpid() or not _running(int(pid))):
            shutil.rmtree(directory, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_metrics_dir(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


__all__ = [
    "LATENCY_BUCKETS",
    "HttpMetrics",
    "MetricSource",
    "MetricsMiddleware",
    "Scrape",
    "ServerMetrics",
    "is_metrics_token",
    "prepare_metrics_dir",
    "remove_metrics_dir",
    "route_template",
]
