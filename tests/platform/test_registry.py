"""The schema and the model registry, on a real SQLite file and a real PostgreSQL database.

The migrations must build exactly the tables the models declare (no drift either way), and
the registry must number versions per project, keep artifacts verifiable and move aliases.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from crowdloop.errors import ArtifactError, InvalidInputError, NotFoundError
from crowdloop.learning import registry
from crowdloop.storage.db import make_engine, session_factory, unit_of_work
from crowdloop.storage.migrate import upgrade
from crowdloop.storage.models import Base, Project, User


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url, pool_size=2)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_migrations_build_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def _project(session: Session, name: str) -> Project:
    owner = User(name=name, role="requester")
    session.add(owner)
    session.flush()
    project = Project(owner_id=owner.id, name=name, labels=["a", "b"])
    session.add(project)
    session.flush()
    return project


def _artifact(directory: Path, content: bytes) -> Path:
    directory.mkdir(parents=True)
    (directory / "model.bin").write_bytes(content)
    (directory / "features.json").write_text('{"vocabulary": ["x"]}')
    return directory


def test_versions_are_numbered_per_project_and_aliases_move(engine: Engine, tmp_path: Path) -> None:
    factory = session_factory(engine)
    store = tmp_path / "registry"
    with unit_of_work(factory) as session:
        first, other = _project(session, "reg-a"), _project(session, "reg-b")
        v1 = registry.register_version(
            session,
            first,
            _artifact(tmp_path / "m1", b"one"),
            store,
            family="logreg",
            params={"C": 1.0},
            metrics={"accuracy": 0.8},
            lineage={"method": "default"},
        )
        v2 = registry.register_version(
            session,
            first,
            _artifact(tmp_path / "m2", b"two"),
            store,
            family="nb",
            params={},
            metrics={"accuracy": 0.7},
            lineage={"method": "default"},
        )
        w1 = registry.register_version(
            session,
            other,
            _artifact(tmp_path / "m3", b"three"),
            store,
            family="logreg",
            params={},
            metrics={},
            lineage={},
        )
        assert (v1.version, v2.version, w1.version) == (1, 2, 1)
        registry.set_alias(session, v1, "production", "first model")
        registry.set_alias(session, v2, "candidate", "trained on more labels")
        registry.set_alias(session, v2, "production", "beat version 1 on gold")
        project_id = first.id
    with unit_of_work(factory) as session:
        assert registry.aliases(session, project_id) == {"production": 2, "candidate": 2}
        assert registry.resolve_version(session, project_id, "production").family == "nb"
        assert registry.resolve_version(session, project_id, "1").family == "logreg"
        kinds = [event.kind for event in registry.events(session, project_id)]
        assert kinds == ["registered", "registered", "production", "candidate", "production"]
        directory = registry.artifact_dir(store, registry.resolve_version(session, project_id, 2))
        assert (directory / "model.bin").read_bytes() == b"two"


def test_bad_references_and_tampered_artifacts_are_refused(engine: Engine, tmp_path: Path) -> None:
    factory = session_factory(engine)
    store = tmp_path / "registry"
    with unit_of_work(factory) as session:
        project = _project(session, "reg-c")
        version = registry.register_version(
            session,
            project,
            _artifact(tmp_path / "m", b"weights"),
            store,
            family="logreg",
            params={},
            metrics={},
            lineage={},
        )
        with pytest.raises(NotFoundError, match="no model version '7'"):
            registry.resolve_version(session, project.id, 7)
        with pytest.raises(NotFoundError, match="production"):
            registry.resolve_version(session, project.id, "production")
        with pytest.raises(InvalidInputError, match="neither a number nor"):
            registry.resolve_version(session, project.id, "latest")
        with pytest.raises(InvalidInputError, match="alias 'staging'"):
            registry.set_alias(session, version, "staging", "no such alias")
        with pytest.raises(InvalidInputError, match="not a directory"):
            registry.register_version(
                session, project, tmp_path / "absent", store, family="x", params={}, metrics={}, lineage={}
            )
        (store / version.artifact_path / "model.bin").write_bytes(b"tampered")
        with pytest.raises(ArtifactError, match="does not match its digest") as raised:
            registry.artifact_dir(store, version)
        assert str(store) not in raised.value.detail  # no server path for the caller
