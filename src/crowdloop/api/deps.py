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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker

from crowdloop.config import Settings
from crowdloop.crowd.auth import authenticate
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

    def run(self, work: Callable[[Session, User], T]) -> T:
        """Authenticate and do ``work`` in one transaction, committed before returning."""
        with unit_of_work(self.factory) as session:
            return work(session, authenticate(session, self.token))

    def run_anonymous(self, work: Callable[[Session], T]) -> T:
        """For the one public route (health)."""
        with unit_of_work(self.read_factory) as session:
            return work(session)


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


async def get_api(request: Request, authorization: Annotated[str | None, Header()] = None) -> Api:
    """Async on purpose: resolving it takes no worker thread and touches no database."""
    state = request.app.state
    return Api(state.factory, state.read_factory, state.settings, _bearer(authorization))


ApiDep = Annotated[Api, Depends(get_api)]
