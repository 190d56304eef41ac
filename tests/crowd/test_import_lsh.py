"""Near duplicates through the stored LSH index (``item_lsh_bands`` + ``items.minhash``), on a
real SQLite file and a real PostgreSQL database: found across separate imports, idempotent,
and backfilled by migration 0002 for items stored before it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
import pytest
from alembic import command
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from crowdloop.crowd import items as items_module
from crowdloop.crowd.dedup import (
    content_hash,
    item_text,
    lsh_band_keys,
    minhash_signatures,
    pack_signatures,
    unpack_signatures,
)
from crowdloop.crowd.items import import_items
from crowdloop.errors import InvalidInputError
from crowdloop.storage import migrate
from crowdloop.storage.db import session_factory, unit_of_work
from crowdloop.storage.models import Item, ItemLshBand, Project, User
from support import upgrade_to

SENTENCE = "The quick brown fox jumps over the lazy dog near the old river bank on a windy autumn day"
NEAR_COPY = "The quick brown fox jumps over the lazy dogs near the old river bank on a windy autumn day"
UNRELATED = [
    "Completely different words about databases and indexes",
    "A recipe for bread: flour, water, salt and some patience",
    "Weather report: rain in the morning, sun in the afternoon",
]


def _requester_and_project(engine: Engine) -> tuple[int, int]:
    with unit_of_work(session_factory(engine)) as session:
        owner = User(name=f"owner-{uuid.uuid4().hex[:6]}", role="requester")
        session.add(owner)
        session.flush()
        project = Project(owner_id=owner.id, name="lsh", labels=["a", "b"])
        session.add(project)
        session.flush()
        return owner.id, project.id


def _import(engine: Engine, owner_id: int, project_id: int, texts: list[str], prefix: str = "t") -> Any:
    """Import ``texts`` as items with ids ``prefix0``, ``prefix1``, ... (the file's own ids)."""
    with unit_of_work(session_factory(engine)) as session:
        actor = session.get(User, owner_id)
        assert actor is not None
        rows = [{"data": {"text": t}, "external_id": f"{prefix}{n}"} for n, t in enumerate(texts)]
        return import_items(session, actor, project_id, rows)


def _ids_by_text(engine: Engine, project_id: int) -> dict[str, int]:
    with Session(engine) as session:
        rows = session.execute(select(Item.id, Item.data).where(Item.project_id == project_id))
        return {row.data["text"]: row.id for row in rows}


def _band_rows(engine: Engine) -> set[tuple[int, int, int]]:
    with Session(engine) as session:
        rows = session.execute(select(ItemLshBand.project_id, ItemLshBand.band_key, ItemLshBand.item_id))
        return {(row.project_id, row.band_key, row.item_id) for row in rows}


def _expected_rows(project_id: int, ids_by_text: dict[str, int]) -> set[tuple[int, int, int]]:
    texts = list(ids_by_text)
    keys = lsh_band_keys(minhash_signatures([item_text({"text": t}) for t in texts]), 8)
    return {(project_id, int(key), ids_by_text[t]) for t, row in zip(texts, keys, strict=True) for key in row}


# ---------------------------------------------------------------- through the service


def test_near_duplicate_of_an_item_from_an_earlier_import_is_found_and_marked(engine: Engine) -> None:
    migrate.upgrade(engine)
    owner, project = _requester_and_project(engine)
    first = _import(engine, owner, project, [SENTENCE, *UNRELATED], prefix="first-")
    assert first.created == 4 and first.near_duplicates == []
    _import(engine, owner, project, [f"filler text number {i} with nothing in common" for i in range(30)])
    second = _import(engine, owner, project, ["yet another unrelated sentence here", NEAR_COPY], prefix="second-")
    ids = _ids_by_text(engine, project)
    assert [(p.item_id, p.similar_item_id) for p in second.near_duplicates] == [(ids[NEAR_COPY], ids[SENTENCE])]
    pair = second.near_duplicates[0]
    assert 0.8 <= pair.similarity < 1.0
    assert (pair.row, pair.external_id, pair.similar_row, pair.similar_external_id) == (2, "second-1", None, "first-0")
    with Session(engine) as session:
        assert session.get(Item, ids[NEAR_COPY]).near_duplicate_of == ids[SENTENCE]  # type: ignore[union-attr]
        assert session.get(Item, ids[SENTENCE]).near_duplicate_of is None  # type: ignore[union-attr]


def test_every_imported_item_stores_its_signature_and_band_keys(engine: Engine) -> None:
    migrate.upgrade(engine)
    owner, project = _requester_and_project(engine)
    _import(engine, owner, project, [SENTENCE, *UNRELATED])
    ids = _ids_by_text(engine, project)
    assert _band_rows(engine) == _expected_rows(project, ids)
    with Session(engine) as session:
        stored = session.execute(select(Item.minhash).where(Item.id == ids[SENTENCE])).scalar_one()
    assert stored == pack_signatures(minhash_signatures([item_text({"text": SENTENCE})]))[0]


def test_reimport_is_idempotent_and_adds_no_band_rows(engine: Engine) -> None:
    migrate.upgrade(engine)
    owner, project = _requester_and_project(engine)
    texts = [SENTENCE, NEAR_COPY, *UNRELATED]
    first = _import(engine, owner, project, texts)
    rows = _band_rows(engine)
    again = _import(engine, owner, project, texts)
    assert (first.created, len(first.near_duplicates)) == (5, 1)
    assert (again.created, again.duplicates, again.near_duplicates) == (0, 5, [])
    assert _band_rows(engine) == rows


def test_near_duplicates_are_found_across_batches_of_one_import(engine: Engine, monkeypatch) -> None:
    migrate.upgrade(engine)
    monkeypatch.setattr(items_module, "BATCH", 2)
    owner, project = _requester_and_project(engine)
    report = _import(engine, owner, project, [SENTENCE, *UNRELATED, NEAR_COPY])
    ids = _ids_by_text(engine, project)
    assert [(p.item_id, p.similar_item_id) for p in report.near_duplicates] == [(ids[NEAR_COPY], ids[SENTENCE])]
    assert [(p.row, p.similar_row) for p in report.near_duplicates] == [(5, 1)]  # rows of the file, across batches


def test_projects_do_not_see_each_others_items_and_deleted_items_are_ignored(engine: Engine) -> None:
    migrate.upgrade(engine)
    owner, project = _requester_and_project(engine)
    other_owner, other = _requester_and_project(engine)
    _import(engine, owner, project, [SENTENCE])
    assert _import(engine, other_owner, other, [NEAR_COPY]).near_duplicates == []
    _import(engine, owner, project, ["a second item, kept"])
    with unit_of_work(session_factory(engine)) as session:  # band rows of a deleted item stay behind
        session.execute(text("DELETE FROM items WHERE id = :id"), {"id": _ids_by_text(engine, project)[SENTENCE]})
    assert _import(engine, owner, project, [NEAR_COPY]).near_duplicates == []


# ---------------------------------------------------------------- migration 0002


def _raw_requester_and_project(engine: Engine) -> tuple[int, int]:
    """A requester and a project as revision 0001 stored them: today's models would write
    columns that later revisions added."""
    with engine.begin() as connection:
        owner = connection.execute(
            text(
                "INSERT INTO users (name, role, created_at) VALUES (:name, 'requester', CURRENT_TIMESTAMP) RETURNING id"
            ),
            {"name": f"owner-{uuid.uuid4().hex[:6]}"},
        ).scalar_one()
        project = connection.execute(
            text(
                "INSERT INTO projects (owner_id, name, task_type, labels, instructions, min_overlap, max_overlap, "
                "confidence_target, gold_share, price_micros, spent_micros, aggregation_method, status, lease_seconds, "
                "rules, open_to_all, answers_total, answers_since_aggregation, created_at) VALUES (:owner, 'lsh', "
                "'single_choice', '[\"a\", \"b\"]', '', 1, 3, 0.95, 0, 0, 0, 'default', 'draft', 600, '{}', true, 0, 0, "
                "CURRENT_TIMESTAMP) RETURNING id"
            ),
            {"owner": owner},
        ).scalar_one()
    return int(owner), int(project)


def _insert_raw_items(engine: Engine, project_id: int, texts: list[str]) -> None:
    """Items as revision 0001 stored them: no signature, no band keys."""
    statement = text(
        "INSERT INTO items (project_id, data, content_hash, is_gold, gold_label, priority, answer_count, reserved, "
        "done, source, created_at) VALUES (:project, :data, :hash, false, 'null', 0, 0, 0, false, 'import', "
        "CURRENT_TIMESTAMP)"
    )
    rows = [{"project": project_id, "data": json.dumps({"text": t}), "hash": content_hash({"text": t})} for t in texts]
    with engine.begin() as connection:
        connection.execute(statement, rows)


def test_migration_0002_backfills_signatures_and_band_keys_of_existing_items(engine: Engine) -> None:
    upgrade_to(engine, "0001")
    owner, project = _raw_requester_and_project(engine)
    _, other = _raw_requester_and_project(engine)
    _insert_raw_items(engine, project, [SENTENCE, *UNRELATED])
    _insert_raw_items(engine, other, ["the other project's only item, long enough to shingle"])
    upgrade_to(engine, "head")
    ids, other_ids = _ids_by_text(engine, project), _ids_by_text(engine, other)
    assert _band_rows(engine) == _expected_rows(project, ids) | _expected_rows(other, other_ids)
    with Session(engine) as session:
        stored = dict(session.execute(select(Item.id, Item.minhash)).tuples().all())
    signature = unpack_signatures([stored[ids[SENTENCE]]], 64)[0]
    assert np.array_equal(signature, minhash_signatures([SENTENCE])[0] >> np.uint64(32))
    assert all(value is not None for value in stored.values())
    report = _import(engine, owner, project, [NEAR_COPY])
    assert [(p.item_id, p.similar_item_id) for p in report.near_duplicates] == [
        (_ids_by_text(engine, project)[NEAR_COPY], ids[SENTENCE])
    ]


def test_migration_0002_downgrades_and_upgrades_again(engine: Engine) -> None:
    upgrade_to(engine, "head")
    owner, project = _requester_and_project(engine)
    _import(engine, owner, project, [SENTENCE])
    config = migrate.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(Item)).scalar_one() == 1
    upgrade_to(engine, "head")
    assert _band_rows(engine) == _expected_rows(project, _ids_by_text(engine, project))


