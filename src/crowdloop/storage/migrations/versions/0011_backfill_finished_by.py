"""Projects that finished before 0008 get their projects.finished_by: "rule" with no open item left

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 12:00:00

0008 added finished_by empty for every existing project, and edge feedback reopens only a project
whose finished_by is "rule": one that had finished because its last item got its label stayed
finished when an edge device sent items back, and those items were never handed out (before 0008
any finished project was reopened). Since 0008 the code sets finished_by whenever a project
finishes, so an empty one on a finished project is one that finished before it. Such a project
with no open regular item finished by the rule (it finishes a project the moment none is left);
one with items still open was finished by its owner. A project the owner finished by hand after
every item was done cannot be told apart: it counts as finished by the rule, as it was treated
before 0008.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_projects = sa.table(
    "projects", sa.column("id", sa.Integer()), sa.column("status", sa.String()), sa.column("finished_by", sa.String())
)
_items = sa.table(
    "items",
    sa.column("project_id", sa.Integer()),
    sa.column("is_gold", sa.Boolean()),
    sa.column("done", sa.Boolean()),
)


def upgrade() -> None:
    open_item = sa.exists().where(
        _items.c.project_id == _projects.c.id, _items.c.is_gold.is_(False), _items.c.done.is_(False)
    )
    unset = (_projects.c.status == "finished", _projects.c.finished_by.is_(None))
    op.execute(_projects.update().where(*unset, ~open_item).values(finished_by="rule"))
    op.execute(_projects.update().where(*unset).values(finished_by="owner"))


def downgrade() -> None:
    pass  # 0010 has the column and means the same by it
