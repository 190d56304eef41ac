"""The admin token from CROWDLOOP_ADMIN_TOKEN, on a real SQLite file: rotated by changing the
variable, and never given to a user who is not an admin."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from crowdloop.crowd.auth import authenticate, create_user, ensure_admin_token, hash_token
from crowdloop.errors import AuthenticationError, ConflictError
from crowdloop.storage.db import make_engine, session_factory, unit_of_work
from crowdloop.storage.migrate import upgrade
from crowdloop.storage.models import ApiToken
from support import upgrade_to


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


def _prefixes(factory: sessionmaker[Session]) -> list[str]:
    with unit_of_work(factory) as session:
        return sorted(session.scalars(select(ApiToken.prefix)))


def test_no_part_of_the_admin_token_is_stored_in_clear(factory):
    """The prefix was "env:" and the token's first 6 characters: a start on a token a person chose."""
    _start(factory, "cl_first_admin_token")
    assert _prefixes(factory) == ["env:"]
    _start(factory, "cl_second_admin_token")  # the marker alone still finds the old one to rotate
    assert _prefixes(factory) == ["env:", "env:"]
    with pytest.raises(AuthenticationError):
        _who(factory, "cl_first_admin_token")


def test_a_short_admin_token_is_warned_about_at_start(factory, caplog):
    with caplog.at_level(logging.WARNING, logger="crowdloop.crowd.auth"):
        _start(factory, "change-me")
        _start(factory, "cl_a_sixteen_chr")
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 1 and "CROWDLOOP_ADMIN_TOKEN is 9 characters long" in warned[0], warned
    assert _who(factory, "cl_a_sixteen_chr") == "admin"  # a warning, not a refusal


def _admin_with_tokens(engine: Engine, revision: str, tokens: list[dict[str, str]]) -> None:
    """A database at ``revision`` holding an admin with ``tokens`` (hash, prefix) as older code stored them."""
    upgrade_to(engine, revision)
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO users (name, role, created_at) VALUES ('admin', 'admin', CURRENT_TIMESTAMP)")
        )
        connection.execute(
            text("INSERT INTO api_tokens (user_id, token_hash, prefix, created_at) SELECT id, :hash, :prefix, "
                 "CURRENT_TIMESTAMP FROM users"),
            tokens,
        )  # fmt: skip


def test_migration_0010_drops_the_admin_tokens_characters(engine):
    tokens = [{"hash": "a" * 64, "prefix": "env:change"}, {"hash": "b" * 64, "prefix": "cl_issued0"}]
    _admin_with_tokens(engine, "0009", tokens)
    upgrade(engine)
    assert _prefixes(session_factory(engine)) == ["cl_issued0", "env:"]  # an issued token's is random


def test_an_admin_token_stored_before_the_marker_rotates_and_leaves_nothing_in_clear(engine):
    """Before the "env:" marker the variable's token was stored with its first 10 characters as its
    prefix: "change-me" stayed whole in the database after 0010, and changing the variable as one
    upgraded left it working beside the new token."""
    tokens = [{"hash": hash_token("change-me"), "prefix": "change-me"}, {"hash": "b" * 64, "prefix": "cl_issued0"}]
    _admin_with_tokens(engine, "0001", tokens)
    upgrade(engine)
    factory = session_factory(engine)
    assert _prefixes(factory) == ["cl_issued0", "env:"]
    _start(factory, "cl_the_new_admin_token")
    with pytest.raises(AuthenticationError):
        _who(factory, "change-me")
    assert _who(factory, "cl_the_new_admin_token") == "admin"
