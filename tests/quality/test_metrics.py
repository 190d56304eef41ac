"""Agreement metrics against published worked examples."""

from __future__ import annotations

import pandas as pd
import pytest

from crowdloop.errors import EmptyInputError, InvalidParameterError
from crowdloop.quality.metrics import (
    accuracy_on_gold,
    fleiss_kappa,
    krippendorff_alpha,
    worker_accuracy_on_gold,
    worker_agreement,
)


def _long(table: dict[str, list[object]]) -> pd.DataFrame:
    rows = [(unit, coder, value) for coder, values in table.items() for unit, value in enumerate(values)]
    return pd.DataFrame(rows, columns=["task", "worker", "label"]).dropna()


# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the 4-coder, 12-unit example.
KRIPPENDORFF_2011 = _long(
    {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
)


def test_krippendorff_alpha_matches_the_paper():
    assert krippendorff_alpha(KRIPPENDORFF_2011) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(KRIPPENDORFF_2011, "interval") == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_perfect_agreement_and_bad_level():
    same = pd.DataFrame({"task": [1, 1, 2, 2], "worker": list("abab"), "label": [1, 1, 2, 2]})
    assert krippendorff_alpha(same) == 1.0
    with pytest.raises(InvalidParameterError, match="level"):
        krippendorff_alpha(same, "ordinal")  # type: ignore[arg-type]


def test_fleiss_kappa_matches_the_wikipedia_example():
    # 10 subjects, 14 raters, 5 categories; kappa = 0.210 (Fleiss 1971 as worked on Wikipedia).
    counts = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]  # fmt: skip
    rows = []
    for subject, row in enumerate(counts):
        labels = [category for category, n in enumerate(row) for _ in range(n)]
        rows += [(subject, rater, label) for rater, label in enumerate(labels)]
    answers = pd.DataFrame(rows, columns=["task", "worker", "label"])
    assert fleiss_kappa(answers) == pytest.approx(0.210, abs=5e-4)


def test_agreement_needs_pairs():
    single = pd.DataFrame({"task": [1, 2], "worker": ["a", "b"], "label": [0, 1]})
    with pytest.raises(EmptyInputError, match="two or more distinct workers"):
        fleiss_kappa(single)


def test_accuracy_and_worker_tables():
    answers = pd.DataFrame(
        {"task": [1, 1, 2, 2, 3], "worker": ["a", "b", "a", "b", "a"], "label": ["x", "y", "y", "y", "x"]}
    )
    gold = pd.Series({1: "x", 2: "y"})
    labels = pd.Series({1: "x", 2: "x", 3: "x"})
    assert accuracy_on_gold(labels, gold) == 0.5
    table = worker_accuracy_on_gold(answers, gold)
    assert table.loc["a"].tolist() == [2, 1.0]
    assert table.loc["b"].tolist() == [2, 0.5]
    agreement = worker_agreement(answers, labels)
    assert agreement.to_dict() == {"a": pytest.approx(2 / 3), "b": 0.0}
    with pytest.raises(EmptyInputError):
        accuracy_on_gold(labels, pd.Series({9: "x"}))


def test_agreement_counts_each_worker_once_per_task():
    """Repeats made one worker look like several annotators: a answering task 1 three times and b
    task 2 twice gave alpha 1.0 and kappa 1.0, though no two workers labelled the same task."""
    alone = pd.DataFrame({"task": [1, 1, 1, 2, 2], "worker": list("aaabb"), "label": list("xxxyy")})
    for metric in (krippendorff_alpha, fleiss_kappa):
        with pytest.raises(EmptyInputError, match="two or more distinct workers"):
            metric(alone)
    # a changes their mind on task 1 (last answer y); b and c agree with it, so agreement is perfect
    changed = pd.DataFrame({"task": [1, 1, 1, 2, 2], "worker": list("abacb"), "label": list("xyyxx")})
    assert krippendorff_alpha(changed) == pytest.approx(1.0) and fleiss_kappa(changed) == pytest.approx(1.0)
    once = changed.drop_duplicates(["task", "worker"], keep="last")
    assert krippendorff_alpha(changed) == krippendorff_alpha(once)
