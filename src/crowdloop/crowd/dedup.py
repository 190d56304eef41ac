"""Exact and near duplicate detection for imported items (pure functions, no I/O).

Exact duplicates: :func:`content_hash` is the SHA-256 of an item's canonical JSON after
:func:`normalize_fields`, so key order, Unicode composition (NFC) and whitespace do not
change it.

Near duplicates: MinHash estimates the Jaccard similarity ``|A ∩ B| / |A ∪ B|`` of two
shingle sets as the fraction of random permutations under which both sets have the same
minimum, because ``P[min h(A) = min h(B)] = J(A, B)`` (Broder 1997, "On the resemblance and
containment of documents"). LSH banding cuts each signature into ``bands`` bands of ``r``
rows; two items become candidates when some band is identical, which happens with
probability ``1 - (1 - s^r)^bands`` (Leskovec, Rajaraman, Ullman, *Mining of Massive
Datasets*, ch. 3). Candidates are then confirmed on the whole signature.

Shingles are the 5-byte windows of the lower-cased, normalised UTF-8 text; a text shorter
than 5 bytes is one shingle. Each shingle is mapped to a 32-bit key by multiply-shift, then
hashed ``num_perm`` times by the affine permutations ``x -> a*x + b (mod 2^64)`` with odd
random ``a``: ordered by their top bits these are the strongly universal multiply-add-shift
hashes (Dietzfelbinger 1996), and being bijections two minima agree only for the same
shingle. (Affine maps modulo a prime are the textbook choice; the 64-bit remainder made
them ten times slower in numpy.)

>>> a = "The quick brown fox jumps over the lazy dog near the old river bank on a windy day"
>>> b = "The quick brown fox jumps over the lazy dogs near the old river bank on a windy day"
>>> [(i, j) for i, j, _ in near_duplicate_pairs([a, b, "Something else entirely."])]
[(0, 1)]
>>> content_hash({"b": 1, "a": "x \\t y"}) == content_hash({"a": "x y", "b": 1})
True
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from crowdloop.errors import InvalidInputError, InvalidParameterError

__all__ = [
    "confirmed_pairs",
    "content_hash",
    "item_text",
    "lsh_band_keys",
    "minhash_signatures",
    "near_duplicate_pairs",
    "near_duplicates_of",
    "normalize_fields",
    "normalize_text",
    "pack_signatures",
    "pairs_from_signatures",
    "rows_with_keys",
    "signature_similarity",
    "truncated_signatures",
    "unpack_signatures",
]

SHINGLE_BYTES = 5
"""Shingle width k in bytes: 5 is the usual choice for short texts (MMDS §3.2.2)."""

_CHUNK_SHINGLES = 1 << 17  # shingles hashed per block: keeps the working set in cache
_CHUNK_PAIRS = 1 << 14  # candidate pairs compared per block: bounds the boolean temporary
_SHORT_LENGTH_SHIFT = np.uint64(8 * SHINGLE_BYTES)  # where a short text's length is stored
_BAND_SEED = 0x5EED  # fixed: band keys need only be consistent, not secret or varied

U64Array = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]
Pairs = list[tuple[int, int, float]]


# ---------------------------------------------------------------- exact duplicates


def normalize_text(text: str) -> str:
    """NFC, every run of whitespace (NBSP, tabs, newlines, ...) as one space, stripped.

    Copies of the same text pasted from different sources differ in exactly these ways.
    """
    return " ".join(unicodedata.normalize("NFC", text).split())


def normalize_fields(data: Mapping[str, object]) -> dict[str, object]:
    """``data`` with :func:`normalize_text` applied to every string, however deeply nested."""
    return {key: _normalize_value(value) for key, value in data.items()}


def _normalize_value(value: object) -> object:
    """Normalise strings inside dicts and lists; leave numbers, booleans and None alone."""
    if isinstance(value, str):
        return normalize_text(value)
    if isinstance(value, Mapping):
        return {key: _normalize_value(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_normalize_value(inner) for inner in value]
    return value


def content_hash(data: Mapping[str, object]) -> str:
    """SHA-256 hex of the canonical JSON of the normalised item: equal for exact duplicates."""
    try:
        canonical = json.dumps(normalize_fields(data), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    except TypeError as error:  # a value JSON cannot represent (a date, a set, ...)
        raise InvalidInputError(f"item cannot be hashed: {error}") from error
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def item_text(data: Mapping[str, object]) -> str:
    """The item's string fields (in key order, nested ones too) joined: what MinHash compares."""
    return normalize_text(" ".join(_strings(data)))


