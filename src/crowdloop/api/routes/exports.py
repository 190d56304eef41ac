"""Streamed exports: labels and answers (CSV, JSON Lines, Parquet) and Label Studio JSON."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from crowdloop.api.deps import ReadFactoryDep, SessionDep, UserDep
from crowdloop.crowd import export
from crowdloop.crowd.formats import FORMATS, stream_rows, to_label_studio

router = APIRouter(tags=["export"])


def _download(body: object, media_type: str, filename: str) -> StreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(body, media_type=media_type, headers=headers)  # type: ignore[arg-type]


@router.get("/projects/{project_id}/export/labels")
def export_labels(
    project_id: int, session: SessionDep, user: UserDep, factory: ReadFactoryDep, format: str = "csv"
) -> StreamingResponse:
    export.check_export(session, user, project_id)
    body = stream_rows(format, export.label_rows(factory, project_id), export.LABEL_COLUMNS)
    media, suffix = FORMATS[format]
    return _download(body, media, f"labels-{project_id}{suffix}")


@router.get("/projects/{project_id}/export/answers")
def export_answers(
    project_id: int, session: SessionDep, user: UserDep, factory: ReadFactoryDep, format: str = "csv"
) -> StreamingResponse:
    export.check_export(session, user, project_id)
    body = stream_rows(format, export.answer_rows(factory, project_id), export.ANSWER_COLUMNS)
    media, suffix = FORMATS[format]
    return _download(body, media, f"answers-{project_id}{suffix}")


@router.get("/projects/{project_id}/export/label-studio")
def export_label_studio(
    project_id: int, session: SessionDep, user: UserDep, factory: ReadFactoryDep
) -> StreamingResponse:
    export.check_export(session, user, project_id)
    body = to_label_studio(export.label_studio_rows(factory, project_id))
    return _download(body, "application/json", f"label-studio-{project_id}.json")
