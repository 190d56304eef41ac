"""Per-request context: who is calling, and one unit of work that does all the request's SQL.

All of a request's database work runs inside one call of :meth:`Api.run`, on one worker
thread, from ``BEGIN`` to ``COMMIT``: a request never holds a connection or a lock while it
waits for a thread. (With the session as a FastAPI dependency, the dependency, the route
and the commit each waited for a thread separately, and a busy server deadlocked: every
thread waiting on a connection or lock held by a request that was waiting for a thread.)
The commit happens before the response is sent, so a client never sees success for a
change that did not commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker

from crowdloop.api.access_log import note_caller
from crowdloop.config import Settings
from crowdloop.crowd.auth import MISSING_TOKEN, authenticate
from crowdloop.errors import AuthenticationError, BusyError
from crowdloop.storage.db import unit_of_work
from crowdloop.storage.models import User

T = TypeVar("T")


@dataclass(frozen=True)
class Api:
    """What a route needs: the session factories, the settings and the caller's token."""

    factory: sessionmaker[Session]
    read_factory: sessionmaker[Session]
    settings: Settings
    token: str | None
    training_slots: threading.BoundedSemaphore

    @contextmanager
    def training_slot(self) -> Iterator[None]:
        """One of the process's ``CROWDLOOP_MAX_TRAININGS`` places for a training, or a 503 at once: a
        training takes a worker thread and a core for minutes, and past a few they would starve the
        requests of the people labeling."""
        if not self.training_slots.acquire(blocking=False):
            raise BusyError(
                f"this server is training {self.settings.max_trainings} model(s) already "
                "(CROWDLOOP_MAX_TRAININGS); nothing was started, try again when one is done."
            )
        try:
            yield
        finally:
            self.training_slots.release()

    def run(self, work: Callable[[Session, User], T]) -> T:
        """Authenticate and do ``work`` in one transaction, committed before returning."""
        with unit_of_work(self.factory) as session:
            caller = authenticate(session, self.token)
            note_caller(caller.id)  # for the request's line in the access log
            return work(session, caller)

    def run_anonymous(self, work: Callable[[Session], T]) -> T:
        """For the one public route (health)."""
        with unit_of_work(self.read_factory) as session:
            return work(session)


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


async def get_api(request: Request, authorization: Annotated[str | None, Header()] = None) -> Api:
    """Async on purpose: resolving it takes no worker thread and touches no database.

    A call with no token at all is refused here, before its body is validated: a bad body sent
    with no token was answered 422, telling an anonymous caller about the route before who they
    were. The token itself is checked in :meth:`Api.run`, inside the request's one transaction.
    """
    token = _bearer(authorization)
    if token is None:
        raise AuthenticationError(MISSING_TOKEN)
    return _api(request, token)


async def get_public_api(request: Request) -> Api:
    """For the one route without a caller (health)."""
    return _api(request, None)


def _api(request: Request, token: str | None) -> Api:
    state = request.app.state
    return Api(state.factory, state.read_factory, state.settings, token, state.training_slots)


ApiDep = Annotated[Api, Depends(get_api)]
PublicApiDep = Annotated[Api, Depends(get_public_api)]
