"""The edge's outbox: feedback items and telemetry batches kept in a local SQLite file until
the server has them.

Each entry gets a client-generated id (a UUID) when it is queued; the server stores that id
and ignores an entry it already has, so a delivery retried after a lost response never
creates a second copy. An entry leaves the outbox only after the server acknowledged it,
and it survives a restart of the edge process (the file is the queue). Failed deliveries
wait longer each time (exponential back-off, capped).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KINDS = ("feedback", "telemetry")
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

    def __init__(self, path: Path, min_backoff: float = 0.5, max_backoff: float = 30.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
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
        return entry_id

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
