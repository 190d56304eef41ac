"""The numpy featurizer: tokenisation, vocabulary, TF-IDF, pair features, JSON state."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crowdloop.errors import EmptyInputError, MissingColumnsError, NotFittedError
from crowdloop.learning import FeatureSpec, Featurizer
from crowdloop.learning.pairs import PAIR_FEATURES, pair_features, shared_terms
from crowdloop.learning.text import Analyzer, Vocabulary, char_ngrams, hstack, normalise, word_ngrams

EDGE_MODULES = ["text.py", "pairs.py", "features.py"]
EDGE_ALLOWED = {"numpy", "crowdloop.errors", "crowdloop.numbers", "crowdloop.learning.text", "crowdloop.learning.pairs"}


def test_normalise_decodes_entities_lowers_and_collapses_space():
    assert normalise("  Senior&apos;s   CAFÉ\tX ") == "senior's café x"
    assert normalise(None) == "" and normalise(float("nan")) == ""


def test_ngrams_word_and_char_wb_style():
    assert word_ngrams(["a", "b", "c"], 1, 2) == ["w:a", "w:b", "w:c", "w:a b", "w:b c"]
    assert char_ngrams(["tv"], 3, 5) == ["c: tv", "c:tv ", "c: tv "]
    assert char_ngrams(["x"], 3, 5) == ["c: x "]


def test_vocabulary_min_df_idf_and_unit_rows():
    docs = [["a", "b"], ["a", "c"], ["a", "b", "b"]]
    vocab = Vocabulary.fit(docs, min_df=2)
    assert vocab.terms == ["a", "b"]
    np.testing.assert_allclose(vocab.idf, np.log(4 / np.array([4, 3])) + 1)
    rows = vocab.tfidf([*docs, ["zzz"]])
    dense = rows.dense()
    np.testing.assert_allclose(np.linalg.norm(dense[:3], axis=1), 1, rtol=1e-6)
    assert not dense[3].any()  # unknown terms only: an all-zero row
    expected = np.array([1 + np.log(1), 1 + np.log(2)]) * vocab.idf
    np.testing.assert_allclose(dense[2], expected / np.linalg.norm(expected), rtol=1e-6)


def test_hstack_offsets_columns():
    left = Vocabulary.fit([["a"], ["b"]], min_df=1).counts([["a"], ["b"]])
    both = hstack([left, left]).dense()
    np.testing.assert_array_equal(both, [[1, 0, 1, 0], [0, 1, 0, 1]])


def test_pair_features_see_shared_model_codes():
    a = ["Sony KDL-40 TV", "Sony KDL-40 TV"]
    b = ["sony kdl 40 television", "Samsung UN55 TV"]
    vocab = Vocabulary.fit([Analyzer().terms(t) for t in a + b], min_df=1)
    left, right = (vocab.tfidf([Analyzer().terms(t) for t in side]) for side in (a, b))
    values = pair_features(a, b, shared_terms(left, right))
    named = [dict(zip(PAIR_FEATURES, row, strict=True)) for row in values]
    assert named[0]["code_shared"] == 1 and named[1]["code_conflict"] == 1
    assert named[0]["cosine"] > named[1]["cosine"] and named[0]["first_word_equal"] == 1
    assert named[0]["cosine"] == pytest.approx(float(left.dense()[0] @ right.dense()[0]), rel=1e-6)


def test_infer_spec_finds_pairs_numbers_categories_and_text():
    items = pd.DataFrame(
        {
            "task": [1, 2, 3],
            "text": ["a long title here", "another long title", "third long title"],
            "text_b": ["one", "two words", "three words here"],
            "body": ["free text one two three four", "more free text goes here now", "and more text follows here"],
            "price": [1.5, None, 3.0],
            "shop": ["x", "y", "x"],
        }
    )
    spec = FeatureSpec.infer(items)
    assert spec == FeatureSpec(text=("body",), pair=(("text", "text_b"),), numeric=("price",), categorical=("shop",))


def test_featurizer_sparse_dense_and_json_state_agree():
    items = pd.DataFrame(
        {
            "task": ["a", "b", "c", "d"],
            "title": ["red apple pie", "green apple", "red car", "blue car wash"],
            "price": [1.0, np.nan, 3.0, 5.0],
            "colour": ["red", "green", "red", "purple"],
        }
    )
    spec = FeatureSpec(text=("title",), numeric=("price",), categorical=("colour",))
    featurizer = Featurizer(spec, min_df=1).fit(items.iloc[:3])
    dense = featurizer.transform_dense(items)
    assert dense.dtype == np.float32 and dense.shape == (4, featurizer.n_features_)
    np.testing.assert_array_equal(dense, featurizer.transform(items).toarray())
    price = [featurizer.feature_names_.index(name) for name in ("price:+", "price:-")]
    assert not dense[1, price].any()  # median 2 imputed, mean 2
    assert dense[0, price].tolist() == [0.0, 1.0] and dense[2, price].tolist() == [1.0, 0.0]  # 1 and 3: sd 1
    assert not dense[3, -2:].any()  # unseen category "purple": all zeros
    again = Featurizer.from_dict(json.loads(json.dumps(featurizer.to_dict())))
    np.testing.assert_array_equal(again.transform_dense(items), dense)
    records = items.to_dict("records")
    np.testing.assert_array_equal(featurizer.transform_dense(records), dense)
    typed = [{**records[0], "colour": " red\u00a0"}]  # as a person types it, before an import trims it
    np.testing.assert_array_equal(featurizer.transform_dense(typed), dense[:1])


def test_featurizer_errors_name_the_problem():
    spec = FeatureSpec(text=("title",))
    with pytest.raises(MissingColumnsError, match="title"):
        Featurizer(spec).fit(pd.DataFrame({"task": [1], "name": ["x"]}))
    with pytest.raises(EmptyInputError):
        Featurizer(spec).fit(pd.DataFrame({"task": [], "title": []}))
    with pytest.raises(NotFittedError):
        Featurizer(spec).transform_dense([{"task": 1, "title": "x"}])


@pytest.mark.parametrize("module", EDGE_MODULES)
def test_edge_modules_import_only_numpy_and_each_other(module):
    source = Path(__file__).resolve().parents[2] / "src" / "crowdloop" / "learning" / module
    imported = set()
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            imported.add(node.module)
    import sys

    third_party = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names}
    assert third_party <= EDGE_ALLOWED, third_party - EDGE_ALLOWED


def test_rte_featurizer_state_is_plain_json(rte, rte_featurizer):
    text = json.dumps(rte_featurizer.to_dict())
    again = Featurizer.from_dict(json.loads(text))
    head = rte.items.head(5)
    np.testing.assert_array_equal(again.transform_dense(head), rte_featurizer.transform_dense(head))
