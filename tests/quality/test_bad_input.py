"""Bad input raises a typed error that names the problem, never a bare KeyError."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crowdloop.errors import (
    EmptyInputError,
    InvalidInputError,
    MissingColumnsError,
    MissingValuesError,
    UnknownLabelError,
    UnknownMethodError,
)
from crowdloop.quality import CATEGORICAL_METHODS, DawidSkene, Mean, get_aggregator

GOOD = pd.DataFrame({"task": [1, 1, 2], "worker": ["a", "b", "a"], "label": ["x", "y", "y"]})


@pytest.mark.parametrize("name", sorted(CATEGORICAL_METHODS))
def test_missing_column_is_named(name):
    with pytest.raises(MissingColumnsError, match="lack column\\(s\\) worker; found task, label"):
        get_aggregator(name).fit(GOOD.drop(columns="worker"))


@pytest.mark.parametrize("name", sorted(CATEGORICAL_METHODS))
def test_empty_frame(name):
    with pytest.raises(EmptyInputError, match="answers are empty"):
        get_aggregator(name).fit(GOOD.iloc[:0])


def test_nan_label_names_the_answer():
    """By its task and worker: the row number was the frame's index, 0 for a file's line 2."""
    answers = GOOD.copy()
    answers.loc[2, "label"] = np.nan
    with pytest.raises(MissingValuesError, match="1 answer\\(s\\) have no label \\(first: task 2, worker 'a'\\)"):
        DawidSkene().fit(answers)


def test_nan_task():
    answers = GOOD.astype({"task": float})
    answers.loc[0, "task"] = np.nan
    with pytest.raises(MissingValuesError, match="no task"):
        DawidSkene().fit(answers)


def test_not_a_frame():
    with pytest.raises(InvalidInputError, match="must be a pandas DataFrame.*got list"):
        DawidSkene().fit([(1, "a", "x")])


def test_unknown_method_lists_choices():
    with pytest.raises(UnknownMethodError, match="unknown aggregation method 'dawid'; choose one of default"):
        get_aggregator("dawid")


def test_method_aliases():
    assert type(get_aggregator("DawidSkene")) is DawidSkene
    assert type(get_aggregator("ds")) is DawidSkene
    assert type(get_aggregator("dawid-skene")) is DawidSkene


@pytest.mark.parametrize("name", sorted(CATEGORICAL_METHODS))
def test_gold_label_outside_label_set(name):
    with pytest.raises(UnknownLabelError, match="gold label\\(s\\) 'z' are not in the label set \\{'x', 'y'\\}"):
        get_aggregator(name).fit(GOOD, gold=pd.Series({1: "z"}))


def test_gold_whose_tasks_match_none_is_refused():
    """Gold indexed by text ids, answers by ints: every gold label was dropped without a word, and
    the fit ran as if no gold had been given."""
    with pytest.raises(
        EmptyInputError, match="none of the 2 gold tasks is among the answers' 2 tasks \\(gold task '1'"
    ):
        DawidSkene().fit(GOOD, gold=pd.Series({"1": "y", "2": "y"}))
    with pytest.raises(EmptyInputError, match="gold task 7, answered task 1; ids of two kinds"):
        DawidSkene().fit(GOOD, gold=pd.Series({7: "x", 8: "y"}))


def test_an_unknown_numeric_gold_label_is_shown_as_written():
    """It read "np.int64(2)", and a score set of a hundred values was listed whole."""
    answers = pd.DataFrame({"task": range(30), "worker": "a", "label": range(30)})
    with pytest.raises(UnknownLabelError) as refused:
        DawidSkene().fit(answers, gold=pd.Series({0: 99}))
    message = str(refused.value)
    assert "gold label(s) 99 are not in the label set {0, 1," in message and "np." not in message
    assert "(30 in all)" in message and "a numeric method (mean, median)" in message


def test_gold_as_frame_and_int_vs_string_labels():
    answers = GOOD.assign(label=[0, 1, 1])
    model = DawidSkene().fit(answers, gold=pd.DataFrame({"task": [1], "label": [1]}))
    assert model.labels_[1] == 1
    # gold read from a file as text still matches integer labels
    assert DawidSkene().fit(answers, gold=pd.Series({1: "1"})).labels_[1] == 1


def test_gold_problems():
    with pytest.raises(MissingColumnsError, match="gold lacks column"):
        DawidSkene().fit(GOOD, gold=pd.DataFrame({"task": [1]}))
    with pytest.raises(InvalidInputError, match="more than one label"):
        DawidSkene().fit(GOOD, gold=pd.Series(["x", "y"], index=[1, 1]))
    with pytest.raises(MissingValuesError, match="gold task"):
        DawidSkene().fit(GOOD, gold=pd.Series({1: None}))


def test_gold_for_unknown_tasks_is_ignored_beside_gold_it_can_use():
    model = DawidSkene().fit(GOOD, gold=pd.Series({99: "x", 2: "x"}))
    assert list(model.labels_.index) == [1, 2] and model.labels_[2] == "x"


def test_numeric_needs_numbers():
    with pytest.raises(InvalidInputError, match="numeric labels"):
        Mean().fit(GOOD)
    with pytest.raises(InvalidInputError, match="finite"):
        Mean().fit(GOOD.assign(label=[1.0, np.inf, 2.0]))


def test_numeric_reads_numbers_written_as_text_and_names_what_is_not():
    """A score column with ``00`` or ``-0`` in it is read as text (the reader's rule for ids), and
    numeric methods refused it: "column label has dtype object", naming no value."""
    scores = pd.DataFrame({"task": [1, 1, 2, 2], "worker": list("abab"), "label": ["00", "-0", "007", "+1.5"]})
    assert Mean().fit(scores).labels_.tolist() == [0.0, 4.25]
    assert scores["label"].tolist() == ["00", "-0", "007", "+1.5"]  # the caller's frame is left as it was
    with pytest.raises(InvalidInputError, match=r"3 answer\(s\) have a label that is not a number, such as 'x', 'NA'"):
        Mean().fit(scores.assign(label=["x", "5", "NA", "x"]))


def test_numeric_gold_is_measured_and_fit_gold_without_gold_is_refused():
    """Numeric gold was read and ignored (no measure, no error); fit_gold without gold did nothing."""
    from crowdloop.errors import InvalidParameterError
    from crowdloop.quality.run import aggregate

    scores = pd.DataFrame({"task": [1, 1, 2, 2], "worker": list("abab"), "label": [1.0, 3.0, 5.0, 5.0]})
    stats = aggregate(scores, Mean(), pd.Series({1: 4, 2: 5, 99: 0})).stats
    assert stats["gold_mae"] == pytest.approx(1.0) and stats["gold_rmse"] == pytest.approx(2**0.5)
    assert (stats["gold_scored"], stats["gold_tasks"], stats["gold_unanswered"]) == (2, 3, [99])
    with pytest.raises(InvalidParameterError, match="needs gold"):
        aggregate(scores, Mean(), fit_gold=True)


def test_input_frame_is_not_modified():
    answers = GOOD.copy()
    DawidSkene().fit(answers, gold=pd.Series({1: "x"}))
    pd.testing.assert_frame_equal(answers, GOOD)


def test_cross_fitting_reports_its_progress():
    """The five cross-fits of fit_gold ran with no progress: a spinner stood still through most of the run."""
    from crowdloop.quality.run import aggregate

    answers = pd.DataFrame({"task": np.repeat(np.arange(40), 3), "worker": np.tile(["a", "b", "c"], 40),
                            "label": np.where(np.arange(120) % 7 == 0, "x", "y")})  # fmt: skip
    gold = pd.Series("y", index=np.arange(0, 40, 2))
    first_iterations: list[int] = []
    aggregate(answers, DawidSkene(), gold, fit_gold=True,
              progress=lambda iteration, change: first_iterations.append(iteration) if iteration == 1 else None)  # fmt: skip
    assert len(first_iterations) == 1 + 5  # the fit, then each fold's
