"""projects.label_prior: the class shares of the latest aggregation, for dynamic overlap

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("label_prior", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE (SQLite >= 3.35), not a batch copy: recreating ``projects`` on SQLite
    # would drop the old table, and its ON DELETE CASCADE would take every item with it.
    op.drop_column("projects", "label_prior")
