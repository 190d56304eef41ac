"""Exact and near duplicate detection: normalisation, content hashes, MinHash + LSH, on
hand-made sentences and on the real RTE sentences bundled with crowdloop."""

from __future__ import annotations

import doctest
import hashlib
import json
import unicodedata

import numpy as np
import pytest

from crowdloop.crowd import dedup
from crowdloop.crowd.dedup import (
    content_hash,
    item_text,
    minhash_signatures,
    near_duplicate_pairs,
    near_duplicates_of,
    normalize_fields,
    normalize_text,
    pairs_from_signatures,
    signature_similarity,
)
from crowdloop.datasets import load_dataset
from crowdloop.errors import InvalidInputError, InvalidParameterError

SENTENCE = (
    "The volunteers labelled every photograph of the harbour before the storm reached "
    "the northern coast late on a Friday evening"
)  # 20 words
UNRELATED = [
    "Dawid and Skene estimated the error rates of clinicians from repeated diagnoses.",
    "A small edge runtime pulls new model versions from the registry by itself.",
    "Workers who fail three control questions in a row are banned from the project.",
    "The budget is spent where another answer changes the aggregated label the most.",
    "Prometheus scrapes the metrics endpoint of every server every fifteen seconds.",
]


def true_jaccard(a: str, b: str) -> float:
    """Jaccard similarity of the 5-byte shingle sets, computed the slow, obvious way."""
    sa, sb = _shingle_set(a), _shingle_set(b)
    return len(sa & sb) / len(sa | sb)


def _shingle_set(text: str) -> set[bytes]:
    data = " ".join(unicodedata.normalize("NFC", text.lower()).split()).encode()
    return {data[i : i + 5] for i in range(max(len(data) - 4, 1))}


def replace_word(text: str, position: int, word: str) -> str:
    words = text.split()
    assert words[position] != word
    words[position] = word
    return " ".join(words)


@pytest.fixture(scope="module")
def rte_texts() -> list[str]:
    items = load_dataset("rte").items
    assert items is not None
    return [item_text(row) for row in items[["text", "text_b"]].to_dict("records")]


# ---------------------------------------------------------------- normalisation


def test_nfd_and_nfc_spellings_normalise_to_the_same_text():
    nfd, nfc = "Cafe\u0301 re\u0301sume\u0301", "Caf\u00e9 r\u00e9sum\u00e9"
    assert nfd != nfc
    assert normalize_text(nfd) == normalize_text(nfc) == nfc


def test_nbsp_tabs_and_newlines_collapse_to_one_space_and_ends_are_stripped():
    assert normalize_text("\u00a0 Hello,\u00a0\u00a0world!\t\tNew\r\n\nline \u2003 end\n") == (
        "Hello, world! New line end"
    )


def test_normalize_text_keeps_case_and_single_spaces():
    assert normalize_text("Keep Case As It Is") == "Keep Case As It Is"


def test_normalize_fields_reaches_nested_strings_and_leaves_other_values_alone():
    data = {
        "text": "  two\u00a0 words ",
        "count": 3,
        "score": 1.5,
        "flag": True,
        "missing": None,
        "meta": {"title": "Cafe\u0301\tbar", "tags": ["a  b", 7, {"deep": "x\ny"}]},
    }
    assert normalize_fields(data) == {
        "text": "two words",
        "count": 3,
        "score": 1.5,
        "flag": True,
        "missing": None,
        "meta": {"title": "Caf\u00e9 bar", "tags": ["a b", 7, {"deep": "x y"}]},
    }
    assert normalize_fields(data)["flag"] is True
    assert data["text"] == "  two\u00a0 words "  # the input is not modified


# ---------------------------------------------------------------- content hash


