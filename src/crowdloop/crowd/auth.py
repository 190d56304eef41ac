"""Users and API tokens. Tokens are random, shown once, and stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crowdloop.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from crowdloop.storage.db import param, run
from crowdloop.storage.models import ROLES, ApiToken, User, utcnow

TOKEN_PREFIX = "cl_"

log = logging.getLogger(__name__)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewToken:
    """A freshly issued token: the only moment its clear text exists."""

    user: User
    token: str


def create_user(session: Session, name: str, role: str) -> User:
    if role not in ROLES:
        raise InvalidInputError(f"role must be one of {', '.join(ROLES)}; got {role!r}.")
    name = name.strip()
    if not name:
        raise InvalidInputError("a user needs a name.")
    if len(name) > 200:
        raise InvalidInputError("a user's name is at most 200 characters.")
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise ConflictError(f"a user named {name!r} already exists.")
    user = User(name=name, role=role)
    session.add(user)
    session.flush()
    return user


def issue_token(session: Session, user: User) -> NewToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:10]))
    session.flush()
    return NewToken(user, token)


def create_user_with_token(session: Session, name: str, role: str) -> NewToken:
    return issue_token(session, create_user(session, name, role))


MISSING_TOKEN = "missing token: send 'Authorization: Bearer <token>'."


def authenticate(session: Session, token: str | None) -> User:
    """The user behind a bearer token, or :class:`AuthenticationError`.

    Every request asks this, so it runs one prebuilt indexed query on Core's path (no ORM
    compile, no identity map) and builds a detached :class:`User` from the row.
    """
    if not token:
        raise AuthenticationError(MISSING_TOKEN)
    row = run(session, _CALLER, {"token_hash": hash_token(token)}).first()
    if row is None:
        raise AuthenticationError("invalid or revoked token.")
    return User(id=row.id, name=row.name, role=row.role, created_at=row.created_at)


_CALLER = (
    select(User.id, User.name, User.role, User.created_at)
    .join(ApiToken, ApiToken.user_id == User.id)
    .where(ApiToken.token_hash == param("token_hash"), ApiToken.revoked_at.is_(None))
)


ENV_TOKEN_PREFIX = "env:"
"""The stored prefix of a token that came from CROWDLOOP_ADMIN_TOKEN: the marker alone. It held the
token's first 6 characters too, in clear, a good start on a token a person chose (migration 0010)."""

SHORT_ADMIN_TOKEN = 16
"""CROWDLOOP_ADMIN_TOKEN shorter than this is warned about at start: tokens are stored as unsalted
SHA-256, which takes a short, human-chosen token back offline in no time."""


def ensure_admin_token(session: Session, token: str) -> User:
    """Make ``token`` (from CROWDLOOP_ADMIN_TOKEN) the admin's token; idempotent across restarts.

    A token the variable held before is revoked, so changing the variable rotates the token (both
    used to work). The token must be an admin's: a user named ``admin`` who is a worker used to get
    it silently, with a worker's rights.
    """
    _warn_if_short(token)
    existing = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    owner = None if existing is None else session.get(User, existing.user_id)
    admin = owner or session.scalar(select(User).where(User.name == "admin")) or create_user(session, "admin", "admin")
    if admin.role != "admin":
        raise ConflictError(
            f"CROWDLOOP_ADMIN_TOKEN belongs to, or would go to, user {admin.name!r}, who is a {admin.role}, not an "
            "admin; rename that user or choose another token."
        )
    previous = (ApiToken.user_id == admin.id, ApiToken.prefix.startswith(ENV_TOKEN_PREFIX),
                ApiToken.token_hash != hash_token(token), ApiToken.revoked_at.is_(None))  # fmt: skip
    session.execute(update(ApiToken).where(*previous).values(revoked_at=utcnow()))
    if existing is None:
        session.add(ApiToken(user_id=admin.id, token_hash=hash_token(token), prefix=ENV_TOKEN_PREFIX))
    elif existing.revoked_at is not None:  # a restart must not undo a revocation
        raise ConflictError("CROWDLOOP_ADMIN_TOKEN holds a token that was revoked; choose another.")
    else:
        existing.prefix = ENV_TOKEN_PREFIX  # stored before the marker existed: rotates from now on
    session.flush()
    return admin


def _warn_if_short(token: str) -> None:
    if len(token) < SHORT_ADMIN_TOKEN:
        log.warning(
            "CROWDLOOP_ADMIN_TOKEN is %d characters long; use at least %d random ones (say `python -c "
            "'import secrets; print(secrets.token_urlsafe(32))'`): a database copy gives away a short one.",
            len(token), SHORT_ADMIN_TOKEN,
        )  # fmt: skip


def issue_token_for(session: Session, actor: User, user_id: int) -> NewToken:
    """An admin issues another token for a user (e.g. a lost one was revoked)."""
    require_role(actor, "admin")
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"no user {user_id}.")
    return issue_token(session, user)


def issue_token_by_name(session: Session, name: str) -> NewToken:
    """For the operator's CLI, which acts on the database directly."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFoundError(f"no user named {name!r}.")
    return issue_token(session, user)


def revoke_tokens(session: Session, actor: User, user_id: int) -> int:
    require_role(actor, "admin")
    rows = session.scalars(select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)))
    count = 0
    for row in rows:
        row.revoked_at = utcnow()
        count += 1
    return count


def require_role(user: User, *roles: str) -> None:
    if user.role not in roles:
        raise PermissionDeniedError(f"this needs the role {' or '.join(roles)}; you are a {user.role}.")


def list_users(session: Session, actor: User, role: str | None = None) -> list[User]:
    require_role(actor, "admin")
    query = select(User).order_by(User.id)
    if role:
        query = query.where(User.role == role)
    return list(session.scalars(query))
