"""The edge's outbox: feedback items and telemetry batches kept in a local SQLite file until
the server has them.

Each entry gets a client-generated id (a UUID) when it is queued; the server stores that id
and ignores an entry it already has, so a delivery retried after a lost response never
creates a second copy. An entry leaves the outbox only after the server acknowledged it,
and it survives a restart of the edge process (the file is the queue). Failed deliveries
wait longer each time (exponential back-off, capped).

A device can be cut off from its server for weeks, so each kind holds at most ``max_entries``
entries: past that, the oldest of that kind are dropped (and counted in :attr:`Outbox.dropped`),
since the newest inputs say most about what the model meets now, and a full disk would stop
the predictions too.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("feedback", "telemetry")
DEFAULT_MAX_ENTRIES = 100_000
"""Per kind: 100,000 feedback items of a few hundred bytes each is tens of MB on disk."""
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ix_outbox_due ON outbox (kind, next_at);
"""


@dataclass(frozen=True)
class Entry:
    id: str
    kind: str
    payload: dict[str, Any]
    attempts: int


class Outbox:
    """A durable FIFO of JSON payloads per kind; safe to use from several threads."""

    def __init__(
        self,
        path: Path,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_entries: int | None = DEFAULT_MAX_ENTRIES,
        on_drop: Callable[[str, int], None] | None = None,
    ) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be at least 1 (or None for no limit); got {max_entries}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.max_entries, self.on_drop = max_entries, on_drop
        self.dropped = dict.fromkeys(KINDS, 0)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
        self._db.executescript(SCHEMA)
        self._sizes = self._count()

    def _count(self) -> dict[str, int]:
        rows = self._db.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall()
        return {kind: dict(rows).get(kind, 0) for kind in KINDS}

    def put(self, kind: str, payload: dict[str, Any], entry_id: str | None = None) -> str:
        """Queue ``payload``; its id (given or a new UUID) is what the server dedupes on."""
        entry_id = entry_id or str(uuid.uuid4())
        with self._lock:
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO outbox (id, kind, payload, created) VALUES (?, ?, ?, ?)",
                (entry_id, kind, json.dumps(payload, default=str), time.time()),
            ).rowcount
            self._sizes[kind] = self._sizes.get(kind, 0) + inserted
            dropped = self._trim(kind)
        if dropped and self.on_drop is not None:
            self.on_drop(kind, dropped)
        return entry_id

    def _trim(self, kind: str) -> int:
        """Drop the oldest entries of ``kind`` beyond ``max_entries``; how many (caller holds the lock)."""
        excess = 0 if self.max_entries is None else self._sizes.get(kind, 0) - self.max_entries
        if excess <= 0:
            return 0
        self._db.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE kind = ? ORDER BY created, id LIMIT ?)",
            (kind, excess),
        )
        self._sizes[kind] -= excess
        self.dropped[kind] = self.dropped.get(kind, 0) + excess
        return excess

    def due(self, kind: str, limit: int = 100, now: float | None = None) -> list[Entry]:
        """The oldest entries of ``kind`` whose back-off has passed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, payload, attempts FROM outbox WHERE kind = ? AND next_at <= ? "
                "ORDER BY created, id LIMIT ?",
                (kind, time.time() if now is None else now, limit),
            ).fetchall()
        return [Entry(row[0], row[1], json.loads(row[2]), int(row[3])) for row in rows]

    def ack(self, ids: list[str]) -> None:
        """The server has these: remove them."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
            self._db.execute("COMMIT")
            self._sizes = self._count()

    def defer(self, entries: list[Entry]) -> float:
        """Delivery failed: try these again later; returns the wait of the first."""
        waits = [min(self.max_backoff, self.min_backoff * 2.0**e.attempts) for e in entries]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ? WHERE id = ?",
                [(time.time() + w, e.id) for w, e in zip(waits, entries, strict=True)],
            )
            self._db.execute("COMMIT")
        return waits[0] if waits else 0.0

    def size(self, kind: str | None = None) -> int:
        """How many entries wait (of ``kind``, or all)."""
        return sum(self._sizes.values()) if kind is None else self._sizes.get(kind, 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()
