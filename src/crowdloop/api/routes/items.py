"""Item import (JSON body or file upload) and the item listing for requesters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from crowdloop.api.deps import ApiDep
from crowdloop.crowd import items
from crowdloop.crowd.projects import get_owned_project
from crowdloop.crowd.schemas import ImportReport
from crowdloop.errors import PayloadTooLargeError

router = APIRouter(tags=["items"])
CHUNK = 1 << 20


@router.post("/projects/{project_id}/items")
def import_items(project_id: int, rows: list[dict[str, Any]], api: ApiDep) -> ImportReport:
    return api.run(lambda session, user: items.import_items(session, user, project_id, rows))


@router.post("/projects/{project_id}/items/upload")
async def upload_items(project_id: int, file: UploadFile, api: ApiDep) -> ImportReport:
    """CSV, TSV, JSON Lines or Label Studio JSON; refused whole when over the size limit."""
    await run_in_threadpool(api.run, lambda session, user: get_owned_project(session, user, project_id))
    content = await _read_limited(file, api.settings.max_upload_bytes, api.settings.max_upload_text)
    rows = await run_in_threadpool(items.parse_upload, content, file.filename or "upload.csv")
    result: ImportReport = await run_in_threadpool(
        api.run, lambda session, user: items.import_items(session, user, project_id, rows)
    )
    return result


async def _read_limited(file: UploadFile, limit: int, limit_text: str) -> bytes:
    parts, size = [], 0
    while chunk := await file.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"upload is over the {limit_text} limit; nothing was imported.")
        parts.append(chunk)
    return b"".join(parts)


@router.get("/projects/{project_id}/items")
def list_items(
    project_id: int,
    api: ApiDep,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000, description="items a page, at most 1000"),
) -> list[dict[str, Any]]:
    """A page of the project's items, in id order.

    A larger limit is refused (422), not cut to 1000: a client paging with ``offset += limit``
    skipped the items between.
    """
    return api.run(lambda session, user: items.list_items(session, user, project_id, offset, limit))
