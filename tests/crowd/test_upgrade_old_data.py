"""Databases filled by older code, upgraded to the newest schema on a real SQLite file and a real
PostgreSQL database: the rows they already hold keep their meaning."""

from __future__ import annotations

import json

from sqlalchemy import Engine, text

from crowdloop.storage import migrate
from support import upgrade_to


def _project(engine: Engine, status: str, items: list[bool]) -> int:
    """A project as the code before 0008 left it, with regular items done or not (and a gold one)."""
    with engine.begin() as connection:
        owner = connection.execute(
            text(
                "INSERT INTO users (name, role, created_at) VALUES (:name, 'requester', CURRENT_TIMESTAMP) RETURNING id"
            ),
            {"name": f"owner-{status}-{len(items)}-{sum(items)}"},
        ).scalar_one()
        project = connection.execute(
            text("INSERT INTO projects (owner_id, name, task_type, labels, instructions, status, min_overlap, "
                 "max_overlap, confidence_target, gold_share, price_micros, budget_micros, spent_micros, "
                 "aggregation_method, lease_seconds, open_to_all, rules, answers_total, answers_since_aggregation, "
                 "created_at) VALUES (:owner, 'p', 'single_choice', '[\"a\", \"b\"]', '', :status, 1, 1, 0.95, 0, 0, "
                 "NULL, 0, 'default', 600, true, '{}', 0, 0, CURRENT_TIMESTAMP) RETURNING id"),
            {"owner": owner, "status": status},
        ).scalar_one()  # fmt: skip
        rows = [{"hash": f"{project}-{n}", "done": done, "gold": False} for n, done in enumerate(items)]
        rows.append({"hash": f"{project}-gold", "done": False, "gold": True})  # gold is never done
        connection.execute(
            text("INSERT INTO items (project_id, data, content_hash, is_gold, gold_label, priority, answer_count, "
                 "reserved, done, source, created_at) VALUES (:project, '{\"text\": \"x\"}', :hash, :gold, 'null', 0, "
                 "1, 0, :done, 'import', CURRENT_TIMESTAMP)"),
            [{"project": project, **row} for row in rows],
        )  # fmt: skip
        return int(project)


def test_projects_that_finished_before_0008_say_why(engine: Engine) -> None:
    """0008 left finished_by empty, and edge feedback reopens only a project finished by the rule:
    one whose last item had got its label before the upgrade stayed finished, and the items an edge
    device sent back were never handed out."""
    upgrade_to(engine, "0007")
    by_rule = _project(engine, "finished", [True, True])
    by_owner = _project(engine, "finished", [True, False])
    active = _project(engine, "active", [True, True])
    empty = _project(engine, "finished", [])
    migrate.upgrade(engine)
    with engine.connect() as connection:
        finished_by = dict(connection.execute(text("SELECT id, finished_by FROM projects")).tuples().all())
    assert finished_by == {by_rule: "rule", by_owner: "owner", active: None, empty: "rule"}


def test_projects_with_items_before_0013_get_the_fields_their_items_have(engine: Engine) -> None:
    """0013 checks an import's fields against the project's: a project filled before it must get
    the fields its items have, or its next import would declare them anew."""
    upgrade_to(engine, "0012")
    filled = _project(engine, "active", [True, False])  # items of {"text": ...}
    empty = _project(engine, "draft", [])
    with engine.begin() as connection:  # an item with another field, and the gold one: both count
        connection.execute(text("DELETE FROM items WHERE project_id = :p"), {"p": empty})
        connection.execute(
            text('UPDATE items SET data = \'{"text": "y", "text_b": "z"}\' WHERE content_hash = :h'),
            {"h": f"{filled}-gold"},
        )
    migrate.upgrade(engine)
    with engine.connect() as connection:
        rows = dict(connection.execute(text("SELECT id, fields FROM projects WHERE id IN (:a, :b)"),
                                       {"a": filled, "b": empty}).tuples().all())  # fmt: skip
    fields = {project: json.loads(value) if isinstance(value, str) else value for project, value in rows.items()}
    assert fields == {filled: ["text", "text_b"], empty: None}
