"""Streamed exports: labels and answers (CSV, JSON Lines, Parquet) and Label Studio JSON.

The caller is checked in the request's own unit of work; the rows then stream from a
separate read-only session that never takes SQLite's write lock.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from crowdloop.api.deps import ApiDep
from crowdloop.crowd import export
from crowdloop.crowd.formats import FORMATS, stream_rows, to_label_studio

router = APIRouter(tags=["export"])


def _download(body: Iterator[bytes], media_type: str, filename: str) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(body, media_type=media_type, headers=headers)


@router.get("/projects/{project_id}/export/labels")
def export_labels(project_id: int, api: ApiDep, format: str = "csv") -> StreamingResponse:
    api.run(lambda session, user: export.check_export(session, user, project_id))
    body = stream_rows(format, export.label_rows(api.read_factory, project_id), export.LABEL_COLUMNS)
    media, suffix = FORMATS[format]
    return _download(body, media, f"labels-{project_id}{suffix}")


@router.get("/projects/{project_id}/export/answers")
def export_answers(project_id: int, api: ApiDep, format: str = "csv") -> StreamingResponse:
    api.run(lambda session, user: export.check_export(session, user, project_id))
    body = stream_rows(format, export.answer_rows(api.read_factory, project_id), export.ANSWER_COLUMNS)
    media, suffix = FORMATS[format]
    return _download(body, media, f"answers-{project_id}{suffix}")


@router.get("/projects/{project_id}/export/label-studio")
def export_label_studio(project_id: int, api: ApiDep) -> StreamingResponse:
    api.run(lambda session, user: export.check_export(session, user, project_id))
    body = to_label_studio(export.label_studio_rows(api.read_factory, project_id))
    return _download(body, "application/json", f"label-studio-{project_id}.json")
