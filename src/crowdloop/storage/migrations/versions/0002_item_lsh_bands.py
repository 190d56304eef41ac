"""item LSH bands: stored band keys and MinHash signatures for near duplicates

Each import now finds its near-duplicate candidates among all the project's items with an
index lookup per band key, instead of re-reading and re-hashing the 20,000 most recent
texts. Items already in the database get their signature and band keys here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 11:10:00
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

from crowdloop.crowd.dedup import item_text, lsh_band_keys, minhash_signatures, pack_signatures
from crowdloop.storage.lsh import add_band_keys

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NUM_PERM, BANDS = 64, 8
"""As crowd.near_duplicates had them at this revision: what the backfilled rows must match."""
BATCH = 5_000

_items = sa.table(
    "items",
    sa.column("id", sa.BigInteger),
    sa.column("project_id", sa.Integer),
    sa.column("data", sa.JSON),
    sa.column("minhash", sa.LargeBinary),
)


def upgrade() -> None:
    op.create_table(
        "item_lsh_bands",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("band_key", sa.BigInteger(), nullable=False),
        sa.Column("item_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "band_key", "item_id"),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("minhash", sa.LargeBinary(), nullable=True))
    _backfill(op.get_bind())


def downgrade() -> None:
    # Plain ALTER TABLE (SQLite >= 3.35), as 0005 and 0007: a batch copy drops ``items`` on SQLite,
    # and the ON DELETE CASCADE of answers, assignments and labels emptied them with it.
    op.drop_column("items", "minhash")
    op.drop_table("item_lsh_bands")


def _backfill(connection: sa.Connection) -> None:
    """Signatures and band keys of the items already stored, in id order, a batch at a time."""
    session = Session(bind=connection)
    last = 0
    while rows := _next_batch(connection, last):
        last = rows[-1].id
        texts = [item_text(row.data) if isinstance(row.data, dict) else "" for row in rows]
        signatures = minhash_signatures(texts, num_perm=NUM_PERM)
        packed = pack_signatures(signatures)
        update = _items.update().where(_items.c.id == sa.bindparam("item_id")).values(minhash=sa.bindparam("packed"))
        connection.execute(update, [{"item_id": row.id, "packed": p} for row, p in zip(rows, packed, strict=True)])
        ids = np.array([row.id for row in rows], dtype=np.int64)
        projects = np.array([row.project_id for row in rows], dtype=np.int64)
        keys = lsh_band_keys(signatures, BANDS)
        for project_id in np.unique(projects).tolist():
            mine = projects == project_id
            add_band_keys(session, project_id, ids[mine], keys[mine])


def _next_batch(connection: sa.Connection, after: int) -> list[sa.Row[tuple[int, int, object]]]:
    query = sa.select(_items.c.id, _items.c.project_id, _items.c.data).where(_items.c.id > after)
    return list(connection.execute(query.order_by(_items.c.id).limit(BATCH)).all())
