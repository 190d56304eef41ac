"""Users and tokens (admins), and who am I (everyone)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from crowdloop.api.deps import ApiDep
from crowdloop.crowd import auth
from crowdloop.crowd.schemas import StorableStr

router = APIRouter(tags=["users"])


class UserCreate(BaseModel):
    name: StorableStr
    role: StorableStr


def _user(user: Any) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "role": user.role}


@router.get("/me")
def me(api: ApiDep) -> dict[str, Any]:
    return api.run(lambda session, user: _user(user))


@router.post("/users", status_code=201)
def create_user(body: UserCreate, api: ApiDep) -> dict[str, Any]:
    """Create a user and their first token (shown once)."""

    def work(session: Any, user: Any) -> dict[str, Any]:
        auth.require_role(user, "admin")
        created = auth.create_user_with_token(session, body.name, body.role)
        return {**_user(created.user), "token": created.token}

    return api.run(work)


@router.get("/users")
def list_users(api: ApiDep, role: StorableStr | None = None) -> list[dict[str, Any]]:
    return api.run(lambda session, user: [_user(u) for u in auth.list_users(session, user, role)])


@router.post("/users/{user_id}/tokens", status_code=201)
def new_token(user_id: int, api: ApiDep) -> dict[str, Any]:
    return api.run(
        lambda session, user: {"user_id": user_id, "token": auth.issue_token_for(session, user, user_id).token}
    )


@router.delete("/users/{user_id}/tokens")
def revoke_tokens(user_id: int, api: ApiDep) -> dict[str, int]:
    return api.run(lambda session, user: {"revoked": auth.revoke_tokens(session, user, user_id)})
