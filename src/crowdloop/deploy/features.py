"""One item's features, fast: the edge's path through the training featurizer's own state.

:meth:`Featurizer.transform_dense` is written for batches (numpy over thousands of rows);
for one item its fixed costs dominate. :class:`ItemFeatures` computes the same row with
dict look-ups over the same fitted state and the same analyser, pair scores and scaling
functions (imported from :mod:`crowdloop.learning`, so training and edge cannot drift),
and writes only the non-zero columns into a reused buffer. ``tests/deploy`` checks the
rows are equal to :meth:`Featurizer.transform_dense`'s on real items.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from crowdloop.errors import MissingColumnsError
from crowdloop.learning.features import Z_LIMIT, Featurizer, _category, _floats
from crowdloop.learning.pairs import PAIR_FEATURES, _text_scores

Sparse = dict[int, float]
"""Column → value of one item's non-zero features."""
Packed = tuple[np.ndarray, np.ndarray]
"""Columns (``intp``) and values (the row's type) of one item's non-zero features."""


MISSING = ""
"""The value of a field an item lacks: empty, as the server reads gold items without the field
(``learning.project_data.with_fields``); ``None``, NaN and ``""`` give the same features in every kind."""


def check_fields(item: Any, fields: list[str], what: str = "the item") -> None:
    """Refuse an item that is not an object or has none of ``fields`` (it can only be a mistake:
    another project's items, or misspelt names), naming the fields the model reads."""
    if not isinstance(item, dict):
        kind = type(item).__name__
        raise MissingColumnsError(f"{what} is a {kind}, not an object of fields; the model reads {fields}.")
    if not any(name in item for name in fields):
        has = sorted(str(name) for name in item)
        raise MissingColumnsError(f"{what} has none of the fields the model reads, {fields}; it has {has}.")


@dataclass(frozen=True)
class _Table:
    """A vocabulary as plain Python: term → (column, idf), for cheap single look-ups."""

    terms: dict[str, tuple[int, float]]
    size: int

    @classmethod
    def of(cls, featurizer: Featurizer, key: str) -> _Table:
        vocabulary = featurizer.state.vocabularies[key]
        idf = vocabulary.idf.tolist()
        return cls({term: (i, idf[i]) for i, term in enumerate(vocabulary.terms)}, len(idf))

    def tfidf(self, terms: tuple[str, ...]) -> Sparse:
        """Sublinear tf times idf over the known terms, L2-normalised (as :meth:`Vocabulary.tfidf`)."""
        get = self.terms.get
        values = {}
        for term, n in Counter(terms).items():
            hit = get(term)
            if hit is not None:
                values[hit[0]] = (1.0 + math.log(n)) * hit[1] if n > 1 else hit[1]
        norm = math.sqrt(math.fsum(v * v for v in values.values()))
        return {col: v / norm for col, v in values.items()} if norm > 0 else {}


