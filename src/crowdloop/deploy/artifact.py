"""A model artifact's fingerprint, shared by the registry and the edge (standard library only)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def artifact_digest(directory: Path) -> str:
    """SHA-256 over every file's relative path and bytes, in sorted order (stable across copies)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()
