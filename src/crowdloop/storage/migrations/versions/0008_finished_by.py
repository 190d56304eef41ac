"""Why a project finished: projects.finished_by ("rule": its last item got its label; "owner")

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 11:40:00

Items an edge device sends back put a project that finished by the rule back to work, but not
one its owner finished by hand (to stop spending); see ``deploy/service.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("finished_by", sa.String(length=20), nullable=True))


def downgrade() -> None:
    op.drop_column("projects", "finished_by")