def test_migration_0002_downgrade_keeps_the_answers_and_labels_on_the_items(engine: Engine) -> None:
    """On SQLite the downgrade recreated ``items`` (a batch copy) and the drop cascaded: every
    answer, assignment and label of the database was gone, the items themselves kept."""
    from crowdloop.crowd.aggregation import aggregate_project
    from crowdloop.crowd.answers import submit_answer
    from crowdloop.crowd.assignment import next_task
    from crowdloop.crowd.schemas import SubmitIn

    upgrade_to(engine, "head")
    owner, project = _requester_and_project(engine)
    _import(engine, owner, project, [SENTENCE, *UNRELATED])
    factory = session_factory(engine)
    with unit_of_work(factory) as session:
        session.get_one(Project, project).status = "active"
        worker = User(name="worker-0002", role="worker")
        session.add(worker)
    for _ in range(2):
        with unit_of_work(factory) as session:
            task = next_task(session, session.get_one(User, worker.id), project)
            assert task is not None
            submit_answer(session, session.get_one(User, worker.id), task.assignment_id, SubmitIn(label="a"))
    with unit_of_work(factory) as session:
        aggregate_project(session, session.get_one(User, owner), project)
    tables = ("answers", "assignments", "item_labels", "items")
    before = _row_counts(engine, tables)
    assert before["answers"] == 2 and before["item_labels"] == 2
    config = migrate.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    assert _row_counts(engine, tables) == before
    upgrade_to(engine, "head")
    assert _row_counts(engine, tables) == before


