"""Features from an item's fields, as the project declares them: numpy only, JSON state.

A :class:`FeatureSpec` names the fields; a :class:`Featurizer` learns vocabularies and
scales from items and turns items into one row of numbers each:

==============  =============================================================
text field      word 1-2-gram and character 3-5-gram TF-IDF (:mod:`.text`)
pair (a, b)     TF-IDF of each side (one shared vocabulary), their shared
                terms :math:`x_a \\odot x_b` and 9 similarity scores (:mod:`.pairs`)
numeric         :math:`z = (x - \\mu)/\\sigma` as two columns, :math:`\\max(z, 0)` and
                :math:`\\max(-z, 0)`; missing values imputed with the median
categorical     one-hot; a category unseen in training gives all zeros
==============  =============================================================

A number is two non-negative columns so that every family can read it: complement naive Bayes
refuses negative inputs, and a linear model loses nothing (:math:`z` is their difference). A
featurizer saved before this (no ``numeric_split`` in its JSON) keeps its one signed column.

Nothing here imports pandas, scipy or scikit-learn at module level, and the fitted state
(:meth:`Featurizer.to_dict`) is plain JSON, so an edge device with only numpy can load it
and compute exactly the inputs the model was trained on (:meth:`Featurizer.transform_dense`).

Example:
    >>> items = [{"task": 1, "text": "red apple"}, {"task": 2, "text": "green apple"}]
    >>> Featurizer(FeatureSpec(text=("text",)), min_df=1).fit(items).transform_dense(items).shape[0]
    2
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from crowdloop.errors import EmptyInputError, InvalidInputError, MissingColumnsError, NotFittedError
from crowdloop.learning.pairs import PAIR_FEATURES, pair_features, shared_terms
from crowdloop.learning.text import Analyzer, Rows, Vocabulary, from_dense, hstack
from crowdloop.numbers import is_plain_number, plain

Items = Any
"""A pandas DataFrame or a sequence of mappings (one per item)."""

PAIR_SUFFIXES = (("", "_b"), ("_a", "_b"), ("_left", "_right"), ("1", "2"))


def columns_of(items: Items) -> list[str]:
    """Column names of a frame, or every field any record has (in the order first seen)."""
    if hasattr(items, "columns"):
        return [str(c) for c in items.columns]
    return list(dict.fromkeys(str(k) for record in items for k in record))


def column(items: Items, name: str) -> list[Any]:
    """One field of every item, as a list."""
    if hasattr(items, "columns"):
        if name not in items.columns:
            raise MissingColumnsError(f"items have no {name!r} column; they have {columns_of(items)}.")
        return list(items[name].tolist())
    return [record.get(name) for record in items]


def shown(value: Any) -> str:
    """A value as an error message shows it, type and all: ``1007 (int)``, ``'t1' (str)``, not
    ``np.int64(1007)``; ids that never match are often numbers on one side and text on the other."""
    scalar = plain(value)
    return f"{scalar!r} ({type(scalar).__name__})"


def item_ids(items: Items, id_column: str) -> Any:
    """The items' ids (a pandas Index): the ``id_column`` of each, all present and each once."""
    import pandas as pd

    if hasattr(items, "columns") and id_column not in items.columns:
        raise MissingColumnsError(f"items have no id column {id_column!r}; they have {columns_of(items)}.")
    ids = pd.Index(column(items, id_column))
    if ids.hasnans:
        raise InvalidInputError(f"{int(ids.isna().sum())} item(s) have no {id_column!r}.")
    if ids.has_duplicates:
        raise InvalidInputError(f"{id_column} {shown(ids[ids.duplicated()][0])} names more than one item; one each.")
    return ids


