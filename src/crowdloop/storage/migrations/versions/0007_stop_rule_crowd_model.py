"""The stop rule's crowd model: projects.crowd_model, project_workers.confusion and held_back

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 22:00:00

Dynamic overlap on the platform now uses each worker's confusion matrix (not one accuracy)
and can hold back the workers the crowd model rates below the crowd's median, as the
benchmarked policy (``crowdloop.sim.DynamicOverlap``) does; see ``crowd/stop_rule.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("crowd_model", sa.JSON(), nullable=True))
    op.add_column("project_workers", sa.Column("confusion", sa.JSON(), nullable=True))
    op.add_column("project_workers", sa.Column("held_back", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # Plain ALTER TABLE (SQLite >= 3.35), not a batch copy: recreating a table on SQLite would
    # drop the old one, and its ON DELETE CASCADE would take the rows that reference it with it.
    op.drop_column("project_workers", "held_back")
    op.drop_column("project_workers", "confusion")
    op.drop_column("projects", "crowd_model")