def _row_counts(engine: Engine, tables: tuple[str, ...]) -> dict[str, int]:
    with engine.connect() as connection:
        return {name: connection.execute(text(f"SELECT count(*) FROM {name}")).scalar_one() for name in tables}


# ---------------------------------------------------------------- pure helpers


def test_band_keys_differ_between_bands_with_equal_rows() -> None:
    signatures = np.zeros((1, 64), dtype=np.uint64)  # every band has the same rows
    keys = lsh_band_keys(signatures + np.uint64(7), 8)
    assert keys.dtype == np.int64 and len(set(keys[0].tolist())) == 8


def test_packed_signatures_round_trip_and_bad_lengths_are_named() -> None:
    signatures = minhash_signatures([SENTENCE, NEAR_COPY])
    unpacked = unpack_signatures(pack_signatures(signatures), 64)
    assert np.array_equal(unpacked, (signatures >> np.uint64(32)).astype(np.uint32))
    with pytest.raises(InvalidInputError, match="256 bytes"):
        unpack_signatures([b"short"], 64)


def test_overlapping_imports_into_one_project_wait_for_each_other(engine: Engine) -> None:
    """On PostgreSQL two imports of overlapping files locked the same rows in opposite orders and
    one died of a deadlock, as a 500 (the raw COPY cursor's error was never wrapped for the 503)."""
    import threading

    upgrade_to(engine, "head")
    owner_id, project_id = _requester_and_project(engine)
    texts = [f"sentence number {n} of a shared file, words {n * 7} and {n * 13}" for n in range(3000)]
    orders = [texts, texts[::-1], texts, texts[::-1]]
    errors: list[BaseException] = []

    def run(order: list[str]) -> None:
        try:
            _import(engine, owner_id, project_id, order)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert errors == []
    assert len(_ids_by_text(engine, project_id)) == 3000


def test_servers_starting_together_on_a_new_database_both_come_up(engine: Engine) -> None:
    """Two `crowdloop serve` on one new PostgreSQL database: one died creating a type the other had
    just created (UniqueViolation); the upgrade now takes turns."""
    import threading

    errors: list[BaseException] = []

    def start() -> None:
        try:
            migrate.upgrade(engine)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Project)) == 0  # the schema is there
