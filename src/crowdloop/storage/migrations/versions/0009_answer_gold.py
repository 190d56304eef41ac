"""Whether an answer was a gold answer: answers.gold

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 15:00:00

Undo reversed an answer's gold counts by whether its item is gold today, but a review decision
(or a gold file over items already there) makes an item gold after regular answers on it: undoing
one took a gold answer the worker never had off their record, or was refused as "already
corrected by training feedback" when no feedback was given. Each answer now remembers it.

Existing answers are marked gold where their item is gold and was not made gold by a review
decision (whose answers were all given before it, as regular answers). An item a gold file made
gold after it had answers cannot be told apart: its earlier answers count as gold, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_answers = sa.table("answers", sa.column("item_id", sa.BigInteger()), sa.column("gold", sa.Boolean()))
_items = sa.table("items", sa.column("id", sa.BigInteger()), sa.column("is_gold", sa.Boolean()))
_labels = sa.table("item_labels", sa.column("item_id", sa.BigInteger()), sa.column("method", sa.String()))


def upgrade() -> None:
    op.add_column("answers", sa.Column("gold", sa.Boolean(), nullable=False, server_default=sa.false()))
    gold_items = sa.select(_items.c.id).where(_items.c.is_gold.is_(True))
    reviewed = sa.select(_labels.c.item_id).where(_labels.c.method == "review")
    op.execute(
        _answers.update()
        .where(_answers.c.item_id.in_(gold_items), _answers.c.item_id.not_in(reviewed))
        .values(gold=True)
    )


def downgrade() -> None:
    # Plain ALTER TABLE (SQLite >= 3.35), as 0007: a batch copy would drop the table and cascade.
    op.drop_column("answers", "gold")
