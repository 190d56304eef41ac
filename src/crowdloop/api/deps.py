"""Request-scoped dependencies: one unit of work per request, and the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker

from crowdloop.config import Settings
from crowdloop.crowd.auth import authenticate
from crowdloop.storage.db import unit_of_work
from crowdloop.storage.models import User


def get_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.factory
    return factory


def get_read_factory(request: Request) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.app.state.read_factory
    return factory


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(factory: Annotated[sessionmaker[Session], Depends(get_factory)]) -> Iterator[Session]:
    """The request is the unit of work: commit when the route returns, roll back on error.

    Used with ``scope="function"``: the commit happens before the response is sent, so a
    client never sees success for a change that did not commit, and background tasks
    (which run after the response) never wait on the request's SQLite write lock.
    """
    with unit_of_work(factory) as session:
        yield session


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def get_user(
    session: Annotated[Session, Depends(get_session, scope="function")],
    authorization: Annotated[str | None, Header()] = None,
) -> User:
    return authenticate(session, _bearer(authorization))


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
UserDep = Annotated[User, Depends(get_user)]
FactoryDep = Annotated[sessionmaker[Session], Depends(get_factory)]
ReadFactoryDep = Annotated[sessionmaker[Session], Depends(get_read_factory)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
