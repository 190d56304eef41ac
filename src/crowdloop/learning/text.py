"""Text to numbers with numpy and ``re`` only: the part of featurisation the edge runs too.

Why our own code and not scikit-learn's ``TfidfVectorizer``: a deployed model runs on a
device with only numpy and onnxruntime, and its probabilities must equal the server's.
ONNX's tokeniser differs from scikit-learn's (and ``char_wb`` has no converter), so the
text steps live here, in plain Python that both sides import:

* :func:`normalise` — HTML entities decoded, Unicode NFKC, lower case (``str.lower``,
  locale-free), whitespace collapsed.
* :func:`word_ngrams` — word tokens ``\\w+`` and their n-grams (``w:`` prefix).
* :func:`char_ngrams` — character n-grams inside word boundaries, each word padded with
  one space (``char_wb`` style, ``c:`` prefix), robust to spelling and model codes.
* :class:`Vocabulary` — terms kept by document frequency and their smoothed idf,
  :math:`\\mathrm{idf}(t) = \\ln\\frac{1 + n}{1 + \\mathrm{df}(t)} + 1`; rows are
  :math:`x_t = (1 + \\ln \\mathrm{tf}_t)\\,\\mathrm{idf}(t)` (sublinear tf), L2-normalised.

Rows travel as :class:`Rows`, a CSR triple of numpy arrays, and become a dense
``float32`` array with :meth:`Rows.dense` (the edge) or a scipy matrix elsewhere.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain, repeat
from typing import Any

import numpy as np

WORD = re.compile(r"\w+")
SPACES = re.compile(r"\s+")


def normalise(text: Any) -> str:
    """Canonical form of a field value: ``None``/NaN become ``""``."""
    if text is None or (isinstance(text, float) and text != text):
        return ""
    value = unicodedata.normalize("NFKC", html.unescape(str(text)))
    return SPACES.sub(" ", value.lower()).strip()


def words(text: str) -> list[str]:
    """Word tokens of a normalised text."""
    return WORD.findall(text)


def word_ngrams(tokens: Sequence[str], low: int, high: int) -> list[str]:
    """Word n-grams of length ``low..high`` (joined by a space), prefixed ``w:``."""
    grams: list[str] = []
    for n in range(low, high + 1):
        grams.extend("w:" + " ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return grams


def char_ngrams(tokens: Sequence[str], low: int, high: int) -> list[str]:
    """Character n-grams of each space-padded word, prefixed ``c:``; a short word counts once."""
    return list(chain.from_iterable(_word_chars(token, low, high) for token in tokens))


@lru_cache(maxsize=262_144)
def _word_chars(token: str, low: int, high: int) -> tuple[str, ...]:
    padded = f" {token} "
    grams: list[str] = []
    for n in range(low, high + 1):
        if n >= len(padded):
            grams.append("c:" + padded)
            break
        grams.extend("c:" + padded[i : i + n] for i in range(len(padded) - n + 1))
    return tuple(grams)


@dataclass(frozen=True)
class Analyzer:
    """Which n-grams a text yields; ``(0, 0)`` switches a kind off."""

    word: tuple[int, int] = (1, 2)
    char: tuple[int, int] = (3, 5)

    def terms(self, text: Any) -> tuple[str, ...]:
        """The n-grams of one field value (cached: fit and transform of one text analyse it once)."""
        return _terms(self, text) if isinstance(text, str) else self._analyse(text)

    def _analyse(self, text: Any) -> tuple[str, ...]:
        tokens = words(normalise(text))
        grams = word_ngrams(tokens, *self.word) if self.word[0] > 0 else []
        if self.char[0] > 0:
            grams.extend(char_ngrams(tokens, *self.char))
        return tuple(grams)

    def to_dict(self) -> dict[str, list[int]]:
        return {"word": list(self.word), "char": list(self.char)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analyzer:
        return cls(word=(int(data["word"][0]), int(data["word"][1])), char=(int(data["char"][0]), int(data["char"][1])))


@lru_cache(maxsize=32_768)
def _terms(analyzer: Analyzer, text: str) -> tuple[str, ...]:
    return analyzer._analyse(text)


@dataclass(frozen=True)
class Rows:
    """A sparse row block in CSR form: row ``i`` holds ``data[indptr[i]:indptr[i+1]]``."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    n_cols: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def dense(self) -> np.ndarray:
        """The block as a dense ``float32`` array (what an ONNX model takes)."""
        out = np.zeros((self.n_rows, self.n_cols), dtype=np.float32)
        rows = np.repeat(np.arange(self.n_rows), np.diff(self.indptr))
        np.add.at(out, (rows, self.indices), self.data)
        return out

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Column indices and values of row ``i``."""
        start, end = self.indptr[i], self.indptr[i + 1]
        return self.indices[start:end], self.data[start:end]


@dataclass
class Vocabulary:
    """Terms (index = position) and their idf, fitted on a corpus of term lists."""

    terms: list[str]
    idf: np.ndarray
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {term: i for i, term in enumerate(self.terms)}

    @classmethod
    def fit(cls, documents: Sequence[Sequence[str]], min_df: int = 2, max_terms: int | None = None) -> Vocabulary:
        """Keep terms in at least ``min_df`` documents, the ``max_terms`` most frequent."""
        flat = list(chain.from_iterable(documents))
        seen = {term: i for i, term in enumerate(dict.fromkeys(flat))}
        ids = np.fromiter(map(seen.__getitem__, flat), dtype=np.int64, count=len(flat))
        rows = np.repeat(np.arange(len(documents)), [len(doc) for doc in documents])
        pairs, _ = _unique_counts(rows * max(len(seen), 1) + ids)
        df = np.bincount(pairs % max(len(seen), 1), minlength=len(seen))
        terms = np.array(list(seen), dtype=object)
        order = np.lexsort((terms, -df))
        kept = [i for i in order[:max_terms] if df[i] >= min_df]
        kept.sort(key=lambda i: terms[i])
        idf = np.log((1.0 + len(documents)) / (1.0 + df[kept].astype(np.float64))) + 1.0
        return cls([str(terms[i]) for i in kept], idf)

    def counts(self, documents: Sequence[Sequence[str]]) -> Rows:
        """Term counts per document; unknown terms are dropped."""
        flat = list(chain.from_iterable(documents))
        ids = np.fromiter(map(self.index.get, flat, repeat(-1, len(flat))), dtype=np.int64, count=len(flat))
        rows = np.repeat(np.arange(len(documents)), [len(doc) for doc in documents])
        known = ids >= 0
        return _count(rows[known], ids[known], len(documents), len(self.terms))

    def tfidf(self, documents: Sequence[Sequence[str]]) -> Rows:
        """Sublinear tf times idf, each row scaled to unit L2 norm (empty rows stay zero)."""
        counts = self.counts(documents)
        values = (1.0 + np.log(counts.data)) * self.idf[counts.indices]
        return Rows(counts.indptr, counts.indices, _l2_rows(counts.indptr, values), counts.n_cols)

    def to_dict(self) -> dict[str, Any]:
        return {"terms": self.terms, "idf": self.idf.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        return cls(list(data["terms"]), np.asarray(data["idf"], dtype=np.float64))


def _unique_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and their counts (a sort: faster than hashing here)."""
    ordered = np.sort(keys)
    first = np.concatenate([[True], ordered[1:] != ordered[:-1]]) if ordered.size else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    return ordered[starts], np.diff(np.append(starts, ordered.size))