def _strings(value: object) -> list[str]:
    """Every string inside ``value``, dict entries in sorted key order so key order is moot."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [text for key in sorted(value) for text in _strings(value[key])]
    if isinstance(value, list | tuple):
        return [text for inner in value for text in _strings(inner)]
    return []


# ---------------------------------------------------------------- parameters


def _check_num_perm(num_perm: int) -> None:
    """Fail early on a signature length no caller can mean."""
    if num_perm < 1:
        raise InvalidParameterError(f"num_perm must be a positive integer, got {num_perm!r}.")


def _check_lsh(threshold: float, num_perm: int, bands: int) -> None:
    """Validate the LSH parameters together, naming the offending one and its range."""
    _check_num_perm(num_perm)
    if not 0 < threshold <= 1:
        raise InvalidParameterError(f"threshold must be in (0, 1], got {threshold!r}.")
    if bands < 1 or num_perm % bands:
        raise InvalidParameterError(f"bands must be a positive divisor of num_perm={num_perm}, got {bands!r}.")


def _check_signatures(signatures: np.ndarray, num_perm: int | None, name: str) -> None:
    """Signatures must come from :func:`minhash_signatures` (with the same ``num_perm``)."""
    shape_ok = signatures.ndim == 2 and signatures.shape[1] == (num_perm or signatures.shape[1])
    if signatures.dtype != np.uint64 or not shape_ok:
        raise InvalidParameterError(
            f"{name} must be a uint64 array of shape (n, {num_perm or 'num_perm'}) "
            "from minhash_signatures, "
            f"got dtype {signatures.dtype} and shape {signatures.shape}."
        )


# ---------------------------------------------------------------- MinHash


def minhash_signatures(texts: Sequence[str], num_perm: int = 64, random_state: int = 0) -> U64Array:
    """MinHash signatures, shape ``(len(texts), num_perm)``, of the texts' 5-byte shingle sets.

    Texts are lower-cased and normalised first. Signatures are only comparable with others
    made with the same ``num_perm`` and ``random_state``.
    """
    _check_num_perm(num_perm)
    key_multiplier, multipliers, increments = _hash_parameters(num_perm, random_state)
    keys, offsets = _shingle_keys(texts, key_multiplier)
    bounds = np.append(offsets, len(keys))
    signatures = np.empty((len(offsets), num_perm), dtype=np.uint64)
    for start, stop in _item_blocks(offsets, len(keys)):
        block_offsets = offsets[start:stop] - bounds[start]
        block_keys = keys[bounds[start] : bounds[stop]]
        signatures[start:stop] = _block_minima(block_keys, block_offsets, multipliers, increments)
    return signatures


def _encode(texts: Sequence[str]) -> tuple[npt.NDArray[np.uint8], IntArray]:
    """All texts, lower-cased and normalised, as one UTF-8 byte array plus each one's length."""
    encoded = [_prepare(text, index).encode("utf-8") for index, text in enumerate(texts)]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    padding = b"\0" * 8  # so an 8-byte read at the last byte stays inside the buffer
    return np.frombuffer(b"".join(encoded) + padding, dtype=np.uint8), lengths


def _prepare(text: object, index: int) -> str:
    """Lower-case and normalise one text; anything but a string is the caller's bug."""
    if not isinstance(text, str):
        raise InvalidInputError(f"texts[{index}] is {type(text).__name__}, not str.")
    return normalize_text(text.lower())


