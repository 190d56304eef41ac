"""A webhook backs off as a whole when its receiver fails: webhooks.failures, retry_at, failing_since

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 09:30:00

Deliveries were retried each on its own schedule, one after another in the dispatcher's thread, so
a receiver that timed out cost every one of its due deliveries ten seconds or more, and every
other project's webhooks waited behind them. A webhook now counts its failed tries in a row, and
none of its deliveries is sent before its ``retry_at``; ``failing_since`` (its first failure of
those) ends the deliveries held back once the receiver has failed for the whole retry horizon.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from crowdloop.storage.models import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("webhooks", sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("webhooks", sa.Column("retry_at", UTCDateTime(), nullable=True))
    op.add_column("webhooks", sa.Column("failing_since", UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("webhooks", "failing_since")
    op.drop_column("webhooks", "retry_at")
    op.drop_column("webhooks", "failures")