def _count(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> Rows:
    """CSR counts of (row, column) occurrences."""
    keys, counts = _unique_counts(rows * max(n_cols, 1) + cols)
    rows_of = keys // max(n_cols, 1)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows_of, minlength=n_rows))]).astype(np.int64)
    return Rows(indptr, (keys % max(n_cols, 1)).astype(np.int64), counts.astype(np.float64), n_cols)


def _l2_rows(indptr: np.ndarray, values: np.ndarray) -> np.ndarray:
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    norms = np.sqrt(np.bincount(rows, weights=values**2, minlength=len(indptr) - 1))
    return values / np.where(norms > 0, norms, 1.0)[rows]


def hstack(blocks: Sequence[Rows]) -> Rows:
    """Blocks side by side (same number of rows), columns offset block after block."""
    n_rows = blocks[0].n_rows
    offsets = np.cumsum([0, *[b.n_cols for b in blocks]])
    rows = np.concatenate([np.repeat(np.arange(n_rows), np.diff(b.indptr)) for b in blocks])
    cols = np.concatenate([b.indices + start for b, start in zip(blocks, offsets, strict=False)])
    data = np.concatenate([b.data for b in blocks])
    order = np.argsort(rows, kind="stable")  # within a row: block order, then sorted columns
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))]).astype(np.int64)
    return Rows(indptr, cols[order].astype(np.int64), data[order].astype(np.float64), int(offsets[-1]))


def from_dense(values: np.ndarray) -> Rows:
    """A dense 2-D array as a :class:`Rows` block (zeros dropped)."""
    mask = values != 0
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int64)
    return Rows(indptr, np.nonzero(mask)[1].astype(np.int64), values[mask].astype(np.float64), values.shape[1])
