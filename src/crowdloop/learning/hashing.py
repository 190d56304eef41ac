"""Hashed text features: the featurizer without a vocabulary, for label sets past one machine.

A vocabulary (:class:`~crowdloop.learning.text.Vocabulary`) needs every term of the corpus
in one place before the first row exists. Hashing does not: term :math:`t` goes to column
:math:`h(t) \\bmod B` (``B`` buckets), so any partition of items is featurised alone, and
the only global state is the bucket document frequencies :math:`\\mathrm{df}_b`, a sum of
per-partition counts (exact, whatever the partitioning). Rows are then built exactly as
with a vocabulary: :math:`x_b = (1 + \\ln \\mathrm{tf}_b)\\,\\mathrm{idf}_b`, with
:math:`\\mathrm{idf}_b = \\ln\\frac{1 + n}{1 + \\mathrm{df}_b} + 1`, L2-normalised.

The hash is CRC-32 of the term's UTF-8 bytes (:func:`zlib.crc32`, in the standard library
of every Python), not Spark's ``HashingTF`` (MurmurHash3 over Spark's own string encoding),
so the edge computes the same columns with numpy and the standard library only.

:class:`HashedFeaturizer` is a :class:`~crowdloop.learning.features.Featurizer` whose text
vocabularies are :class:`HashedVocabulary`: pairs, numeric and categorical fields, the
dense and sparse layouts, :class:`~crowdloop.learning.train.TrainedModel` and the ONNX
export all work unchanged. Its JSON state holds ``"kind": "hashed"``.

Example:
    >>> items = [{"task": 1, "text": "red apple"}, {"task": 2, "text": "green apple"}]
    >>> HashedFeaturizer(FeatureSpec(text=("text",)), n_buckets=64).fit(items).transform_dense(items).shape
    (2, 64)
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import lru_cache
from itertools import chain
from typing import Any, Self

import numpy as np

from crowdloop.errors import InvalidParameterError
from crowdloop.learning.features import FeatureSpec, Featurizer, Items, _names, _State, column
from crowdloop.learning.text import Analyzer, Rows, Vocabulary, _count, _unique_counts

DEFAULT_BUCKETS = 2**16
"""Columns per text vocabulary: few collisions for short texts, a dense edge input of 256 KiB."""

Frequencies = dict[str, tuple[np.ndarray, int]]
"""Vocabulary key → (bucket document frequencies, number of documents)."""


@lru_cache(maxsize=262_144)
def term_hash(term: str) -> int:
    """CRC-32 of the UTF-8 bytes: stable across processes, machines and Python versions."""
    return zlib.crc32(term.encode("utf-8"))


def buckets(terms: Sequence[str], n_buckets: int) -> np.ndarray:
    """Column of every term (int64)."""
    hashes = np.fromiter(map(term_hash, terms), dtype=np.int64, count=len(terms))
    return hashes % n_buckets


def _rows_and_buckets(documents: Sequence[Sequence[str]], n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    flat = list(chain.from_iterable(documents))
    rows = np.repeat(np.arange(len(documents)), [len(doc) for doc in documents])
    return rows, buckets(flat, n_buckets)


def document_frequency(documents: Sequence[Sequence[str]], n_buckets: int) -> np.ndarray:
    """How many documents hit each bucket (additive over any split of the documents)."""
    rows, cols = _rows_and_buckets(documents, n_buckets)
    pairs, _ = _unique_counts(rows * n_buckets + cols)
    return np.bincount(pairs % n_buckets, minlength=n_buckets).astype(np.int64)


class HashedVocabulary(Vocabulary):
    """``n_buckets`` hashed columns and their idf (ones when ``use_idf`` is off).

    Bucket ``b`` is named ``#b``; no term list is kept.
    """

    def __init__(self, df: np.ndarray, n_documents: int, use_idf: bool = True) -> None:
        self.df = np.asarray(df, dtype=np.int64)
        self.n_documents = int(n_documents)
        self.use_idf = use_idf
        self.terms = [f"#{b}" for b in range(len(self.df))]
        self.index = {}
        self.idf = (np.log((1.0 + n_documents) / (1.0 + self.df)) + 1.0) if use_idf else np.ones(len(self.df))

    def __repr__(self) -> str:
        return f"HashedVocabulary(n_buckets={self.n_buckets}, n_documents={self.n_documents}, use_idf={self.use_idf})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HashedVocabulary):
            return NotImplemented
        same = (self.n_documents, self.use_idf) == (other.n_documents, other.use_idf)
        return same and np.array_equal(self.df, other.df)

    __hash__ = None  # type: ignore[assignment]

    @property
    def n_buckets(self) -> int:
        return len(self.df)

    @classmethod
    def fit_hashed(cls, documents: Sequence[Sequence[str]], n_buckets: int, use_idf: bool = True) -> HashedVocabulary:
        """Bucket document frequencies of ``documents``."""
        return cls(document_frequency(documents, n_buckets), len(documents), use_idf)

    def counts(self, documents: Sequence[Sequence[str]]) -> Rows:
        """Term counts per document, summed per bucket."""
        rows, cols = _rows_and_buckets(documents, self.n_buckets)
        return _count(rows, cols, len(documents), self.n_buckets)

    def to_dict(self) -> dict[str, Any]:
        """Document frequencies as integers: shorter than idf floats, and idf follows exactly."""
        return {"df": self.df.tolist(), "n_documents": self.n_documents, "use_idf": self.use_idf}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HashedVocabulary:
        return cls(np.asarray(data["df"], dtype=np.int64), int(data["n_documents"]), bool(data["use_idf"]))


class HashedFeaturizer(Featurizer):
    """A :class:`Featurizer` whose text and pair fields are hashed into ``n_buckets`` columns.

    :meth:`frequencies` and :meth:`fit_frequencies` split :meth:`fit` in two so a cluster
    can count each partition and sum (text and pair fields only: numeric scales and
    category lists are not sums).
    """

    def __init__(
        self,
        spec: FeatureSpec,
        analyzer: Analyzer | None = None,
        n_buckets: int = DEFAULT_BUCKETS,
        use_idf: bool = True,
    ) -> None:
        if n_buckets < 1:
            raise InvalidParameterError(f"n_buckets must be a positive integer; got {n_buckets}.")
        super().__init__(spec, analyzer, min_df=1, max_terms=None)
        self.n_buckets = int(n_buckets)
        self.use_idf = use_idf

    def _vocabulary(self, texts: list[Any]) -> Vocabulary:
        return HashedVocabulary.fit_hashed([self.analyzer.terms(t) for t in texts], self.n_buckets, self.use_idf)

    def _documents(self, items: Items) -> dict[str, list[tuple[str, ...]]]:
        docs = {name: [self.analyzer.terms(t) for t in column(items, name)] for name in self.spec.text}
        for left, right in self.spec.pair:
            texts = column(items, left) + column(items, right)
            docs[f"{left}|{right}"] = [self.analyzer.terms(t) for t in texts]
        return docs

    def frequencies(self, items: Items) -> Frequencies:
        """Bucket document frequencies of ``items``, per vocabulary (sum them with :func:`add_frequencies`)."""
        self._check_hashable()
        return {
            key: (document_frequency(docs, self.n_buckets), len(docs)) for key, docs in self._documents(items).items()
        }

    def fit_frequencies(self, frequencies: Frequencies) -> Self:
        """The fitted state from frequencies summed over all items; return ``self``."""
        self._check_hashable()
        state = _State()
        for key, (df, n_documents) in frequencies.items():
            state.vocabularies[key] = HashedVocabulary(df, n_documents, self.use_idf)
        state.names = _names(self.spec, state)
        self._state = state
        return self

    def _check_hashable(self) -> None:
        if self.spec.numeric or self.spec.categorical:
            raise InvalidParameterError(
                "fitting from bucket frequencies takes text and pair fields only; "
                f"drop numeric {list(self.spec.numeric)} and categorical {list(self.spec.categorical)} fields."
            )

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as JSON; feature names are left out (they follow from the spec)."""
        data = super().to_dict()
        del data["feature_names"]
        return {**data, "kind": "hashed", "n_buckets": self.n_buckets, "use_idf": self.use_idf}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HashedFeaturizer:
        spec, analyzer = FeatureSpec.from_dict(data["spec"]), Analyzer.from_dict(data["analyzer"])
        featurizer = cls(spec, analyzer, int(data["n_buckets"]), bool(data["use_idf"]))
        vocabularies: dict[str, Vocabulary] = {
            k: HashedVocabulary.from_dict(v) for k, v in data["vocabularies"].items()
        }
        numeric = {k: (float(v[0]), float(v[1]), float(v[2])) for k, v in data["numeric"].items()}
        split = bool(data.get("numeric_split", False))  # saved before numbers were split: one column
        state = _State(vocabularies, numeric, dict(data["categories"]), numeric_split=split)
        state.names = _names(spec, state)
        featurizer._state = state
        return featurizer


def add_frequencies(left: Frequencies, right: Frequencies) -> Frequencies:
    """Frequencies of two disjoint sets of items together."""
    return {key: (left[key][0] + right[key][0], left[key][1] + right[key][1]) for key in left}


def load_featurizer(data: dict[str, Any]) -> Featurizer:
    """A featurizer from its JSON state, hashed or not."""
    if data.get("kind") == "hashed":
        return HashedFeaturizer.from_dict(data)
    return Featurizer.from_dict(data)