@dataclass(frozen=True)
class FeatureSpec:
    """Which item fields feed the model and how; ``id_column`` names each item."""

    text: tuple[str, ...] = ()
    pair: tuple[tuple[str, str], ...] = ()
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    id_column: str = "task"

    def __post_init__(self) -> None:
        for kind in ("text", "numeric", "categorical"):  # text="title" means one field, not five letters
            value = getattr(self, kind)
            object.__setattr__(self, kind, (value,) if isinstance(value, str) else tuple(value))
        pairs = (self.pair,) if len(self.pair) == 2 and all(isinstance(p, str) for p in self.pair) else self.pair
        object.__setattr__(self, "pair", tuple(tuple(p) for p in pairs))

    @property
    def fields(self) -> list[str]:
        return [*self.text, *(c for p in self.pair for c in p), *self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        pairs = tuple((str(a), str(b)) for a, b in data.get("pair", ()))
        plain = {k: tuple(data.get(k, ())) for k in ("text", "numeric", "categorical")}
        return cls(pair=pairs, id_column=str(data.get("id_column", "task")), **plain)

    @classmethod
    def infer(cls, items: Items, id_column: str = "task", max_categories: int = 20) -> FeatureSpec:
        """Guess the spec from a DataFrame: ``x``/``x_b`` text columns form a pair,
        numbers are numeric, short strings with at most ``max_categories`` values that
        repeat (no more distinct values than 80% of the items) are categorical, other
        strings are text: on a few items, a handful of distinct titles is text, not a category."""
        names = [c for c in columns_of(items) if c != id_column]
        pairs = _find_pairs(items, names)
        paired = {c for p in pairs for c in p}
        text: list[str] = []
        numeric: list[str] = []
        categorical: list[str] = []
        for name in (n for n in names if n not in paired):
            kind = _kind(column(items, name), max_categories)
            {"text": text, "numeric": numeric, "categorical": categorical}[kind].append(name)
        return cls(tuple(text), tuple(pairs), tuple(numeric), tuple(categorical), id_column)


def _is_texty(values: list[Any]) -> bool:
    return any(isinstance(v, str) for v in values)


def _numeric_value(value: Any) -> bool:
    if isinstance(value, str):
        return is_plain_number(value.strip())
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def _find_pairs(items: Items, names: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for left_suffix, right_suffix in PAIR_SUFFIXES:
        for name in names:
            if not name.endswith(right_suffix):
                continue
            base = name[: len(name) - len(right_suffix)] + left_suffix
            if base in names and base != name and _is_texty(column(items, base)) and _is_texty(column(items, name)):
                pairs.append((base, name))
    return sorted(set(pairs))


def _kind(values: list[Any], max_categories: int) -> str:
    present = [v for v in values if v is not None and not (isinstance(v, float) and v != v) and v != ""]
    if all(_numeric_value(v) for v in present):
        return "numeric"  # numbers, or text that is plainly one (a CSV's "12.5": items keep text as written)
    distinct = {str(v) for v in present}
    short = np.mean([len(str(v).split()) for v in present]) <= 3 if present else True
    repeated = len(distinct) <= 0.8 * len(present)
    return "categorical" if len(distinct) <= max_categories and repeated and short else "text"


@dataclass
class _State:
    vocabularies: dict[str, Vocabulary] = field(default_factory=dict)
    numeric: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    numeric_split: bool = True
    """Numbers as two non-negative columns (above and below the mean); False: one signed column."""


class Featurizer:
    """Learn the feature state from items (:meth:`fit`), then turn items into rows.

    ``min_df`` and ``max_terms`` bound each vocabulary (a pair's two sides share one).
    Fitted attributes: ``feature_names_`` and ``n_features_``.
    """

    def __init__(
        self, spec: FeatureSpec, analyzer: Analyzer | None = None, min_df: int = 2, max_terms: int | None = 50_000
    ) -> None:
        self.spec = spec
        self.analyzer = analyzer or Analyzer()
        self.min_df = min_df
        self.max_terms = max_terms
        self._state: _State | None = None

    def fit(self, items: Items) -> Self:
        """Learn vocabularies, idf, scales and categories from ``items``; return ``self``."""
        _check_items(items, self.spec)
        state = _State()
        for name in self.spec.text:
            state.vocabularies[name] = self._vocabulary(column(items, name))
        for left, right in self.spec.pair:
            state.vocabularies[f"{left}|{right}"] = self._vocabulary(column(items, left) + column(items, right))
        for name in self.spec.numeric:
            state.numeric[name] = _scale(column(items, name))
        for name in self.spec.categorical:
            state.categories[name] = sorted({_category(v) for v in column(items, name)} - {""})
        state.names = _names(self.spec, state)
        self._state = state
        return self

    def _vocabulary(self, texts: list[Any]) -> Vocabulary:
        return Vocabulary.fit([self.analyzer.terms(t) for t in texts], self.min_df, self.max_terms)

    @property
    def state(self) -> _State:
        if self._state is None:
            raise NotFittedError("Featurizer is not fitted yet: call fit(items) first.")
        return self._state

    @property
    def feature_names_(self) -> list[str]:
        return self.state.names

    @property
    def n_features_(self) -> int:
        return len(self.state.names)

    def transform_rows(self, items: Items) -> Rows:
        """Features of ``items`` as a numpy CSR block (float64 values)."""
        _check_items(items, self.spec)
        state = self.state
        blocks = [self._tfidf(state, name, column(items, name)) for name in self.spec.text]
        for left, right in self.spec.pair:
            blocks.extend(self._pair(state, left, right, column(items, left), column(items, right)))
        for name in self.spec.numeric:
            scaled = _standard(column(items, name), *state.numeric[name])
            blocks.append(from_dense(split_signs(scaled) if state.numeric_split else scaled))
        blocks.extend(from_dense(_one_hot(column(items, n), state.categories[n])) for n in self.spec.categorical)
        return hstack(blocks)

    def _tfidf(self, state: _State, key: str, texts: list[Any]) -> Rows:
        return state.vocabularies[key].tfidf([self.analyzer.terms(t) for t in texts])

    def _pair(self, state: _State, left: str, right: str, a: list[Any], b: list[Any]) -> list[Rows]:
        side_a, side_b = (self._tfidf(state, f"{left}|{right}", texts) for texts in (a, b))
        shared = shared_terms(side_a, side_b)
        return [side_a, side_b, shared, from_dense(pair_features(a, b, shared))]

    def transform_dense(self, items: Items) -> np.ndarray:
        """Features as a dense ``float32`` array: what the ONNX model takes on the edge."""
        return self.transform_rows(items).dense()

    def transform(self, items: Items) -> Any:
        """Features as a ``float32`` scipy CSR matrix (for scikit-learn)."""
        from scipy import sparse

        rows = self.transform_rows(items)
        shape = (rows.n_rows, rows.n_cols)
        return sparse.csr_matrix((rows.data.astype(np.float32), rows.indices, rows.indptr), shape=shape)

    def fit_transform(self, items: Items) -> Any:
        return self.fit(items).transform(items)

    def to_dict(self) -> dict[str, Any]:
        """The whole fitted state as JSON-ready data."""
        state = self.state
        return {
            "spec": self.spec.to_dict(),
            "analyzer": self.analyzer.to_dict(),
            "min_df": self.min_df,
            "max_terms": self.max_terms,
            "vocabularies": {k: v.to_dict() for k, v in state.vocabularies.items()},
            "numeric": {k: list(v) for k, v in state.numeric.items()},
            "categories": state.categories,
            "feature_names": state.names,
            "numeric_split": state.numeric_split,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Featurizer:
        spec, analyzer = FeatureSpec.from_dict(data["spec"]), Analyzer.from_dict(data["analyzer"])
        featurizer = cls(spec, analyzer, int(data["min_df"]), data["max_terms"])
        vocabularies = {k: Vocabulary.from_dict(v) for k, v in data["vocabularies"].items()}
        numeric = {k: (float(v[0]), float(v[1]), float(v[2])) for k, v in data["numeric"].items()}
        split = bool(data.get("numeric_split", False))  # saved before numbers were split: one column
        featurizer._state = _State(vocabularies, numeric, dict(data["categories"]), list(data["feature_names"]), split)
        return featurizer

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> Featurizer:
        """Read a saved featurizer, vocabulary-based or hashed (``"kind": "hashed"``, e.g. trained on Spark)."""
        data = json.loads(Path(path).read_text())
        if data.get("kind") == "hashed" and cls is Featurizer:
            from crowdloop.learning.hashing import HashedFeaturizer  # here: hashing builds on this module

            return HashedFeaturizer.from_dict(data)
        return cls.from_dict(data)


def _check_items(items: Items, spec: FeatureSpec) -> None:
    if len(items) == 0:
        raise EmptyInputError("no items to featurise.")
    if not spec.fields:
        raise InvalidInputError("the feature spec names no field: give text, pair, numeric or categorical columns.")
    missing = sorted(set(spec.fields) - set(columns_of(items)))
    if missing:
        raise MissingColumnsError(f"items lack the feature column(s) {missing}; they have {columns_of(items)}.")


def _floats(values: Sequence[Any]) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, value in enumerate(values):
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _scale(values: Sequence[Any]) -> tuple[float, float, float]:
    """Median (for imputation), mean and standard deviation (1 when constant or empty)."""
    x = _floats(values)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 0.0, 0.0, 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(x.mean()), float(x.std())
    if not (np.isfinite(mean) and np.isfinite(std)):  # values near the float limit: sums and squares overflowed
        top = float(np.abs(x).max())
        mean, std = top * float((x / top).mean()), top * float((x / top).std())
    return float(np.median(x)), mean, std if std > 0 else 1.0


Z_LIMIT = 1e6
"""Standardised numbers are clipped to ±this. No training value reaches it (a z-score among n
values is at most √n, :func:`_scale` keeping the mean and deviation finite), but a new one can:
1e308 was ``inf`` in the edge's float32 (and, over a standard deviation under 1, in float64),
and the model's probabilities NaN."""


def _standard(values: Sequence[Any], median: float, mean: float, std: float) -> np.ndarray:
    x = _floats(values)
    with np.errstate(over="ignore"):
        scaled = (np.where(np.isfinite(x), x, median) - mean) / std
    return np.clip(scaled, -Z_LIMIT, Z_LIMIT).reshape(-1, 1)


def split_signs(scaled: np.ndarray) -> np.ndarray:
    """``(n, 1)`` signed values as ``(n, 2)``: the part above zero and the part below, both >= 0."""
    return np.hstack([np.maximum(scaled, 0.0), np.maximum(-scaled, 0.0)])


def _category(value: Any) -> str:
    """A categorical value as imports store it (NFC, blanks collapsed and trimmed): the model learnt
    ``red`` from the platform's items, and the edge, given `` red `` as typed, did not know it. The
    rule is ``crowd.dedup.normalize_text``'s, written out: the edge's modules import only numpy."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return " ".join(unicodedata.normalize("NFC", str(value)).split())


def _one_hot(values: Sequence[Any], categories: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(categories)}
    out = np.zeros((len(values), len(categories)))
    for row, value in enumerate(values):
        if _category(value) in index:
            out[row, index[_category(value)]] = 1.0
    return out


def _names(spec: FeatureSpec, state: _State) -> list[str]:
    names = [f"{n}:{t}" for n in spec.text for t in state.vocabularies[n].terms]
    for left, right in spec.pair:
        terms = state.vocabularies[f"{left}|{right}"].terms
        names += [f"{left}:{t}" for t in terms] + [f"{right}:{t}" for t in terms] + [f"both:{t}" for t in terms]
        names += [f"{left}~{right}:{f}" for f in PAIR_FEATURES]
    names += [f"{n}:{side}" for n in spec.numeric for side in "+-"] if state.numeric_split else list(spec.numeric)
    return names + [f"{n}={c}" for n in spec.categorical for c in state.categories[n]]
