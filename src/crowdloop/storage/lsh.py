"""The stored LSH index of imported items (table ``item_lsh_bands``) and their signatures.

A repository: it moves band keys and packed MinHash signatures in and out of the database
and knows nothing of how they are computed (that is ``crowd.dedup``). Keys travel as arrays,
never row by row through the ORM: an import of 5,000 items writes 40,000 keys.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from crowdloop.storage.models import Item

__all__ = ["add_band_keys", "items_sharing_keys", "stored_signatures"]

I64Array = npt.NDArray[np.int64]

_PG_PROBE = text(
    "SELECT q.band_key, b.item_id FROM unnest(CAST(:keys AS BIGINT[])) AS q(band_key) "
    "CROSS JOIN LATERAL (SELECT item_id FROM item_lsh_bands "
    "WHERE project_id = :project AND band_key = q.band_key OFFSET 0) AS b"
)
"""One index lookup per key. ``OFFSET 0`` keeps the subquery from being flattened into a join
the planner might run as a hash join over the whole (millions of rows) table."""

_SQLITE_PROBE = text(
    "SELECT band_key, item_id FROM item_lsh_bands "
    "WHERE project_id = :project AND band_key IN (SELECT value FROM json_each(:keys))"
)
"""The IN list drives the primary-key lookups; as a join, SQLite would scan the project's rows
once per key."""

# PostgreSQL binary COPY: a header, then per row the field count and each field's length and value.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\0" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_COPY_SQL = "COPY item_lsh_bands (project_id, band_key, item_id) FROM STDIN (FORMAT BINARY)"
_COPY_ROW = np.dtype(
    [("fields", ">i2"), ("project_len", ">i4"), ("project_id", ">i4"), ("key_len", ">i4"), ("band_key", ">i8"),
     ("item_len", ">i4"), ("item_id", ">i8")]
)  # fmt: skip


def add_band_keys(session: Session, project_id: int, item_ids: I64Array, keys: I64Array) -> None:
    """Store ``keys[k]`` (one row per band) as the band keys of item ``item_ids[k]``."""
    rows_ids, rows_keys = _distinct_rows(item_ids.astype(np.int64), keys)
    if not len(rows_ids):
        return
    if session.get_bind().dialect.name == "postgresql":
        _copy_rows(session, project_id, rows_ids, rows_keys)
        return
    records = list(zip([project_id] * len(rows_ids), rows_keys.tolist(), rows_ids.tolist(), strict=True))
    session.connection().exec_driver_sql(
        "INSERT INTO item_lsh_bands (project_id, band_key, item_id) VALUES (?, ?, ?)", records
    )


def _distinct_rows(item_ids: I64Array, keys: I64Array) -> tuple[I64Array, I64Array]:
    """One row per (item, key): two bands of one item with the same key are stored once."""
    flat_ids = np.repeat(item_ids, keys.shape[1] if keys.ndim == 2 else 0)
    pairs = np.unique(np.stack([flat_ids, keys.reshape(-1)], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _copy_rows(session: Session, project_id: int, item_ids: I64Array, keys: I64Array) -> None:
    """All rows in one binary ``COPY``, built by numpy: no Python work per row."""
    rows = np.empty(len(item_ids), dtype=_COPY_ROW)
    rows["fields"], rows["project_len"], rows["key_len"], rows["item_len"] = 3, 4, 8, 8
    rows["project_id"], rows["band_key"], rows["item_id"] = project_id, keys, item_ids
    raw = session.connection().connection.driver_connection
    if raw is None:
        raise RuntimeError("no driver connection for COPY")
    with raw.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:
        copy.write(_COPY_HEADER + rows.tobytes() + _COPY_TRAILER)


def items_sharing_keys(session: Session, project_id: int, keys: I64Array) -> tuple[I64Array, I64Array]:
    """``(key, item id)`` of every stored band key of the project's items that is among ``keys``."""
    distinct = np.unique(keys).tolist()
    if not distinct:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(_PG_PROBE, {"keys": distinct, "project": project_id}).all()
    else:
        rows = session.execute(_SQLITE_PROBE, {"keys": _json_array(distinct), "project": project_id}).all()
    found = np.array(rows, dtype=np.int64).reshape(len(rows), 2)
    return found[:, 0], found[:, 1]


def _json_array(values: list[int]) -> str:
    return "[" + ",".join(map(str, values)) + "]"


def stored_signatures(session: Session, project_id: int, item_ids: Sequence[int]) -> dict[int, bytes]:
    """Packed signatures of those of ``item_ids`` that are the project's and have one, by id."""
    found: dict[int, bytes] = {}
    for start in range(0, len(item_ids), _IDS_PER_QUERY):
        chunk = list(item_ids[start : start + _IDS_PER_QUERY])
        query = select(Item.id, Item.minhash).where(
            Item.project_id == project_id, Item.id.in_(chunk), Item.minhash.is_not(None)
        )
        found.update((int(row.id), bytes(row.minhash)) for row in session.execute(query))
    return found


_IDS_PER_QUERY = 10_000
"""Below SQLite's limit on bound parameters (32,766)."""
