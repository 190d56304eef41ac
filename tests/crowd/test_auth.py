"""The admin token from CROWDLOOP_ADMIN_TOKEN, on a real SQLite file: rotated by changing the
variable, and never given to a user who is not an admin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from crowdloop.crowd.auth import authenticate, create_user, ensure_admin_token
from crowdloop.errors import AuthenticationError, ConflictError
from crowdloop.storage.db import make_engine, session_factory, unit_of_work
from crowdloop.storage.migrate import upgrade


@pytest.fixture
def factory(tmp_path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'crowdloop.db'}", pool_size=2)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def _start(factory: sessionmaker[Session], token: str) -> None:
    with unit_of_work(factory) as session:
        ensure_admin_token(session, token)


def _who(factory: sessionmaker[Session], token: str) -> str:
    with unit_of_work(factory) as session:
        return authenticate(session, token).role


def test_changing_the_variable_rotates_the_admin_token(factory):
    _start(factory, "cl_first_admin_token")
    _start(factory, "cl_first_admin_token")  # a restart: the same token, still good
    assert _who(factory, "cl_first_admin_token") == "admin"
    _start(factory, "cl_second_admin_token")
    assert _who(factory, "cl_second_admin_token") == "admin"
    with pytest.raises(AuthenticationError):
        _who(factory, "cl_first_admin_token")  # both used to work


def test_the_token_never_goes_to_a_user_named_admin_who_is_not_one(factory):
    with unit_of_work(factory) as session:
        create_user(session, "admin", "worker")
    with pytest.raises(ConflictError, match="'admin', who is a worker, not an admin"):
        _start(factory, "cl_some_admin_token")
    with pytest.raises(AuthenticationError):
        _who(factory, "cl_some_admin_token")  # it used to be that worker's token


def test_a_revoked_token_stays_revoked_and_an_old_one_rotates(factory):
    """A restart un-revoked the variable's token; one stored before the env marker never rotated."""
    from sqlalchemy import update

    from crowdloop.crowd.auth import hash_token
    from crowdloop.storage.models import ApiToken, utcnow

    _start(factory, "cl_old_style_token")
    with unit_of_work(factory) as session:  # as the code before the marker stored it
        session.execute(update(ApiToken).where(ApiToken.token_hash == hash_token("cl_old_style_token"))
                        .values(prefix="cl_old_sty"))  # fmt: skip
    _start(factory, "cl_old_style_token")
    _start(factory, "cl_newer_token")
    with pytest.raises(AuthenticationError):
        _who(factory, "cl_old_style_token")
    with unit_of_work(factory) as session:
        session.execute(update(ApiToken).values(revoked_at=utcnow()))
    with pytest.raises(ConflictError, match="was revoked"):
        _start(factory, "cl_newer_token")
