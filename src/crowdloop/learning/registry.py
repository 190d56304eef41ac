"""The model registry: every trained model of a project as a numbered version.

A version records its metrics, its lineage (which labels, from which answers, aggregated
by which method, when) and its artifact, a directory copied under
``<data_dir>/models/<project>/<version>/`` and fingerprinted with SHA-256 so an edge device
can check what it pulled. Aliases (``production``, ``candidate``) point at versions and
every change of one is kept as a :class:`~crowdloop.storage.models.ModelEvent`.

Functions take a session and never commit: the request or the job is the unit of work.
Access checks are the caller's (the services that call these check the project first).
"""

from __future__ import annotations

import io
import logging
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crowdloop.deploy.artifact import artifact_digest
from crowdloop.errors import ArtifactError, InvalidInputError, NotFoundError
from crowdloop.storage.db import dialect_insert
from crowdloop.storage.models import ModelAlias, ModelEvent, ModelVersion, Project, utcnow

log = logging.getLogger(__name__)

ALIASES = ("production", "candidate")


def register_version(
    session: Session,
    project: Project,
    source_dir: Path,
    registry_dir: Path,
    *,
    family: str,
    params: dict[str, Any],
    metrics: dict[str, Any],
    lineage: dict[str, Any],
    created_by: int | None = None,
) -> ModelVersion:
    """Copy a saved model into the registry as the project's next version."""
    if not source_dir.is_dir():
        raise InvalidInputError(f"model artifact {source_dir} is not a directory.")
    number = _next_version_number(session, project)
    relative = Path(str(project.id)) / str(number)
    target = registry_dir / relative
    if target.exists():  # left over from a transaction that rolled back
        shutil.rmtree(target)
    shutil.copytree(source_dir, target)
    version = ModelVersion(
        project_id=project.id,
        version=number,
        family=family,
        params=params,
        metrics=metrics,
        lineage=lineage,
        artifact_path=relative.as_posix(),
        artifact_digest=artifact_digest(target),
        created_by=created_by,
    )
    session.add(version)
    session.flush()
    record_event(session, project.id, version.id, "registered", {"version": number, "family": family})
    return version


def save_training_targets(registry_dir: Path, version: ModelVersion, targets: pd.DataFrame) -> None:
    """Keep what the version learned from (item id x class) beside, not inside, its artifact.

    Outside the artifact folder so its digest and what an edge downloads stay as they were;
    the drift reference refits on exactly these targets.
    """
    frame = targets.rename(columns=str).rename_axis("item_id").reset_index()
    frame.to_parquet(_targets_path(registry_dir, version), index=False)


def training_targets(registry_dir: Path, version: ModelVersion) -> pd.DataFrame | None:
    """The targets :func:`save_training_targets` kept (``None`` for versions registered before it)."""
    path = _targets_path(registry_dir, version)
    if not path.is_file():
        return None
    frame = pd.read_parquet(path)
    return frame.set_index(pd.Index(frame.pop("item_id").astype(int).to_numpy())).rename_axis(None)


def training_items(registry_dir: Path, version: ModelVersion) -> set[int] | None:
    """The ids of the items ``version`` learned from: the rows of its kept training targets.

    ``None`` when they are not on record: a version registered before targets were kept, or
    outside :func:`crowdloop.learning.service.train_project` (e.g. trained on Spark).
    """
    path = _targets_path(registry_dir, version)
    if not path.is_file():
        return None
    return {int(item) for item in pd.read_parquet(path, columns=["item_id"])["item_id"]}


def _targets_path(registry_dir: Path, version: ModelVersion) -> Path:
    return registry_dir / f"{version.artifact_path}.targets.parquet"


def _next_version_number(session: Session, project: Project) -> int:
    """Numbers are per project; the unique (project, version) key catches a concurrent register."""
    latest = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project.id))
    return int(latest or 0) + 1


def list_versions(session: Session, project_id: int) -> list[ModelVersion]:
    query = select(ModelVersion).where(ModelVersion.project_id == project_id).order_by(ModelVersion.version)
    return list(session.scalars(query))


