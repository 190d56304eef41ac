"""An admin token stored before the "env:" marker gets it: api_tokens.prefix not "cl_..." is "env:"

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 12:30:00

Before the marker the token from CROWDLOOP_ADMIN_TOKEN was stored with its first 10 characters as
its prefix, in clear, and 0010 only rewrote the prefixes that had the marker: a token such as
"change-me" stayed in the database whole. Only a restart with the same token gave it the marker, so
an operator who changed the variable as they upgraded kept the old token working beside the new one.

Tokens the server issues all start with "cl_" (crowd.auth.TOKEN_PREFIX); any other prefix is a
token that came from the variable. One chosen to start with "cl_" cannot be told apart from an
issued one: it keeps its prefix and, as before, gets the marker at the first start that still has it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_tokens = sa.table("api_tokens", sa.column("prefix", sa.String()))


def upgrade() -> None:
    issued = sa.or_(_tokens.c.prefix.startswith("cl_", autoescape=True), _tokens.c.prefix == "env:")
    op.execute(_tokens.update().where(sa.not_(issued)).values(prefix="env:"))


def downgrade() -> None:
    pass  # the characters are gone, and nothing needs them
