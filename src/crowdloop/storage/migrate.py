"""Alembic migrations, run from the installed package (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from crowdloop.errors import ConflictError

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


_MIGRATION_LOCK = text("SELECT pg_advisory_xact_lock(:space)")
_LOCK_SPACE = 0x6D69_6772  # "migr"


def head() -> str:
    """The newest schema revision this crowdloop knows (``0013``)."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None, "the migrations have one head"
    return revision


def revision(connection: Connection) -> str | None:
    """The database's schema revision; None for a database crowdloop never migrated (empty)."""
    return MigrationContext.configure(connection).get_current_revision()


def _known(current: str | None) -> None:
    """Refuse a database a newer crowdloop migrated: alembic's "Can't locate revision" was a traceback,
    and this crowdloop's SQL does not know that schema."""
    if current is None:
        return
    script = ScriptDirectory.from_config(alembic_config())
    if current in {script_revision.revision for script_revision in script.walk_revisions()}:
        return
    newest = head()
    newer = current.isdigit() and newest.isdigit() and int(current) > int(newest)
    raise ConflictError(
        f"the database is at revision {current}, "
        + (
            f"newer than this crowdloop (head {newest})"
            if newer
            else f"which this crowdloop (head {newest}) does not know"
        )
        + ": upgrade crowdloop."
    )


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the newest schema (idempotent; safe from several processes); returns
    the revisions it was at and is at now (None: it was empty).

    On PostgreSQL the upgrade holds a transaction-level advisory lock, so two servers starting at
    once on a new database take turns (the second finds the schema current); without it one of
    them died creating a table the other had just created. SQLite serialises the writers itself.
    A database at a revision this crowdloop does not know (a newer one migrated it) is refused
    with a :class:`ConflictError` that says so.
    """
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(_MIGRATION_LOCK, {"space": _LOCK_SPACE})
        before = revision(connection)
        _known(before)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return before, head()


MIGRATE_HINT = "`crowdloop migrate --database-url URL` upgrades it"


def require_current(engine: Engine) -> None:
    """What a server with ``CROWDLOOP_AUTO_MIGRATE=false`` does instead of :func:`upgrade`: refuse a
    database whose schema is not this crowdloop's (:class:`ConflictError`), changing nothing."""
    with engine.connect() as connection:
        current = revision(connection)
    _known(current)
    newest = head()
    if current != newest:
        at = "empty (no crowdloop schema)" if current is None else f"at revision {current}"
        raise ConflictError(
            f"the database is {at} and this crowdloop needs revision {newest}; CROWDLOOP_AUTO_MIGRATE=false "
            f"leaves the upgrade to you: {MIGRATE_HINT} (or unset CROWDLOOP_AUTO_MIGRATE)."
        )


def prepare_schema(engine: Engine, auto_migrate: bool) -> None:
    """At a server's start: :func:`upgrade` (``CROWDLOOP_AUTO_MIGRATE``, the default), else
    :func:`require_current`."""
    if auto_migrate:
        upgrade(engine)
    else:
        require_current(engine)