def _concat_ranges(starts: IntArray, counts: IntArray) -> IntArray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`` without the loop."""
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(counts.sum(), dtype=np.int64)


def _shingle_keys(texts: Sequence[str], key_multiplier: np.uint64) -> tuple[U64Array, IntArray]:
    """32-bit keys of every item's shingles, concatenated, and where each item's keys start.

    A shingle is read as one little-endian 8-byte word at its first byte and masked to its
    length; a text shorter than k keeps its length above the bytes, so "ab" and "ab\\0" differ.
    """
    buffer, lengths = _encode(texts)
    counts = np.maximum(lengths - (SHINGLE_BYTES - 1), 1)
    starts = np.cumsum(lengths) - lengths
    words = np.ndarray((max(len(buffer) - 7, 0),), dtype="<u8", buffer=buffer, strides=(1,))
    masks, tags = _masks(lengths)
    shingles = (words[_concat_ranges(starts, counts)] & np.repeat(masks, counts)) | np.repeat(tags, counts)
    keys = (shingles.astype(np.uint64) * key_multiplier) >> np.uint64(32)  # multiply-shift to 32 bits
    return keys, np.cumsum(counts) - counts


def _masks(lengths: IntArray) -> tuple[U64Array, U64Array]:
    """Per item: the mask keeping a shingle's bytes, and the length tag set on a short text."""
    width = np.minimum(lengths, SHINGLE_BYTES).astype(np.uint64)
    masks = (np.uint64(1) << (np.uint64(8) * width)) - np.uint64(1)
    tags = np.where(lengths < SHINGLE_BYTES, width + np.uint64(1), np.uint64(0)).astype(np.uint64)
    return masks, tags << _SHORT_LENGTH_SHIFT


def _hash_parameters(num_perm: int, random_state: int) -> tuple[np.uint64, U64Array, U64Array]:
    """From the seed: the odd multiplier that turns shingles into 32-bit keys, then the
    ``num_perm`` affine permutations ``x -> a*x + b (mod 2^64)`` with odd ``a``."""
    draws = np.random.default_rng(random_state).integers(0, 2**64, 1 + 2 * num_perm, dtype=np.uint64)
    odd = draws | np.uint64(1)
    return odd[0], odd[1 : 1 + num_perm], draws[1 + num_perm :]


def _item_blocks(offsets: IntArray, total: int) -> list[tuple[int, int]]:
    """Runs of whole items holding about ``_CHUNK_SHINGLES`` shingles each."""
    cuts = np.unique(np.searchsorted(offsets, np.arange(0, total, _CHUNK_SHINGLES)))
    bounds = [*cuts.tolist(), len(offsets)]
    return [(start, stop) for start, stop in itertools.pairwise(bounds) if stop > start]


def _block_minima(keys: U64Array, offsets: IntArray, multipliers: U64Array, increments: U64Array) -> U64Array:
    """Per item and permutation, the minimum of ``a*key + b`` over the item's shingles."""
    minima = np.empty((len(offsets), len(multipliers)), dtype=np.uint64)
    hashed = np.empty_like(keys)
    for column, (multiplier, increment) in enumerate(zip(multipliers, increments, strict=True)):
        np.multiply(keys, multiplier, out=hashed)
        hashed += increment
        minima[:, column] = np.minimum.reduceat(hashed, offsets)
    return minima


# ---------------------------------------------------------------- LSH


def signature_similarity(left: np.ndarray, right: np.ndarray) -> npt.NDArray[np.float64]:
    """Row-wise estimated Jaccard similarity: the fraction of signature positions that agree."""
    if left.shape[-1] == 0:
        return np.zeros(left.shape[:-1])
    similarity: npt.NDArray[np.float64] = np.count_nonzero(left == right, axis=-1) / left.shape[-1]
    return similarity


def near_duplicate_pairs(
    texts: Sequence[str],
    threshold: float = 0.8,
    num_perm: int = 64,
    bands: int = 16,
    random_state: int = 0,
) -> Pairs:
    """Pairs ``(i, j, similarity)``, ``i < j``, sorted, of texts with estimated Jaccard >= threshold.

    Exact duplicates are included with similarity 1.0, so a group of ``g`` equal texts gives
    ``g(g-1)/2`` pairs: callers usually drop exact duplicates first by :func:`content_hash`.
    """
    _check_lsh(threshold, num_perm, bands)
    return pairs_from_signatures(minhash_signatures(texts, num_perm, random_state), threshold, bands)


def pairs_from_signatures(signatures: U64Array, threshold: float = 0.8, bands: int = 16) -> Pairs:
    """:func:`near_duplicate_pairs` on signatures already computed (and perhaps stored)."""
    _check_signatures(signatures, None, "signatures")
    _check_lsh(threshold, signatures.shape[1], bands)
    keys = _band_keys(signatures, bands)
    left, right = _candidates(keys, keys)
    keep = left < right
    left, right = _unique_pairs(left[keep], right[keep], len(signatures))
    return _confirmed(left, right, signatures, signatures, threshold)


