"""Near duplicates of newly imported items, against every item the project already holds.

Each imported item's LSH band keys are stored (``item_lsh_bands``) with its packed MinHash
signature (``items.minhash``). A new batch then finds its candidates with one indexed lookup
per band key among *all* the project's earlier items, reads back only those candidates'
signatures, and confirms them on the estimated Jaccard similarity; no earlier text is read
or hashed again, so the cost of an import does not grow with the size of the project.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import update
from sqlalchemy.orm import Session

from crowdloop.crowd.dedup import (
    IntArray,
    U64Array,
    confirmed_pairs,
    lsh_band_keys,
    pairs_from_signatures,
    rows_with_keys,
    truncated_signatures,
    unpack_signatures,
)
from crowdloop.storage.lsh import add_band_keys, items_sharing_keys, stored_signatures
from crowdloop.storage.models import Item

__all__ = ["NEAR_BANDS", "NEAR_PERM", "NEAR_THRESHOLD", "Pairs", "index_and_find", "mark_near_duplicates"]

NEAR_PERM, NEAR_BANDS, NEAR_THRESHOLD = 64, 8, 0.8
"""Eight bands of eight rows: pairs at 0.9 similarity are found 99% of the time, pairs at 0.5
(shared boilerplate) become candidates 3% of the time, so templated items stay cheap."""

Pairs = list[tuple[int, int, float]]


def index_and_find(session: Session, project_id: int, item_ids: Sequence[int], signatures: U64Array) -> Pairs:
    """Store the band keys of just-inserted items and return their near duplicates.

    Pairs are ``(later item id, earlier item id, similarity)``: among the new items
    themselves, and against every item of the project stored before them.
    """
    if not len(item_ids):
        return []
    ids = np.asarray(item_ids, dtype=np.int64)
    keys = lsh_band_keys(signatures, NEAR_BANDS)
    found_keys, found_ids = items_sharing_keys(session, project_id, keys)  # before our own keys are in
    add_band_keys(session, project_id, ids, keys)
    pairs = _among(ids, signatures)
    if len(found_ids):
        new_rows, found_rows = rows_with_keys(keys, found_keys)
        pairs += _against_earlier(session, project_id, ids, signatures, new_rows, found_ids[found_rows])
    return pairs


def _among(ids: IntArray, signatures: U64Array) -> Pairs:
    """Pairs within the batch, the later id first."""
    found = pairs_from_signatures(signatures, NEAR_THRESHOLD, NEAR_BANDS)
    return [(int(max(ids[i], ids[j])), int(min(ids[i], ids[j])), s) for i, j, s in found]


def _against_earlier(
    session: Session, project_id: int, ids: IntArray, signatures: U64Array, new_rows: IntArray, old_ids: IntArray
) -> Pairs:
    """Candidates ``(new_rows[k], old_ids[k])`` confirmed on the earlier items' stored signatures."""
    candidates = np.unique(np.stack([new_rows, old_ids], axis=1), axis=0)
    stored = stored_signatures(session, project_id, np.unique(candidates[:, 1]).tolist())
    known = np.isin(candidates[:, 1], np.fromiter(stored, dtype=np.int64, count=len(stored)))
    candidates = candidates[known]
    if not len(candidates):
        return []
    old_order = sorted(stored)
    old_signatures = unpack_signatures([stored[item_id] for item_id in old_order], signatures.shape[1])
    old_rows = np.searchsorted(np.array(old_order, dtype=np.int64), candidates[:, 1])
    found = confirmed_pairs(
        candidates[:, 0], old_rows, truncated_signatures(signatures), old_signatures, NEAR_THRESHOLD
    )
    return [(int(ids[i]), int(old_order[j]), s) for i, j, s in found]


def mark_near_duplicates(session: Session, pairs: Pairs) -> None:
    """Set ``near_duplicate_of`` of each new item to its most similar earlier item (ties: the oldest)."""
    best: dict[int, tuple[float, int]] = {}
    for new_id, other_id, similarity in pairs:
        if new_id not in best or (-similarity, other_id) < (-best[new_id][0], best[new_id][1]):
            best[new_id] = (similarity, other_id)
    if best:
        values = [{"id": new_id, "near_duplicate_of": other} for new_id, (_, other) in sorted(best.items())]
        session.execute(update(Item), values)
