"""Keep no part of the admin token: api_tokens.prefix of CROWDLOOP_ADMIN_TOKEN's token is "env:"

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:00:00

The token from CROWDLOOP_ADMIN_TOKEN was stored as its SHA-256 hash and, in clear, "env:" plus its
first 6 characters: a person's chosen token, with its start given away, is easily found from the hash.
Existing rows keep the marker only (it is how a change of the variable finds the old token to revoke).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_tokens = sa.table("api_tokens", sa.column("prefix", sa.String()))


def upgrade() -> None:
    op.execute(_tokens.update().where(_tokens.c.prefix.startswith("env:")).values(prefix="env:"))


def downgrade() -> None:
    pass  # the characters are gone, and nothing needs them
