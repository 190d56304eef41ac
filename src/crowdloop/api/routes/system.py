"""Health: the one route without a caller, for load balancers; it reveals nothing."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from crowdloop import __version__
from crowdloop.api.deps import PublicApiDep

router = APIRouter(tags=["system"])


@router.get("/health")
def health(api: PublicApiDep) -> dict[str, str]:
    api.run_anonymous(lambda session: session.execute(text("SELECT 1")))
    return {"status": "ok", "version": __version__}
