"""What a server checks and prepares before it serves: everything ``create_app`` can refuse at start.

``crowdloop serve --workers N`` runs :func:`prepare_server` once, in its own process, before it
starts the processes that serve. Run only in each of them, a refusal (``CROWDLOOP_ADMIN_TOKEN``
held by a user who is a worker) killed every process as it started, and uvicorn's supervisor
replaced them for ever; ``serve`` said "crowdloop serving" and served nothing. ``create_app``
runs it too, for a server built any other way; after ``serve`` it finds the work done.

Kept light (no FastAPI, no numpy unless a method must be checked): the supervising process of
``serve --workers N`` imports it and lives as long as the server.
"""

from __future__ import annotations

from sqlalchemy import Engine

from crowdloop.config import Settings, configure_logging
from crowdloop.crowd.auth import ensure_admin_token
from crowdloop.errors import InvalidParameterError
from crowdloop.storage.db import make_engine, session_factory, unit_of_work
from crowdloop.storage.migrate import prepare_schema


def check_default_method(method: str) -> None:
    """``CROWDLOOP_DEFAULT_METHOD`` must suit a project: a numeric method (``mean``) is a valid setting
    for ``crowdloop aggregate`` but would make every project that names none fail to be created."""
    if method == "default":
        return
    from crowdloop.quality import CATEGORICAL_METHODS, get_aggregator

    if type(get_aggregator(method)) not in CATEGORICAL_METHODS.values():
        raise InvalidParameterError(
            f"CROWDLOOP_DEFAULT_METHOD: {method!r} aggregates numeric answers; a server's projects need a "
            f"categorical method ({', '.join(CATEGORICAL_METHODS)})."
        )


def prepare_server(settings: Settings) -> Engine:
    """The engine a server uses, once the database is ready for it and the settings pass.

    In order: logging at ``CROWDLOOP_LOG_LEVEL``; the default method (:func:`check_default_method`);
    the schema, upgraded or, with ``CROWDLOOP_AUTO_MIGRATE=false``, checked
    (:func:`~crowdloop.storage.migrate.prepare_schema`); the first admin's token
    (``CROWDLOOP_ADMIN_TOKEN``). Any of them raises a :class:`~crowdloop.errors.CrowdloopError`
    (or SQLAlchemy's error for a database it cannot open) and leaves no engine open.
    """
    configure_logging(settings.log_level)
    check_default_method(settings.default_method)
    engine = make_engine(settings.database_url, pool_size=settings.threads)
    try:
        prepare_schema(engine, settings.auto_migrate)
        if settings.admin_token is not None:
            with unit_of_work(session_factory(engine)) as session:
                ensure_admin_token(session, settings.admin_token.get_secret_value())
    except BaseException:
        engine.dispose()
        raise
    return engine


__all__ = ["check_default_method", "prepare_server"]
