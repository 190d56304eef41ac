"""Similarity features of a pair of texts (matching, de-duplication), numpy and ``re`` only.

For texts :math:`a, b` with TF-IDF rows :math:`x_a, x_b` (unit norm), word sets
:math:`W_a, W_b`, character 3-gram sets :math:`C_a, C_b` and code sets :math:`D_a, D_b`
(tokens holding a digit: model numbers, sizes, prices):

* ``cosine`` :math:`x_a \\cdot x_b`;
* ``word_jaccard`` :math:`|W_a \\cap W_b| / |W_a \\cup W_b|`, ``word_containment``
  :math:`|W_a \\cap W_b| / \\min(|W_a|, |W_b|)`, ``char_jaccard`` likewise on 3-grams;
* ``code_jaccard`` on :math:`D`, ``code_shared`` (1 if a code is common to both),
  ``code_conflict`` (1 if both have codes and share none);
* ``first_word_equal`` (brand), ``length_ratio`` :math:`\\min(|W|)/\\max(|W|)`.

:func:`shared_terms` is the element-wise product :math:`x_a \\odot x_b`: a row whose
non-zeros are the n-grams both sides share, so a linear model learns which shared terms
matter (the same model number) and which do not (the same category word).
Entity-matching features in this spirit: Konda et al., *Magellan*, VLDB 2016.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from crowdloop.learning.text import Rows, char_ngrams, normalise, words

DIGIT = re.compile(r"\d")
PAIR_FEATURES = (
    "cosine",
    "word_jaccard",
    "word_containment",
    "char_jaccard",
    "code_jaccard",
    "code_shared",
    "code_conflict",
    "first_word_equal",
    "length_ratio",
)


def _ratio(shared: int, total: int) -> float:
    return shared / total if total else 0.0


def _set_scores(left: set[str], right: set[str]) -> tuple[float, float]:
    shared = len(left & right)
    return _ratio(shared, len(left | right)), _ratio(shared, min(len(left), len(right)))


def _code_scores(left: set[str], right: set[str]) -> tuple[float, float, float]:
    shared = len(left & right)
    both = bool(left) and bool(right)
    return _ratio(shared, len(left | right)), float(shared > 0), float(both and shared == 0)


def _text_scores(a: object, b: object) -> list[float]:
    """Every feature but ``cosine`` for one pair of raw texts."""
    wa, wb = words(normalise(a)), words(normalise(b))
    jaccard, containment = _set_scores(set(wa), set(wb))
    chars, _ = _set_scores(set(char_ngrams(wa, 3, 3)), set(char_ngrams(wb, 3, 3)))
    codes = _code_scores({w for w in wa if DIGIT.search(w)}, {w for w in wb if DIGIT.search(w)})
    first = float(bool(wa) and bool(wb) and wa[0] == wb[0])
    length = _ratio(min(len(wa), len(wb)), max(len(wa), len(wb)))
    return [jaccard, containment, chars, *codes, first, length]


def _row_product(left: Rows, right: Rows, i: int) -> tuple[np.ndarray, np.ndarray]:
    cols_a, vals_a = left.row(i)
    cols_b, vals_b = right.row(i)
    shared, at_a, at_b = np.intersect1d(cols_a, cols_b, assume_unique=True, return_indices=True)
    return shared, vals_a[at_a] * vals_b[at_b]


def shared_terms(left: Rows, right: Rows) -> Rows:
    """Element-wise product of two TF-IDF blocks over the same vocabulary."""
    products = [_row_product(left, right, i) for i in range(left.n_rows)]
    indptr = np.concatenate([[0], np.cumsum([len(cols) for cols, _ in products])]).astype(np.int64)
    indices = np.concatenate([cols for cols, _ in products] or [np.zeros(0)]).astype(np.int64)
    data = np.concatenate([vals for _, vals in products] or [np.zeros(0)]).astype(np.float64)
    return Rows(indptr, indices, data, left.n_cols)


def pair_features(a: Sequence[object], b: Sequence[object], shared: Rows) -> np.ndarray:
    """The :data:`PAIR_FEATURES` of each pair, shape ``(n, 9)``, given their :func:`shared_terms`."""
    cosine = np.bincount(np.repeat(np.arange(shared.n_rows), np.diff(shared.indptr)), shared.data, shared.n_rows)
    rest = np.array([_text_scores(x, y) for x, y in zip(a, b, strict=True)], dtype=np.float64)
    return np.column_stack([cosine, rest.reshape(len(cosine), len(PAIR_FEATURES) - 1)])
