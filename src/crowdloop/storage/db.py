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

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote_plus

from sqlalchemy import BindParameter, CursorResult, Engine, Executable, bindparam, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from crowdloop.errors import InvalidParameterError

SUPPORTED_DATABASES = (
    "SQLite (sqlite:///crowdloop.db, a file; four slashes for an absolute path) and PostgreSQL "
    "(postgresql://user@host/db, through psycopg)"
)
"""What :func:`database_url` accepts, as its errors say it."""

_DRIVERS = {"sqlite": ("", "pysqlite"), "postgresql": ("", "psycopg"), "postgres": ("", "psycopg")}
"""The backends crowdloop's SQL is written for (its upserts are SQLite's and PostgreSQL's), each with
the drivers it installs: another one (mysql://, postgresql+asyncpg://) was a ModuleNotFoundError
traceback, or a server that could not run its own SQL."""

_SECRET_PARAMETER = re.compile(r"pass|secret|token", re.IGNORECASE)
"""Query parameters of a database URL that hold a secret (libpq's ``password``, ``sslpassword``)."""


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


def safe_url(url: str) -> str:
    """``url`` for messages and logs: its password hidden, in the user part and in the query
    (``?password=``, ``?sslpassword=``: psycopg takes both there, and they were printed in clear);
    in one SQLAlchemy cannot parse, anything between ``:`` and ``@`` too."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        masked = re.sub(r"([?&][^=&]*(?:pass|secret|token)[^=&]*=)[^&]*", r"\1***", url, flags=re.IGNORECASE)
        return re.sub(r":[^:/@]*@", ":***@", masked)
    rendered = parsed.set(query={}).render_as_string(hide_password=True)
    pairs = [(key, value) for key, values in parsed.query.items()
             for value in ((values,) if isinstance(values, str) else values)]  # fmt: skip
    if not pairs:
        return rendered
    shown = ("***" if _SECRET_PARAMETER.search(key) else quote_plus(value) for key, value in pairs)
    return rendered + "?" + "&".join(f"{quote_plus(key)}={value}" for (key, _), value in zip(pairs, shown, strict=True))


def database_url(url: str) -> URL:
    """``url`` parsed, if it names a database crowdloop works with: else an
    :class:`InvalidParameterError` that says which ones it does (:data:`SUPPORTED_DATABASES`)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidParameterError(
            f"{safe_url(url)} is not a database URL crowdloop can use; it works with {SUPPORTED_DATABASES}."
        ) from None
    except ValueError:  # SQLAlchemy's int() of the port
        raise InvalidParameterError(
            f"{safe_url(url)} is not a database URL crowdloop can use: its port is not a number."
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in _DRIVERS:
        raise InvalidParameterError(
            f"{safe_url(url)} is not a database URL crowdloop can use ({backend} is not one of its databases); "
            f"it works with {SUPPORTED_DATABASES}."
        )
    if driver not in _DRIVERS[backend]:
        raise InvalidParameterError(
            f"{safe_url(url)} is not a database URL crowdloop can use: it talks to {backend} through "
            f"{_DRIVERS[backend][1]} only ({backend}:// or {backend}+{_DRIVERS[backend][1]}://), not {driver}."
        )
    return parsed


_LOST_SQLSTATES = ("08", "57P01", "57P02", "57P03")
"""PostgreSQL's connection exceptions (class 08), and the server shutting down or starting up."""


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached (refused, closed, shut down, a SQLite
    file that cannot be opened or read), rather than that a statement failed: the state of the
    service, which comes back by itself, not a bug. A connection that SQLAlchemy saw die
    (``connection_invalidated``) is one; so is an ``OperationalError`` or ``InterfaceError`` with no
    SQLSTATE from psycopg, which gives one to every error the server sent."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError | InterfaceError):
        return False
    sqlite_name = getattr(error.orig, "sqlite_errorname", None)
    if sqlite_name is not None:
        return str(sqlite_name).startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR"))
    code = getattr(error.orig, "sqlstate", None)
    if code is None:  # raised by the driver itself: a lost connection, or a bug of ours (too many parameters)
        return any(word in str(error.orig).lower() for word in ("connect", "server closed", "terminat"))
    return str(code).startswith(_LOST_SQLSTATES)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, pool_size: int = 32) -> Engine:
    """An engine for ``url`` with the pragmas and pool each backend needs.

    ``pool_size`` matches the app's worker threads: a thread never waits for a connection.
    """
    parsed = database_url(url)
    if parsed.drivername.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=pool_size, max_overflow=8
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return create_engine(parsed.set(drivername="postgresql+psycopg"), pool_size=pool_size, max_overflow=8,
                         pool_pre_ping=True)  # fmt: skip


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