class ItemFeatures:
    """Dense feature rows of single items, equal to the featurizer's; thread-safe."""

    def __init__(self, featurizer: Featurizer, dtype: str = "float32", cache_size: int = 4096) -> None:
        self.featurizer = featurizer
        self.spec = featurizer.spec
        self.analyzer = featurizer.analyzer
        self.dtype = np.dtype(dtype)
        self.n_features = featurizer.n_features_
        self._tables = {name: _Table.of(featurizer, name) for name in self.spec.text}
        self._tables.update({f"{a}|{b}": _Table.of(featurizer, f"{a}|{b}") for a, b in self.spec.pair})
        self._local = threading.local()
        self._fields = self.spec.fields
        self._memo = lru_cache(maxsize=cache_size)(self._packed)

    def columns(self, item: dict[str, Any]) -> Sparse:
        """The item's non-zero features as column → value."""
        cols, values = self.packed(item)
        return dict(zip(cols.tolist(), values.astype(np.float64).tolist(), strict=True))

    def packed(self, item: dict[str, Any]) -> Packed:
        """The item's non-zero columns and their values; repeated items come from a cache.

        A field the item lacks is read as empty (:data:`MISSING`), as training and the server's
        scoring read an item without it: a version that reads a new field serves clients that do
        not send it yet. An item with none of the model's fields is refused (:func:`check_fields`).
        """
        try:
            key = tuple((type(item[name]), item[name]) for name in self._fields)  # 1, 1.0, True differ
        except KeyError:
            check_fields(item, self._fields)
            key = tuple((type(value), value) for value in (item.get(name, MISSING) for name in self._fields))
        try:
            return self._memo(key)
        except TypeError:  # an unhashable field value: compute without the cache
            return self._packed(key)

    def _packed(self, values: tuple[Any, ...]) -> Packed:
        out = self._compute({name: value for name, (_, value) in zip(self._fields, values, strict=True)})
        return np.fromiter(out, dtype=np.intp, count=len(out)), np.array(list(out.values()), dtype=self.dtype)

    def _compute(self, item: dict[str, Any]) -> Sparse:
        out: Sparse = {}
        offset = 0
        for name in self.spec.text:
            offset = self._text(out, offset, self._tables[name], item[name])
        for left, right in self.spec.pair:
            offset = self._pair(out, offset, self._tables[f"{left}|{right}"], item[left], item[right])
        for name in self.spec.numeric:
            offset = self._numeric(out, offset, name, item[name])
        for name in self.spec.categorical:
            offset = self._categorical(out, offset, name, item[name])
        return out

    def _text(self, out: Sparse, offset: int, table: _Table, value: Any) -> int:
        for col, v in table.tfidf(self.analyzer.terms(value)).items():
            out[offset + col] = v
        return offset + table.size

    def _pair(self, out: Sparse, offset: int, table: _Table, a: Any, b: Any) -> int:
        side_a, side_b = table.tfidf(self.analyzer.terms(a)), table.tfidf(self.analyzer.terms(b))
        shared = {col: v * side_b[col] for col, v in sorted(side_a.items()) if col in side_b}
        for block, values in enumerate((side_a, side_b, shared)):
            for col, v in values.items():
                out[offset + block * table.size + col] = v
        offset += 3 * table.size
        scores = [sum(shared.values()), *_text_scores(a, b)]
        for k, score in enumerate(scores):
            if score != 0:
                out[offset + k] = score
        return offset + len(PAIR_FEATURES)

    def _numeric(self, out: Sparse, offset: int, name: str, value: Any) -> int:
        median, mean, std = self.featurizer.state.numeric[name]
        x = float(_floats([value])[0])
        scaled = min(max(((x if math.isfinite(x) else median) - mean) / std, -Z_LIMIT), Z_LIMIT)
        if not self.featurizer.state.numeric_split:
            if scaled != 0:
                out[offset] = scaled
            return offset + 1
        if scaled != 0:  # above the mean in the first column, below it in the second
            out[offset + (scaled < 0)] = abs(scaled)
        return offset + 2

    def _categorical(self, out: Sparse, offset: int, name: str, value: Any) -> int:
        categories = self.featurizer.state.categories[name]
        key = _category(value)
        if key in categories:
            out[offset + categories.index(key)] = 1.0
        return offset + len(categories)

    def row(self, item: dict[str, Any]) -> np.ndarray:
        """A fresh ``(1, n_features)`` row."""
        out = np.zeros((1, self.n_features), dtype=self.dtype)
        cols, values = self.packed(item)
        out[0, cols] = values
        return out

    def fill(self, item: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """The item's row in this thread's reused buffer, and its non-zero columns.

        Give the columns back to :meth:`clear` once the row has been used.
        """
        buffer = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = np.zeros((1, self.n_features), dtype=self.dtype)
        cols, values = self.packed(item)
        buffer[0, cols] = values
        return buffer, cols

    def clear(self, cols: np.ndarray) -> None:
        self._local.buffer[0, cols] = 0.0
