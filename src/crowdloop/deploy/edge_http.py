"""The edge's local HTTP endpoint (standard library ``http.server``, keep-alive):

==================  ==========================================================
``POST /predict``   body: one item (its fields) → a prediction; or
                    ``{"items": [...]}`` → ``{"predictions": [...]}``;
                    at most :data:`MAX_BODY` bytes (1 MiB), else 413
``GET /metrics``    Prometheus text (:class:`~crowdloop.deploy.telemetry.EdgeMetrics`)
``GET /health``     ``{"status", "version", "outbox"}``; 503 until a model is loaded
==================  ==========================================================

It binds to 127.0.0.1 unless told otherwise: it is the device's own endpoint, for programs
on the device, and carries no authentication of its own. So it refuses what a web page open on
the device can send it: any request with an ``Origin`` (a browser's cross-site ``POST`` of
``text/plain`` needs no preflight, and made edge items of whatever the page sent) or a
cross-site ``Sec-Fetch-Site``, and a ``Host`` that is not an address or this device's name (a
page whose name was re-pointed at 127.0.0.1 could read ``/metrics``).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from crowdloop.deploy.edge import EdgeRuntime
from crowdloop.errors import CrowdloopError, PayloadTooLargeError

MAX_BODY = 1 << 20
"""The largest ``/predict`` body taken (1 MiB); a larger one gets 413."""
DRAIN_LIMIT = 64 << 20
"""A refused body up to this size is read and dropped, so the 413 reaches the client and the
connection stays usable; past it the connection is closed after the answer instead."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # a response is two writes: do not let the second wait
    server: EdgeServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        if (refusal := self._from_a_web_page()) is not None:
            return self._refuse(refusal)
        if self.path != "/predict":
            return self._json(404, {"error": "NotFound", "detail": f"no route POST {self.path}"})
        try:
            self._json(200, self._predict(self._body()))
        except CrowdloopError as error:
            self._json(error.status_code, {"error": type(error).__name__, "detail": str(error)})
        except (ValueError, TypeError, AttributeError) as error:
            self._json(400, {"error": "BadRequest", "detail": f"the body must be a JSON item object: {error}"})

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:  # reading -1 bytes waited for the client to close the connection
            raise ValueError(f"Content-Length {length} is negative")
        if length > MAX_BODY:
            self._drop(length)
            raise PayloadTooLargeError(
                f"the body is {length} bytes, over the limit of {MAX_BODY} bytes (1 MiB): send fewer items at a time."
            )
        return json.loads(self.rfile.read(length))

    def _drop(self, length: int) -> None:
        """Read a refused body and drop it: left unread, it came in as the next request on the
        kept-alive connection (and a close could reset it before the client read the answer).
        Too large a body is not read: the connection closes after the answer."""
        while 0 < length <= DRAIN_LIMIT:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)
        self.close_connection = self.close_connection or length > 0

    def _predict(self, body: Any) -> dict[str, Any]:
        runtime = self.server.runtime
        if not isinstance(body, dict):
            raise TypeError(f"got {type(body).__name__}")
        if "items" in body:
            if not isinstance(body["items"], list):
                raise TypeError(f'"items" must be a list of item objects; got {type(body["items"]).__name__}')
            return {"predictions": runtime.predict_many(body["items"])}
        return runtime.predict(body)

    def do_GET(self) -> None:
        if (refusal := self._from_a_web_page()) is not None:
            return self._refuse(refusal)
        runtime = self.server.runtime
        if self.path == "/metrics":
            runtime.queue_sizes()
            return self._send(200, runtime.metrics.text(), "text/plain; version=0.0.4; charset=utf-8")
        if self.path == "/health":
            version, outbox = runtime.version, runtime.queue_sizes()
            status = "ok" if version is not None else "no model"
            return self._json(
                200 if version is not None else 503, {"status": status, "version": version, "outbox": outbox}
            )
        self._json(404, {"error": "NotFound", "detail": f"no route GET {self.path}"})

    def _from_a_web_page(self) -> str | None:
        """Why the request looks sent by a web page rather than a program on the device (None: it does not)."""
        origin, site = self.headers.get("Origin"), self.headers.get("Sec-Fetch-Site", "none")
        if origin is not None or site not in ("none", "same-origin"):
            return f"a request from a web page (Origin {origin or '-'}, Sec-Fetch-Site {site}) is refused"
        host, bound = _host_name(self.headers.get("Host") or ""), str(self.server.server_address[0])
        if host and _loopback(bound) and not _this_device(host, bound):
            return f"Host {host!r} is neither an address nor this device's name"
        return None

    def _refuse(self, reason: str) -> None:
        self.close_connection = True  # the body, if any, is not read
        self._json(
            403, {"error": "PermissionDenied", "detail": f"{reason}: this endpoint is for programs on the device."}
        )

    def _json(self, status: int, body: Any) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)


def _host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:8765`` → ``::1``)."""
    if header.startswith("["):
        return header[1 : header.find("]")]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _loopback(bound: str) -> bool:
    """Whether the endpoint serves this device only: bound to a wider address, it is reached by the
    names the operator gave it (``http://edge:8765`` in a compose file), which no list here knows."""
    try:
        return ipaddress.ip_address(bound).is_loopback
    except ValueError:
        return bound.lower() == "localhost"


def _this_device(host: str, bound: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host.lower().rstrip(".")
    own = {"localhost", bound.lower(), socket.gethostname().lower(), f"{socket.gethostname().lower()}.local"}
    return name in own or name.endswith(".localhost")


class EdgeServer(ThreadingHTTPServer):
    """The local endpoint of one :class:`EdgeRuntime`; :meth:`start` serves on a thread."""

    daemon_threads = True

    def __init__(self, runtime: EdgeRuntime, host: str = "127.0.0.1", port: int = 8765) -> None:
        super().__init__((host, port), _Handler)
        self.runtime = runtime
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> EdgeServer:
        self._thread = threading.Thread(target=self.serve_forever, name="crowdloop-edge-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
