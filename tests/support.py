"""Helpers shared by the test modules (importable as ``support``: tests/ is on pythonpath)."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import pytest


def require(condition: bool, reason: str) -> None:
    """Skip (on a user's machine) or fail (in CI) when a needed part is missing."""
    if condition:
        return
    if os.environ.get("CROWDLOOP_REQUIRE_ALL") == "1":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def postgres_database() -> Iterator[str]:
    """A throwaway PostgreSQL database with a unique name, dropped afterwards (even if the test
    failed); skipped, or failed in CI, when PostgreSQL does not answer."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    from crowdloop.storage.db import make_engine

    admin = make_engine(POSTGRES_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"crowdloop_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.engine.dispose()
        require(False, f"PostgreSQL does not answer at {POSTGRES_ADMIN_URL} ({exc.orig})")
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.engine.dispose()


def item_id_of(owner: Any, project_id: int, task: Mapping[str, Any]) -> int:
    """The id of the item behind a worker's ``task``, as its requester finds it: by content.

    A task does not name its item (workers never see item ids: gold items, imported as a block,
    would stand out by theirs); ``owner`` (an SDK client of the project's requester or an admin)
    lists the items, and a project holds each content once (``content_hash``)."""
    from crowdloop.crowd.dedup import content_hash

    wanted = content_hash(task["data"])
    found = [int(item["id"]) for item in owner.iter_items(project_id) if content_hash(item["data"]) == wanted]
    assert len(found) == 1, f"{len(found)} items of project {project_id} hold {task['data']!r}"
    return found[0]


def upgrade_to(engine: Any, revision: str) -> None:
    """Migrate ``engine``'s database to ``revision`` (an older one, to fill it as old code did)."""
    from alembic import command

    from crowdloop.storage import migrate

    config = migrate.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def answers_with_a_nan(column: str) -> Any:
    """Bundled ``wsd`` answers with ``column`` as floats (codes) and one NaN in it: not a null,
    but how Spark, polars or numpy write a missing float."""
    import numpy as np
    import pandas as pd

    from crowdloop.datasets import load_dataset

    answers = load_dataset("wsd").answers
    codes = pd.factorize(answers[column])[0].astype(float)
    codes[7] = np.nan
    return answers.assign(**{column: codes})


def write_keeping_nan(frame: Any, path: Any) -> None:
    """``frame`` to Parquet with NaN kept as NaN (pandas' ``to_parquet`` writes it as null)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: pa.array(frame[name].to_numpy(), from_pandas=False) for name in frame.columns}
    pq.write_table(pa.table(columns), path)


class TcpRelay:
    r"""Relays TCP connections from a local port to ``upstream`` (PostgreSQL's, say) until the test
    :meth:`cut`\ s it: every relayed connection is closed and new ones are refused, as when the
    database goes down; :meth:`restore` listens on the same port again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._serve(self._listener)

    def cut(self) -> None:
        with self._lock:
            ends, self._open = list(self._open), set()
        for end in [self._listener, *ends]:
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked on it
            end.close()

    def restore(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._serve(self._listener)

    def close(self) -> None:
        self.cut()

    def _serve(self, listener: socket.socket) -> None:
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, server))
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
