"""The fields a project's items have: projects.fields, and an index to find items by their own id

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 23:45:00

An import whose columns were not the project's (a misspelt header, the gold answer in a column
named "gold") made items of whatever it held: workers were shown the answer, and a model trained
on the project took the answer column as a feature. A project now has its fields, declared when it
is created or by its first import, and an import row with another field is rejected. Projects
that have items get the fields those items have. ``(project_id, external_id)`` is indexed because a
gold file can now name its items by their own id.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_KEYS = {
    "postgresql": "SELECT DISTINCT project_id, json_object_keys(data) FROM items",
    "sqlite": "SELECT DISTINCT items.project_id, keys.key FROM items, json_each(items.data) AS keys",
}


def upgrade() -> None:
    op.add_column("projects", sa.Column("fields", sa.JSON(none_as_null=True), nullable=True))
    op.create_index("ix_items_external_id", "items", ["project_id", "external_id"])
    connection = op.get_bind()
    fields: dict[int, set[str]] = {}
    for project_id, key in connection.execute(sa.text(_KEYS[connection.dialect.name])):
        fields.setdefault(int(project_id), set()).add(str(key))
    projects = sa.table("projects", sa.column("id", sa.Integer()), sa.column("fields", sa.JSON(none_as_null=True)))
    for project_id, names in sorted(fields.items()):
        statement = projects.update().where(projects.c.id == project_id).values(fields=sorted(names))
        connection.execute(statement)


def downgrade() -> None:
    op.drop_index("ix_items_external_id", table_name="items")
    op.drop_column("projects", "fields")
