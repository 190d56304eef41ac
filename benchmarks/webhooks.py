"""One project's dead webhook receiver against everyone else's deliveries.

    python benchmarks/webhooks.py [--dead 10 100]

The dispatcher sends one request at a time. A receiver that accepts the connection and never
answers costs each try a whole ``REQUEST_TIMEOUT`` (10 s). Here a project's webhook points at such
a receiver, with N deliveries due before one delivery of another project to a receiver that
answers at once. Measured: the seconds until that other delivery arrives, and how many times the
dead receiver was tried meanwhile, for each N, and the same delivery with no dead receiver at
all. Before a failing receiver held back its whole webhook, every due delivery of the dead one
was tried first (N timeouts: 200 s for 20 deliveries at the default timeout). Real sockets, a
SQLite database, the real :func:`~crowdloop.crowd.webhooks.deliver_due_batch` loop. Writes
``benchmarks/results/webhooks.md``.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pandas as pd

from _common import RESULTS, machine, markdown
from crowdloop.config import parse_networks
from crowdloop.crowd import webhooks
from crowdloop.storage import migrate
from crowdloop.storage.db import make_engine, session_factory, unit_of_work
from crowdloop.storage.models import Project, User, WebhookDelivery

LOCAL = parse_networks("127.0.0.0/8")


class _Answering(BaseHTTPRequestHandler):
    arrived: ClassVar[list[float]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.arrived.append(time.monotonic())
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def one_case(dead_deliveries: int, folder: Path) -> dict[str, object]:
    """Seconds until the other project's delivery arrives, and tries of the dead receiver meanwhile."""
    _Answering.arrived = []
    silent = socket.socket()  # connections queue in its backlog and are never answered
    silent.bind(("127.0.0.1", 0))
    silent.listen(1000)
    answering = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    threading.Thread(target=answering.serve_forever, daemon=True).start()
    engine = make_engine(f"sqlite:///{folder / f'dead-{dead_deliveries}.db'}")
    migrate.upgrade(engine)
    factory = session_factory(engine)
    try:
        with unit_of_work(factory) as session:
            owners = [User(name=f"owner {n}", role="requester") for n in range(2)]
            session.add_all(owners)
            session.flush()
            projects = [Project(owner_id=owner.id, name=f"project {n}") for n, owner in enumerate(owners)]
            session.add_all(projects)
            session.flush()
            dead_url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
            webhooks.register_webhook(session, projects[0].id, dead_url, None, allowed=LOCAL)
            live_url = f"http://127.0.0.1:{answering.server_address[1]}/hook"
            webhooks.register_webhook(session, projects[1].id, live_url, None, allowed=LOCAL)
            dead_project, other_project = projects[0].id, projects[1].id
        for _ in range(dead_deliveries):
            with unit_of_work(factory) as session:
                webhooks.enqueue(session, dead_project, "item.labeled", {"item_id": 1, "label": "a"})
        with unit_of_work(factory) as session:
            webhooks.enqueue(session, other_project, "item.labeled", {"item_id": 2, "label": "b"})
        start = time.monotonic()
        with httpx.Client(timeout=webhooks.REQUEST_TIMEOUT) as client:
            while not _Answering.arrived and time.monotonic() - start < 3600:
                webhooks.deliver_due_batch(factory, client)
                time.sleep(0.05)
        with factory() as session:
            tries = sum(row.attempts for row in session.query(WebhookDelivery)) - 1  # less the other project's
        return {"dead deliveries due first": dead_deliveries,
                "other project's delivery after (s)": round(_Answering.arrived[0] - start, 1),
                "dead receiver tried": tries}  # fmt: skip
    finally:
        answering.shutdown()
        answering.server_close()
        silent.close()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dead", type=int, nargs="+", default=[10, 100], help="dead deliveries due first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = [one_case(n, Path(folder)) for n in [0, *args.dead]]
    table = markdown(pd.DataFrame(rows))
    print(table)
    text = (
        f"# A dead webhook receiver against other projects' deliveries\n\nMachine: {machine()}\n\n"
        f"`python benchmarks/webhooks.py --dead {' '.join(map(str, args.dead))}`: a receiver that never answers "
        f"(each try costs REQUEST_TIMEOUT = {webhooks.REQUEST_TIMEOUT:g} s), with N deliveries due before one "
        "delivery of another project to a receiver that answers at once.\n\n"
        f"{table}\n"
    )
    (RESULTS / "webhooks.md").write_text(text)


if __name__ == "__main__":
    main()
