"""The hashed featurizer: a stable hash, additive frequencies, the Featurizer's layout, JSON state."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crowdloop.errors import InvalidParameterError
from crowdloop.learning import FeatureSpec, Featurizer, train_model
from crowdloop.learning.hashing import (
    HashedFeaturizer,
    HashedVocabulary,
    add_frequencies,
    buckets,
    load_featurizer,
    term_hash,
)

EDGE_ALLOWED = {"numpy", "crowdloop.errors", "crowdloop.learning.text", "crowdloop.learning.features"}


def test_hash_is_crc32_of_utf8_and_fixed_forever():
    # Pinned values: a deployed model's columns depend on them.
    assert term_hash("w:apple") == 2119053917
    assert term_hash("c: äp") == 2105996166
    assert buckets(["w:apple", "c: äp"], 1000).tolist() == [917, 166]


def test_vocabulary_counts_tfidf_and_idf_per_bucket():
    docs = [["a", "b"], ["a", "a"], []]
    vocab = HashedVocabulary.fit_hashed(docs, n_buckets=2**20)
    col_a, col_b = buckets(["a", "b"], 2**20)
    assert vocab.df[col_a] == 2 and vocab.df[col_b] == 1 and vocab.df.sum() == 3
    np.testing.assert_allclose(vocab.idf[[col_a, col_b]], np.log(4 / np.array([3, 2])) + 1)
    dense = vocab.tfidf(docs).dense()
    assert dense[1, col_a] == pytest.approx(1.0) and not dense[2].any()
    np.testing.assert_allclose(np.linalg.norm(dense[:2], axis=1), 1, rtol=1e-6)


def test_frequencies_of_parts_add_up_to_the_whole(rte):
    spec = FeatureSpec.infer(rte.items)
    whole = HashedFeaturizer(spec, n_buckets=512).fit(rte.items)
    parts = [rte.items.iloc[:300], rte.items.iloc[300:]]
    summed = add_frequencies(*(whole.frequencies(part) for part in parts))
    again = HashedFeaturizer(spec, n_buckets=512).fit_frequencies(summed)
    assert again.to_dict() == whole.to_dict()
    head = rte.items.head(20)
    np.testing.assert_array_equal(again.transform_dense(head), whole.transform_dense(head))


def test_pair_layout_matches_the_vocabulary_featurizer(rte):
    spec = FeatureSpec.infer(rte.items)
    hashed = HashedFeaturizer(spec, n_buckets=256).fit(rte.items)
    plain = Featurizer(spec).fit(rte.items)
    assert hashed.n_features_ == 3 * 256 + 9
    tail = slice(-9, None)  # the pair scores do not depend on the vocabulary, but cosine does
    assert hashed.feature_names_[tail] == plain.feature_names_[tail]
    rows = hashed.transform_dense(rte.items.head(50))
    np.testing.assert_allclose(rows[:, -8:], plain.transform_dense(rte.items.head(50))[:, -8:], rtol=1e-6)


def test_state_is_json_and_loads_by_kind(rte):
    featurizer = HashedFeaturizer(FeatureSpec.infer(rte.items), n_buckets=128).fit(rte.items)
    data = json.loads(json.dumps(featurizer.to_dict()))
    assert data["kind"] == "hashed" and "feature_names" not in data
    again = load_featurizer(data)
    assert isinstance(again, HashedFeaturizer) and again.feature_names_ == featurizer.feature_names_
    head = rte.items.head(10)
    np.testing.assert_array_equal(again.transform_dense(head), featurizer.transform_dense(head))
    assert not isinstance(
        load_featurizer(Featurizer(FeatureSpec(text=("text",))).fit(rte.items).to_dict()), HashedFeaturizer
    )


def test_trained_model_takes_a_hashed_featurizer(rte):
    featurizer = HashedFeaturizer(FeatureSpec.infer(rte.items), n_buckets=1024).fit(rte.items)
    model = train_model(rte.items, rte.gold, featurizer=featurizer)
    probas = model.predict_proba(rte.items)
    assert probas.shape == (len(rte.items), 2)
    assert (model.predict(rte.items) == rte.gold.loc[probas.index]).mean() > 0.8


def test_numeric_fields_fit_locally_but_not_from_frequencies():
    items = pd.DataFrame({"task": [1, 2], "text": ["a b", "b c"], "size": [1.0, 3.0]})
    spec = FeatureSpec(text=("text",), numeric=("size",))
    assert HashedFeaturizer(spec, n_buckets=8).fit(items).n_features_ == 10  # 8 buckets, a number's two sides
    with pytest.raises(InvalidParameterError, match="numeric"):
        HashedFeaturizer(spec, n_buckets=8).frequencies(items)
    with pytest.raises(InvalidParameterError, match="n_buckets"):
        HashedFeaturizer(spec, n_buckets=0)


def test_module_imports_only_what_the_edge_has():
    source = Path(__file__).resolve().parents[2] / "src" / "crowdloop" / "learning" / "hashing.py"
    imported = set()
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            imported.add(node.module)
    third_party = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names}
    assert third_party <= EDGE_ALLOWED, third_party - EDGE_ALLOWED


def test_a_saved_hashed_model_loads_back_as_hashed(rte, tmp_path) -> None:
    """TrainedModel.load goes through Featurizer.load, which must recognise the hashed kind."""
    from crowdloop.learning import TrainedModel

    featurizer = HashedFeaturizer(FeatureSpec(text=("text",)), n_buckets=256).fit(rte.items)
    model = train_model(rte.items, rte.gold, featurizer=featurizer)
    again = TrainedModel.load(model.save(tmp_path / "model"))
    assert isinstance(again.featurizer, HashedFeaturizer)
    assert np.allclose(again.predict_proba(rte.items).to_numpy(), model.predict_proba(rte.items).to_numpy())