def near_duplicates_of(
    new_texts: Sequence[str],
    existing_signatures: U64Array,
    threshold: float = 0.8,
    bands: int = 16,
    num_perm: int = 64,
    random_state: int = 0,
) -> Pairs:
    """Pairs ``(index in new_texts, index in existing, similarity)`` with similarity >= threshold.

    ``existing_signatures`` must come from :func:`minhash_signatures` with the same
    ``num_perm`` and ``random_state``. Pairs among the new texts themselves are not reported
    (use :func:`near_duplicate_pairs` for those).
    """
    _check_lsh(threshold, num_perm, bands)
    _check_signatures(existing_signatures, num_perm, "existing_signatures")
    new_signatures = minhash_signatures(new_texts, num_perm, random_state)
    new, old = _candidates(_band_keys(new_signatures, bands), _band_keys(existing_signatures, bands))
    new, old = _unique_pairs(new, old, len(existing_signatures))
    return _confirmed(new, old, new_signatures, existing_signatures, threshold)


def _band_keys(signatures: U64Array, bands: int) -> U64Array:
    """One 64-bit key per item and band: a multiply-add hash of the band's rows.

    Each band has its own multipliers, so equal rows in two different bands give different
    keys and one column of keys can hold every band (as the stored index does). A chance
    collision is just an extra candidate that the full-signature check rejects.
    """
    rows = signatures.shape[1] // bands
    shaped = signatures.reshape(len(signatures), bands, rows)
    draws = np.random.default_rng(_BAND_SEED).integers(0, 2**64, (bands, rows), dtype=np.uint64)
    keys: U64Array = (shaped * (draws | np.uint64(1))).sum(axis=2, dtype=np.uint64)
    return keys


def lsh_band_keys(signatures: U64Array, bands: int) -> npt.NDArray[np.int64]:
    """The LSH band keys, shape ``(n, bands)``, as signed 64-bit integers (a SQL ``BIGINT``).

    Two items are near-duplicate candidates when they share any key, whatever its column:
    keys of different bands differ, so the keys of many items can be stored in one indexed
    column and a batch's candidates found with one lookup per key.
    """
    _check_signatures(signatures, None, "signatures")
    _check_lsh(1.0, signatures.shape[1], bands)
    return _band_keys(signatures, bands).view(np.int64)


def truncated_signatures(signatures: U64Array) -> npt.NDArray[np.uint32]:
    """The top 32 bits of each minimum: what is stored, and compared with what is stored.

    Two minima of different shingles share their top 32 bits with probability 2^-32, so the
    estimated similarity is the same as from the full signatures, at half the width.
    """
    _check_signatures(signatures, None, "signatures")
    return (signatures >> np.uint64(32)).astype(np.uint32)


def pack_signatures(signatures: U64Array) -> list[bytes]:
    """Each signature as bytes to store: :func:`truncated_signatures`, little-endian."""
    return [row.tobytes() for row in truncated_signatures(signatures).astype("<u4")]


def unpack_signatures(packed: Sequence[bytes], num_perm: int) -> npt.NDArray[np.uint32]:
    """Signatures from :func:`pack_signatures`, shape ``(len(packed), num_perm)``."""
    _check_num_perm(num_perm)
    if any(len(row) != 4 * num_perm for row in packed):
        raise InvalidInputError(f"a stored signature is not {4 * num_perm} bytes long (num_perm={num_perm}).")
    return np.frombuffer(b"".join(packed), dtype="<u4").reshape(len(packed), num_perm).astype(np.uint32)


def rows_with_keys(keys: npt.NDArray[np.int64], wanted: npt.NDArray[np.int64]) -> tuple[IntArray, IntArray]:
    """Pairs ``(row of keys, position in wanted)`` where the row has that key in some band:
    which items of a batch a key found in the stored index belongs to."""
    bands = max(keys.shape[1], 1) if keys.ndim == 2 else 1
    wanted_positions, flat_positions = _matches(wanted, keys.reshape(-1))
    return flat_positions // bands, wanted_positions


