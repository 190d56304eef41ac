"""Alembic migrations, run from the installed package (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


_MIGRATION_LOCK = text("SELECT pg_advisory_xact_lock(:space)")
_LOCK_SPACE = 0x6D69_6772  # "migr"


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema (idempotent; safe from several processes).

    On PostgreSQL the upgrade holds a transaction-level advisory lock, so two servers starting at
    once on a new database take turns (the second finds the schema current); without it one of
    them died creating a table the other had just created. SQLite serialises the writers itself.
    """
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(_MIGRATION_LOCK, {"space": _LOCK_SPACE})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