MAX_VERSION = 2**31 - 1
"""The largest version number looked up; a longer number cannot be one (a 404, not a database overflow)."""


def resolve_version(session: Session, project_id: int, ref: str | int) -> ModelVersion:
    """A version by number (``3``, ``"3"``) or alias (``"production"``); 404 when there is none."""
    text = str(ref)
    if text.isascii() and text.isdigit() and int(text) <= MAX_VERSION:
        query = select(ModelVersion).where(ModelVersion.project_id == project_id, ModelVersion.version == int(text))
    elif text in ALIASES:
        query = (
            select(ModelVersion)
            .join(ModelAlias, ModelAlias.version_id == ModelVersion.id)
            .where(ModelAlias.project_id == project_id, ModelAlias.alias == text)
        )
    elif text.isascii() and text.isdigit():
        raise NotFoundError(f"project {project_id} has no model version {text}.")
    else:
        raise InvalidInputError(f"model version {text!r} is neither a number nor one of {', '.join(ALIASES)}.")
    version = session.scalar(query)
    if version is None:
        raise NotFoundError(f"project {project_id} has no model version {text!r}.")
    return version


def aliases(session: Session, project_id: int) -> dict[str, int]:
    """Alias name → version number."""
    query = (
        select(ModelAlias.alias, ModelVersion.version)
        .join(ModelVersion, ModelAlias.version_id == ModelVersion.id)
        .where(ModelAlias.project_id == project_id)
    )
    return {alias: number for alias, number in session.execute(query)}


def set_alias(session: Session, version: ModelVersion, alias: str, reason: str) -> None:
    """Point ``alias`` at ``version`` (an upsert, so two processes cannot both insert it)."""
    if alias not in ALIASES:
        raise InvalidInputError(f"alias {alias!r} is not one of {', '.join(ALIASES)}.")
    now = utcnow()
    statement = dialect_insert(session, ModelAlias).values(
        project_id=version.project_id, alias=alias, version_id=version.id, updated_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=["project_id", "alias"], set_={"version_id": version.id, "updated_at": now}
    )
    session.execute(statement)
    record_event(session, version.project_id, version.id, alias, {"version": version.version, "reason": reason})


def record_event(
    session: Session, project_id: int, version_id: int | None, kind: str, detail: dict[str, Any]
) -> ModelEvent:
    event = ModelEvent(project_id=project_id, version_id=version_id, kind=kind, detail=detail)
    session.add(event)
    return event


def events(session: Session, project_id: int, limit: int = 200, before: int | None = None) -> list[ModelEvent]:
    """The project's latest ``limit`` events (before event id ``before``: the page before), oldest first."""
    query = select(ModelEvent).where(ModelEvent.project_id == project_id)
    if before is not None:
        query = query.where(ModelEvent.id < before)
    return list(session.scalars(query.order_by(ModelEvent.id.desc()).limit(limit)))[::-1]


def artifact_dir(registry_dir: Path, version: ModelVersion) -> Path:
    """Where a version's files are; checks the digest so a tampered artifact is never served or used."""
    directory = registry_dir / version.artifact_path
    if not directory.is_dir():
        log.error("model version %s of project %s: no folder %s", version.version, version.project_id, directory)
        raise ArtifactError(f"the artifact of model version {version.version} is missing from the model store.")
    if artifact_digest(directory) != version.artifact_digest:
        log.error("model version %s of project %s: %s does not match its digest", version.version,
                  version.project_id, directory)  # fmt: skip
        raise ArtifactError(f"the artifact of model version {version.version} does not match its digest.")
    return directory


def tar_gz_chunks(directory: Path) -> Iterator[bytes]:
    """A gzipped tar of ``directory``'s files (paths relative to it), produced file by file.

    Streamed, so a large estimator never sits in memory twice; the receiver recomputes
    :func:`~crowdloop.deploy.artifact.artifact_digest` over what it extracted.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w|gz") as archive:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            archive.add(path, arcname=path.relative_to(directory).as_posix(), recursive=False)
            yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.BytesIO) -> bytes:
    data = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return data
