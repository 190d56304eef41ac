"""edge devices: feedback items they sent back and their telemetry batches

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import crowdloop.storage.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edge_feedback",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=12), nullable=False),
        sa.Column("label", sa.JSON(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("created_at", crowdloop.storage.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "client_id", name="uq_edge_feedback_client"),
    )
    op.create_index(op.f("ix_edge_feedback_project_id"), "edge_feedback", ["project_id"], unique=False)
    op.create_table(
        "edge_telemetry",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.Column("confidence_mean", sa.Float(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("started_at", crowdloop.storage.models.UTCDateTime(), nullable=False),
        sa.Column("ended_at", crowdloop.storage.models.UTCDateTime(), nullable=False),
        sa.Column("received_at", crowdloop.storage.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["users.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "batch_id", name="uq_edge_telemetry_batch"),
    )
    op.create_index("ix_edge_telemetry_version", "edge_telemetry", ["project_id", "model_version"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_edge_telemetry_version", table_name="edge_telemetry")
    op.drop_table("edge_telemetry")
    op.drop_index(op.f("ix_edge_feedback_project_id"), table_name="edge_feedback")
    op.drop_table("edge_feedback")
