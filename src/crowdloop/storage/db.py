"""Engines and sessions for SQLite (default, zero set-up) and PostgreSQL.

Row locks on PostgreSQL are taken ``FOR NO KEY UPDATE`` (``key_share=True``): updating a
project's or an item's counters must not conflict with the ``KEY SHARE`` locks that inserting
an answer or an assignment takes on them through its foreign keys, or two requests
deadlock.

SQLite runs in WAL mode with a busy timeout so several processes can share one
file; every write transaction starts with ``BEGIN IMMEDIATE`` so that the
conditional updates of the assignment engine are serialised. PostgreSQL uses
row locks (``FOR UPDATE SKIP LOCKED``) instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import BindParameter, CursorResult, Engine, Executable, bindparam, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def param(name: str, type_: Any = None) -> BindParameter[Any]:
    """A parameter of a prebuilt statement; prefixed, as DML reserves the names of the table's columns."""
    return bindparam(f"p_{name}", type_=type_)


def run(session: Session, statement: Executable, params: dict[str, Any]) -> CursorResult[Any]:
    """Execute a prebuilt statement on the session's connection: Core's path, not the ORM's."""
    return session.connection().execute(statement, {f"p_{name}": value for name, value in params.items()})


def run_many(session: Session, statement: Executable, rows: list[dict[str, Any]]) -> None:
    """:func:`run` once per row of parameters, as one executemany."""
    if rows:
        session.connection().execute(statement, [{f"p_{name}": value for name, value in row.items()} for row in rows])


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, pool_size: int = 32) -> Engine:
    """An engine for ``url`` with the pragmas and pool each backend needs.

    ``pool_size`` matches the app's worker threads: a thread never waits for a connection.
    """
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=pool_size, max_overflow=8
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    if parsed.drivername in ("postgresql", "postgres"):
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(url, pool_size=pool_size, max_overflow=8, pool_pre_ping=True)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # Take over transaction control from the driver so that BEGIN IMMEDIATE is ours.
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


READ_ONLY = "crowdloop_read_only"


def dialect_insert(session: Session, model: Any) -> Any:
    """``INSERT`` for the session's backend, with its ``on_conflict_do_*`` (both have them)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions on ``engine``; ``read_only`` ones never take SQLite's write lock (long exports)."""
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    return sessionmaker(bind, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
