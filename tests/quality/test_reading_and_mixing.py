"""Truth inference handed what files and frames plausibly hold: a row with one field too many, labels
of mixed types, colliding columns, gold labels nobody can give, options an engine ignores."""

from __future__ import annotations

import io
import subprocess
import sys

import pandas as pd
import pytest

from crowdloop.errors import DataFileError, InvalidInputError
from crowdloop.io import read_gold, read_table, same_task_ids
from crowdloop.quality import DawidSkene, MajorityVote
from crowdloop.quality.metrics import krippendorff_alpha


def _crowdloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crowdloop", *args], capture_output=True, text=True, timeout=300)


def test_a_row_with_a_field_too_many_is_an_error_not_a_shift(tmp_path):
    path = tmp_path / "answers.csv"
    path.write_text("task,worker,label\n1,a,cat,0.9\n2,b,dog\n")
    with pytest.raises(DataFileError, match="cannot be read as csv"):
        read_table(path)  # it used to make the tasks the index and the workers the tasks


def test_a_quote_never_closed_is_named_by_its_line(tmp_path):
    """It was pandas' "Error tokenizing data. C error: EOF inside string starting at row 1"."""
    path = tmp_path / "answers.csv"
    path.write_text('task,worker,label\n1,"a,cat\n2,b,dog\n')
    with pytest.raises(DataFileError, match=r"cannot be read as csv: a quoted field opened on line 2 is never closed"):
        read_table(path)


def test_labels_of_mixed_types_are_one_label():
    answers = pd.DataFrame({"task": ["t"] * 5, "worker": list("abcde"), "label": ["1", "1", 1, 2, 2]})
    assert MajorityVote().fit(answers).labels_.tolist() == ["1"]  # three votes, not two against two and one
    assert sorted(map(str, DawidSkene().fit(answers).probas_.columns)) == ["1", "2"]


def test_interval_agreement_needs_numbers():
    answers = pd.DataFrame({"task": [1, 1, 2, 2], "worker": list("abab"), "label": ["bird", "cat", "cat", "cat"]})
    with pytest.raises(InvalidInputError, match="needs numeric labels; 'bird', 'cat' are not numbers \\(the nominal"):
        krippendorff_alpha(answers, "interval")  # pandas' 'Unable to parse string "bird" at position 0' was shown


def test_the_cli_refuses_colliding_columns_unknown_gold_labels_and_ignored_options(tmp_path):
    answers = tmp_path / "answers.csv"
    pd.DataFrame({"task": [1, 1, 2, 2], "item": [1, 1, 2, 2], "worker": list("abab"), "label": [0, 1, 1, 1]}).to_csv(
        answers, index=False
    )
    twice = _crowdloop("aggregate", str(answers), "--task-col", "item")
    assert twice.returncode == 2 and "column(s) task twice after renaming" in twice.stderr
    gold = tmp_path / "gold.csv"
    pd.DataFrame({"task": [1, 2], "label": ["yes", "no"]}).to_csv(gold, index=False)
    scored = _crowdloop("aggregate", str(answers), "--gold", str(gold))
    assert scored.returncode == 2 and "yes" in scored.stderr  # it printed accuracy 0.0000
    engine = _crowdloop("aggregate", str(answers), "--engine", "stream", "--gold", str(gold), "-o", "x.parquet")
    assert engine.returncode == 2 and "--engine stream takes no --gold" in engine.stderr


def test_ids_and_labels_keep_what_the_file_says(tmp_path):
    """pandas read ``007`` as 7 (two tasks became one, and the output lost the user's id) and a
    label ``NA`` as missing (the file was refused: "answers have no label")."""
    answers = tmp_path / "answers.csv"
    answers.write_text("task,worker,label\n007,a,NA\n007,b,NA\n7,a,yes\n7,b,yes\n7,c,NA\n12,a,yes\n")
    frame = read_table(answers)
    assert frame["task"].tolist() == ["007", "007", "7", "7", "7", "12"] and "NA" in set(frame["label"])
    gold = tmp_path / "gold.csv"
    gold.write_text("task,label\n12,yes\n7,yes\n")  # plain numbers: read as ints, matched as text
    result = _crowdloop("aggregate", str(answers), "--method", "majority_vote", "--gold", str(gold), "-o", "-")
    assert result.returncode == 0, result.stderr
    labels = pd.read_csv(io.StringIO(result.stdout), dtype=str, keep_default_na=False)
    assert dict(zip(labels["task"], labels["label"], strict=True)) == {"007": "NA", "7": "yes", "12": "yes"}
    assert "accuracy" in result.stderr and "1.0000" in result.stderr, result.stderr
    assert read_table(tmp_path / "answers.csv")["worker"].dtype == object
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("task,worker,label\n1,2,-3\n4,5,1.50\n")
    assert read_table(numbers).dtypes.tolist() == ["int64", "int64", "float64"]  # plain numbers stay numbers
    items = pd.DataFrame({"text": ["a", "b"]}, index=pd.Index([7, 12], name="task"))
    _, known, indexed = same_task_ids(frame, read_gold(gold), items)  # as `crowdloop simulate` reads them
    assert known is not None and indexed is not None
    assert known.index.tolist() == ["12", "7"] and indexed.loc["7", "text"] == "a"


def test_json_lines_keep_strings_as_strings_and_numbers_as_numbers(tmp_path):
    """pandas guessed JSON types: the id ``"007"`` became 7 and the label ``"1e5"`` 100000, so tasks
    ``"007"`` and ``"7"`` (and the two labels) silently merged; gold files were read the same way."""
    answers = tmp_path / "answers.jsonl"
    rows = [("007", "a", "1e5"), ("007", "b", "1e5"), ("7", "a", "100000"), ("7", "b", "100000")]
    answers.write_text("".join(f'{{"task": "{t}", "worker": "{w}", "label": "{label}"}}\n' for t, w, label in rows))
    frame = read_table(answers)
    assert frame["task"].tolist() == ["007", "007", "7", "7"] and frame["label"].tolist()[::2] == ["1e5", "100000"]
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"task": "007", "label": "1e5"}\n{"task": "7", "label": "100000"}\n')
    assert read_gold(gold).to_dict() == {"007": "1e5", "7": "100000"}
    labels = MajorityVote().fit(frame).labels_
    assert labels.to_dict() == {"007": "1e5", "7": "100000"}


def test_json_lines_with_number_ids_still_aggregate(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(f'{{"task": {t}, "worker": "{w}", "label": {t % 2}}}\n' for t in (1, 2) for w in "ab"))
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"task": 1, "label": 1}\n{"task": 2, "label": 0}\n')
    assert read_table(answers)["task"].dtype == "int64" and read_gold(gold).index.dtype == "int64"
    done = _crowdloop("aggregate", str(answers), "-m", "mv", "--gold", str(gold), "-o", "-")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["task,label,confidence", "1,1,1.0", "2,0,1.0"] and "1.0000" in done.stderr