def test_content_hash_is_sha256_of_the_canonical_json():
    data = {"b": "x\u00a0 y", "a": 1}
    canonical = json.dumps({"a": 1, "b": "x y"}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert content_hash(data) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_content_hash_ignores_key_order_composition_and_whitespace():
    first = {"text": "Caf\u00e9 au lait", "label": "drink", "meta": {"x": 1, "y": "a b"}}
    second = {"meta": {"y": " a\tb ", "x": 1}, "label": "drink\n", "text": "Cafe\u0301  au\u00a0lait"}
    assert content_hash(first) == content_hash(second)


@pytest.mark.parametrize(
    "changed",
    [
        {"text": "Caf\u00e9 au lait chaud", "label": "drink"},  # a word added
        {"text": "caf\u00e9 au lait", "label": "drink"},  # case is content
        {"text": "Caf\u00e9 au lait", "label": "food"},  # another value
        {"text": "Caf\u00e9 au lait", "tag": "drink"},  # another key
        {"text": "Caf\u00e9 au lait", "label": "drink", "n": 1},  # a field more
        {"text": "Caf\u00e9au lait", "label": "drink"},  # a space removed, not collapsed
    ],
)
def test_content_hash_changes_with_real_changes(changed):
    assert content_hash(changed) != content_hash({"text": "Caf\u00e9 au lait", "label": "drink"})


def test_content_hash_tells_numbers_from_their_strings():
    assert content_hash({"n": 1}) != content_hash({"n": "1"})


def test_content_hash_of_a_value_json_cannot_hold_raises_a_typed_error():
    with pytest.raises(InvalidInputError, match="cannot be hashed"):
        content_hash({"tags": {"a", "b"}})


def test_item_text_joins_string_fields_in_key_order_whatever_the_insertion_order():
    first = {"title": "Storm", "body": "Rain\tlater", "n": 4, "meta": {"z": "last", "a": "first"}}
    second = {"meta": {"a": "first", "z": "last"}, "n": 4, "body": "Rain later", "title": "Storm"}
    assert item_text(first) == item_text(second) == "Rain later first last Storm"


# ---------------------------------------------------------------- MinHash and LSH


def test_signatures_have_one_row_per_text_and_num_perm_uint64_columns():
    signatures = minhash_signatures(["one text", "another text", ""], num_perm=32)
    assert signatures.shape == (3, 32)
    assert signatures.dtype == np.uint64


def test_a_signature_does_not_depend_on_the_other_texts_in_the_batch(rte_texts):
    batch = rte_texts * 3  # about half a million shingles: hashed in several blocks
    signatures = minhash_signatures(batch)
    for index in [0, 1, 799, 1234, 1600, 2399]:
        assert np.array_equal(signatures[index], minhash_signatures([batch[index]])[0])


def test_one_word_changed_in_a_twenty_word_sentence_is_a_near_duplicate():
    assert len(SENTENCE.split()) == 20
    changed = replace_word(SENTENCE, 6, "a")
    pairs = near_duplicate_pairs([SENTENCE, *UNRELATED, changed])
    assert [(i, j) for i, j, _ in pairs] == [(0, 6)]
    assert 0.8 <= pairs[0][2] < 1.0


def test_unrelated_sentences_are_not_paired_even_at_a_low_threshold():
    assert near_duplicate_pairs([SENTENCE, *UNRELATED], threshold=0.3) == []


def test_case_and_whitespace_do_not_count_for_near_duplicates():
    noisy = "  " + SENTENCE.upper().replace(" ", "\u00a0 \t", 3) + "\n"
    assert near_duplicate_pairs([SENTENCE, noisy]) == [(0, 1, 1.0)]


def test_exact_duplicates_are_reported_with_similarity_one():
    texts = ["same words here", "something else entirely", "same words here"]
    assert near_duplicate_pairs(texts) == [(0, 2, 1.0)]


def test_threshold_one_keeps_exact_duplicates_only():
    texts = [SENTENCE, replace_word(SENTENCE, 6, "a"), SENTENCE]
    assert near_duplicate_pairs(texts, threshold=1.0) == [(0, 2, 1.0)]


def test_similarity_is_of_shingle_sets_so_repeats_do_not_count():
    assert near_duplicate_pairs(["abcdeabcde", "abcdeabcdeabcde"]) == [(0, 1, 1.0)]


@pytest.mark.parametrize("other", ["hello worle", "jello world"])
def test_the_first_and_the_last_shingle_of_a_text_count(other):
    signatures = minhash_signatures(["hello world", other])
    assert true_jaccard("hello world", other) == 0.75
    assert signature_similarity(signatures[0], signatures[1]) < 1.0


def test_pairs_are_sorted_with_the_smaller_index_first():
    texts = [UNRELATED[1], SENTENCE, UNRELATED[0], UNRELATED[1], SENTENCE, UNRELATED[0]]
    assert near_duplicate_pairs(texts) == [(0, 3, 1.0), (1, 4, 1.0), (2, 5, 1.0)]


@pytest.mark.parametrize("changed_words", [1, 2, 3, 5, 7])
def test_reported_similarity_is_close_to_the_true_jaccard(changed_words):
    changed = SENTENCE
    for position in range(changed_words):
        changed = replace_word(changed, 3 * position, "zebra")
    expected = true_jaccard(SENTENCE, changed)
    assert expected > 0.25  # so the pair is above the threshold used below
    pairs = near_duplicate_pairs([SENTENCE, changed], threshold=0.1, num_perm=64, bands=64)
    assert len(pairs) == 1
    assert pairs[0][2] == pytest.approx(expected, abs=0.15)


def test_estimates_are_unbiased_over_many_real_pairs(rte_texts):
    rng = np.random.default_rng(7)
    originals, variants = [], []
    for text in rte_texts[:300]:
        words = text.split()
        for position in rng.choice(len(words), rng.integers(1, len(words) // 2 + 2), replace=False):
            words[position] = words[position][::-1] + "q"
        originals.append(text)
        variants.append(" ".join(words))
    expected = np.array([true_jaccard(a, b) for a, b in zip(originals, variants, strict=True)])
    signatures = minhash_signatures(originals + variants, num_perm=128)
    estimated = signature_similarity(signatures[:300], signatures[300:])
    assert expected.std() > 0.1  # a real spread of similarities is being checked
    assert abs(np.mean(estimated - expected)) < 0.01
    assert np.mean(np.abs(estimated - expected)) < 0.06
    assert np.max(np.abs(estimated - expected)) < 0.2


def test_short_texts_are_one_shingle_each():
    texts = ["hi", "hi", "ho", "", "a", "", "hi!", "HI"]
    pairs = near_duplicate_pairs(texts, threshold=0.5)
    assert pairs == [(0, 1, 1.0), (0, 7, 1.0), (1, 7, 1.0), (3, 5, 1.0)]


def test_a_short_text_and_a_longer_one_starting_with_it_differ():
    signatures = minhash_signatures(["abcd", "abcd\0", "abcde"])
    assert signature_similarity(signatures[0], signatures[1]) == 0.0
    assert signature_similarity(signatures[0], signatures[2]) == 0.0


def test_empty_input_gives_no_pairs_and_an_empty_signature_matrix():
    assert near_duplicate_pairs([]) == []
    assert minhash_signatures([], num_perm=16).shape == (0, 16)
    existing = minhash_signatures([SENTENCE])
    assert near_duplicates_of([], existing) == []
    assert near_duplicates_of([SENTENCE], minhash_signatures([])) == []


def test_same_random_state_gives_the_same_signatures_and_another_does_not():
    texts = [SENTENCE, *UNRELATED]
    assert np.array_equal(minhash_signatures(texts, random_state=3), minhash_signatures(texts, random_state=3))
    assert not np.array_equal(minhash_signatures(texts, random_state=3), minhash_signatures(texts))


def test_pairs_are_reproducible_under_random_state(rte_texts):
    assert near_duplicate_pairs(rte_texts, 0.7, random_state=5) == near_duplicate_pairs(rte_texts, 0.7, random_state=5)


def test_pairs_from_stored_signatures_match_pairs_from_texts(rte_texts):
    signatures = minhash_signatures(rte_texts, num_perm=32, random_state=1)
    assert pairs_from_signatures(signatures, 0.75, bands=8) == near_duplicate_pairs(
        rte_texts, 0.75, num_perm=32, bands=8, random_state=1
    )


def test_new_texts_are_checked_against_existing_signatures():
    existing = minhash_signatures([*UNRELATED, SENTENCE])
    new = ["Nothing like any of the existing items at all.", replace_word(SENTENCE, 10, "a"), UNRELATED[2]]
    pairs = near_duplicates_of(new, existing)
    assert [(i, j) for i, j, _ in pairs] == [(1, 5), (2, 2)]
    assert pairs[1][2] == 1.0
    combined = near_duplicate_pairs([*UNRELATED, SENTENCE, *new])
    assert pairs[0][2] == next(s for i, j, s in combined if (i, j) == (5, 7))


def test_new_texts_are_not_compared_with_each_other():
    existing = minhash_signatures(UNRELATED)
    assert near_duplicates_of([SENTENCE, SENTENCE], existing) == []


# ---------------------------------------------------------------- real data: RTE


def test_rte_originals_give_few_pairs_and_only_true_near_duplicates(rte_texts):
    pairs = near_duplicate_pairs(rte_texts, threshold=0.9)
    possible = len(rte_texts) * (len(rte_texts) - 1) // 2
    assert len(pairs) < 0.0002 * possible  # RTE reuses some premises, so not zero
    # 64 permutations estimate J with a standard error of about 0.04, hence the margin
    assert all(true_jaccard(rte_texts[i], rte_texts[j]) > 0.75 for i, j, _ in pairs)


def test_rte_items_with_one_word_changed_are_found(rte_texts):
    longest = sorted(range(len(rte_texts)), key=lambda i: len(rte_texts[i]))[-5:]
    copies = []
    for index in longest:
        words = rte_texts[index].split()
        copies.append(replace_word(rte_texts[index], len(words) // 2, "banana"))
    pairs = near_duplicate_pairs(rte_texts + copies, threshold=0.9)
    found = {(i, j) for i, j, _ in pairs}
    assert all((index, len(rte_texts) + k) in found for k, index in enumerate(longest))
    against = near_duplicates_of(copies, minhash_signatures(rte_texts), threshold=0.9)
    assert {(k, index) for k, index in enumerate(longest)} <= {(i, j) for i, j, _ in against}


# ---------------------------------------------------------------- bad parameters and doctests


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_perm": 60, "bands": 16}, "bands must be a positive divisor of num_perm=60"),
        ({"bands": 0}, "bands must be"),
        ({"num_perm": 0}, "num_perm must be a positive integer"),
        ({"threshold": 0.0}, r"threshold must be in \(0, 1\], got 0.0"),
        ({"threshold": 1.5}, "threshold must be in"),
        ({"threshold": -0.2}, "threshold must be in"),
        ({"threshold": float("nan")}, "threshold must be in"),
    ],
)
def test_bad_parameters_raise_the_typed_error(kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        near_duplicate_pairs([SENTENCE], **kwargs)
    with pytest.raises(InvalidParameterError, match=message):
        near_duplicates_of([SENTENCE], minhash_signatures([SENTENCE]), **kwargs)


def test_signatures_of_the_wrong_shape_or_type_are_refused():
    with pytest.raises(InvalidParameterError, match=r"shape \(n, 64\)"):
        near_duplicates_of([SENTENCE], minhash_signatures([SENTENCE], num_perm=32))
    with pytest.raises(InvalidParameterError, match="uint64"):
        near_duplicates_of([SENTENCE], minhash_signatures([SENTENCE]).astype(np.float64))
    with pytest.raises(InvalidParameterError, match="uint64"):
        pairs_from_signatures(np.zeros(64, dtype=np.uint64))


def test_a_text_that_is_not_a_string_is_refused():
    with pytest.raises(InvalidInputError, match=r"texts\[1\] is NoneType"):
        minhash_signatures(["fine", None])  # type: ignore[list-item]


def test_the_module_examples_run():
    result = doctest.testmod(dedup)
    assert result.attempted > 0
    assert result.failed == 0
