"""``crowdloop edge run``: the edge runtime as a process (predictions on a local HTTP port)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from crowdloop.cli.base import cli, console
from crowdloop.cli.checks import writable_folder
from crowdloop.deploy.outbox import DEFAULT_MAX_ENTRIES
from crowdloop.ports import ensure_port_free


@cli.group("edge")
def edge_group() -> None:
    """Serve a project's production model on this device (ONNX, offline-tolerant)."""


@edge_group.command("run")
@click.option("--server", required=True, help="The crowdloop server, e.g. http://10.0.0.5:8000.")
@click.option(
    "--token",
    envvar="CROWDLOOP_EDGE_TOKEN",
    required=True,
    show_envvar=True,
    help="A token of a device-role user (better from the environment: arguments are visible in ps).",
)
@click.option("--project", required=True, type=int, help="The project whose production model to serve.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535),
              help="Local HTTP port (POST /predict).")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Local address to bind.")
@click.option("--state-dir", default="crowdloop-edge", show_default=True, callback=writable_folder,
              type=click.Path(file_okay=False, path_type=Path),
              help="Models on disk and the outbox (SQLite) live here.")  # fmt: skip
@click.option("--threshold", default=0.6, show_default=True, type=click.FloatRange(0, 1),
              help="Send back inputs below this confidence.")  # fmt: skip
@click.option("--audit-rate", default=0.01, show_default=True, type=click.FloatRange(0, 1),
              help="Share of the others sent back too.")  # fmt: skip
@click.option("--poll-interval", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds between model checks.")  # fmt: skip
@click.option("--outbox-limit", default=DEFAULT_MAX_ENTRIES, show_default=True, type=click.IntRange(min=1),
              help="Entries of each kind kept while the server is away; past it the oldest go.")  # fmt: skip
def edge_run(
    server: str, token: str, project: int, port: int, host: str, state_dir: Path,
    threshold: float, audit_rate: float, poll_interval: float, outbox_limit: int,
) -> None:  # fmt: skip
    """Pull the production model, serve predictions, send feedback and telemetry back."""
    from crowdloop.config import Settings, configure_logging
    from crowdloop.deploy.edge import EdgeRuntime
    from crowdloop.deploy.edge_http import EdgeServer

    configure_logging(Settings().log_level)
    ensure_port_free(host, port)  # before the runtime starts, not as a traceback after it
    runtime = EdgeRuntime(
        server,
        token,
        project,
        state_dir,
        poll_interval=poll_interval,
        threshold=threshold,
        audit_rate=audit_rate,
        outbox_limit=outbox_limit,
    ).start()
    http = EdgeServer(runtime, host, port).start()
    console.print(f"crowdloop edge: project {project} from {server}, predictions on {http.url}/predict")
    _wait_for_signal()
    http.stop()
    runtime.close()


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    stop.wait()