def confirmed_pairs(
    left: IntArray, right: IntArray, left_signatures: np.ndarray, right_signatures: np.ndarray, threshold: float
) -> Pairs:
    """Candidate pairs ``(left[k], right[k])`` (rows of the two signature arrays) whose
    estimated similarity reaches ``threshold``, with it. Works on full or packed signatures."""
    return _confirmed(left, right, left_signatures, right_signatures, threshold)


def _candidates(queries: U64Array, index: U64Array) -> tuple[IntArray, IntArray]:
    """All ``(query row, index row)`` pairs that share the key of at least one band."""
    found = [_matches(queries[:, band], index[:, band]) for band in range(queries.shape[1])]
    return np.concatenate([q for q, _ in found]), np.concatenate([i for _, i in found])


def _matches(queries: np.ndarray, index: np.ndarray) -> tuple[IntArray, IntArray]:
    """Pairs of positions with equal keys: sort both sides, then two binary searches.

    Sorting the queries too makes the searches walk memory in order, which is several
    times faster than searching for keys in random order.
    """
    order, query_order = np.argsort(index), np.argsort(queries)
    ordered, sorted_queries = index[order], queries[query_order]
    low = np.searchsorted(ordered, sorted_queries, side="left")
    counts = np.searchsorted(ordered, sorted_queries, side="right") - low
    query_rows = np.repeat(query_order, counts).astype(np.int64)
    return query_rows, order[_concat_ranges(low.astype(np.int64), counts)].astype(np.int64)


def _unique_pairs(left: IntArray, right: IntArray, width: int) -> tuple[IntArray, IntArray]:
    """Distinct pairs, sorted by ``(left, right)``: one pair may share several bands."""
    codes = np.unique(left * max(width, 1) + right)
    return codes // max(width, 1), codes % max(width, 1)


def _confirmed(
    left: IntArray, right: IntArray, left_signatures: np.ndarray, right_signatures: np.ndarray, threshold: float
) -> Pairs:
    """Candidates whose estimated similarity reaches the threshold, as plain tuples."""
    pairs: Pairs = []
    for start in range(0, len(left), _CHUNK_PAIRS):
        rows, cols = left[start : start + _CHUNK_PAIRS], right[start : start + _CHUNK_PAIRS]
        similarity = signature_similarity(left_signatures[rows], right_signatures[cols])
        keep = similarity >= threshold
        pairs += zip(rows[keep].tolist(), cols[keep].tolist(), similarity[keep].tolist(), strict=True)
    return pairs


def has_content(data: Any) -> bool:
    """Whether ``data`` is an object with at least one field that is not blank: what an item needs."""
    return isinstance(data, dict) and any(str(v).strip() for v in data.values() if v is not None)


def text_problem(text: str) -> str | None:
    """Why a database cannot store ``text`` (None: it can): PostgreSQL refuses a NUL character in
    text, and neither database takes text that is not valid Unicode (a lone surrogate, which JSON's
    ``\\ud800`` escape can carry). No pydantic here: the edge runtime imports this module."""
    if "\x00" in text:
        return "holds a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds text that is not valid Unicode (a lone surrogate)"
    return None


MAX_NESTING = 32
"""Levels of lists and objects an item's data may have: a body nested 600 deep ran this check out
of stack (a 500); no item a person labels is deeper than a few levels."""


def unstorable_reason(value: Any, where: str = "", depth: int = 0) -> str | None:
    """Why a value cannot be stored as it is (None: it can): NaN or infinity (PostgreSQL's JSON
    refuses them, and the whole import failed with a 500), a NUL character or text that is not
    valid Unicode (a lone surrogate), or nesting deeper than ``MAX_NESTING``. Each is now one
    rejected row, named."""
    if depth > MAX_NESTING:
        return f"{where or 'a field'} is nested more than {MAX_NESTING} levels deep"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where or 'a field'} is {value}, which JSON cannot store"
    if isinstance(value, str) and (problem := text_problem(value)) is not None:
        return f"{where or 'a field'} {problem}"
    if isinstance(value, dict):
        for key, inner in value.items():
            problem = unstorable_reason(str(key), "a field name") or unstorable_reason(
                inner, f"field {str(key)!r}", depth + 1
            )
            if problem:
                return problem
    if isinstance(value, list):
        return next((p for p in (unstorable_reason(inner, where, depth + 1) for inner in value) if p), None)
    return None
