"""`crowdloop simulate` run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from crowdloop.datasets import load_dataset


def _files(tmp_path):
    data = load_dataset("wsd")
    data.answers.to_csv(tmp_path / "answers.csv", index=False)
    data.gold.rename_axis("task").reset_index().to_csv(tmp_path / "gold.csv", index=False)
    return str(tmp_path / "answers.csv"), str(tmp_path / "gold.csv")


def _simulate(*args):
    return subprocess.run([sys.executable, "-m", "crowdloop", "simulate", *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_simulate_json_summary(tmp_path):
    answers, gold = _files(tmp_path)
    done = _simulate("--answers", answers, "--gold", gold, "--policy", "fixed", "--overlap", "3", "--price", "0.1",
                     "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["labels_bought"] == 3 * 177 and summary["labels_per_item"] == 3.0
    assert abs(summary["cost"] - 53.1) < 1e-9 and summary["label_accuracy"] > 0.95


def test_simulate_table_and_budget(tmp_path):
    answers, gold = _files(tmp_path)
    done = _simulate("--answers", answers, "--gold", gold, "--policy", "dynamic", "--budget", "100")
    assert done.returncode == 0, done.stderr
    assert "labels bought" in done.stdout and "│ 100 " in done.stdout


def test_simulate_reports_a_bad_file(tmp_path):
    done = _simulate("--answers", str(tmp_path / "missing.csv"), "--gold", str(tmp_path / "gold.csv"))
    assert done.returncode == 2 and "no such file" in done.stderr
    assert done.stderr.count("\n") == 1  # one line, no traceback


def test_simulate_says_what_is_wrong_with_the_inputs_before_running(tmp_path):
    answers, gold = _files(tmp_path)
    frame = pd.read_csv(gold)
    cases = {
        "a task twice": (pd.concat([frame, frame.head(2)]), "2 task(s) have more than one gold label"),
        "no common task": (frame.assign(task="elsewhere-" + frame["task"]), "no gold task is among the answers'"),
        "a label nobody answered": (frame.assign(label="banana"), "gold label(s) ['banana'] are not among"),
        "header only": (frame.head(0), "no gold task is among the answers'"),
        "a blank label": (frame.assign(label=frame["label"].mask(frame.index == 1)),
                          f"1 gold row(s) have no label (task(s) {frame['task'][1]})"),
    }  # fmt: skip
    for name, (table, message) in cases.items():
        table.to_csv(tmp_path / "bad.csv", index=False)
        done = _simulate("--answers", answers, "--gold", str(tmp_path / "bad.csv"), "--json")
        assert done.returncode == 2 and message in done.stderr and done.stdout == "", (name, done.stderr)
    for option, value in (("--budget", "0"), ("--price", "-1"), ("--seed", "-1"), ("--aggregator", "bogus")):
        done = _simulate("--answers", answers, "--gold", gold, option, value)
        assert done.returncode == 2 and f"Invalid value for '{option}'" in done.stderr, (option, done.stderr)


def test_simulate_needs_an_item_for_every_task(tmp_path):
    data = load_dataset("rte")
    data.answers.to_csv(tmp_path / "answers.csv", index=False)
    data.gold.rename_axis("task").reset_index().to_csv(tmp_path / "gold.csv", index=False)
    data.items.head(400).to_csv(tmp_path / "items.csv", index=False)
    done = _simulate("--answers", str(tmp_path / "answers.csv"), "--gold", str(tmp_path / "gold.csv"), "--items",
                     str(tmp_path / "items.csv"), "--policy", "active", "--budget", "300")  # fmt: skip
    assert done.returncode == 2 and "the items lack 400 of the answers' 800 tasks" in done.stderr


def test_simulate_json_is_strict_json_and_counts_are_integers(tmp_path):
    answers, gold = _files(tmp_path)
    done = _simulate("--answers", answers, "--gold", gold, "--budget", "50", "--json")
    assert done.returncode == 0 and done.stderr == "", done.stderr  # no progress bar off a terminal
    summary = json.loads(done.stdout, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert summary["labels_bought"] == 50 and isinstance(summary["items_labeled"], int)
    table = _simulate("--answers", answers, "--gold", gold, "--budget", "50")
    unlabeled = 177 - summary["items_labeled"]
    assert f"{unlabeled} items got no label (budget) and count as wrong" in table.stdout


def test_simulate_a_bundled_data_set_by_name(tmp_path):
    by_name = _simulate("--dataset", "wsd", "--policy", "fixed", "--overlap", "3", "--json")
    answers, gold = _files(tmp_path)
    by_files = _simulate("--answers", answers, "--gold", gold, "--policy", "fixed", "--overlap", "3", "--json")
    assert by_name.returncode == 0, by_name.stderr
    assert json.loads(by_name.stdout) == json.loads(by_files.stdout)  # the same crowd, the same replay
    both = _simulate("--dataset", "wsd", "--answers", answers, "--gold", gold)
    assert both.returncode == 2 and "not both" in both.stderr


def test_simulate_refuses_a_crowd_with_one_label(tmp_path):
    pd.DataFrame({"task": [1, 2], "worker": ["a", "b"], "label": ["x", "x"]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"task": [1, 2], "label": ["x", "x"]}).to_csv(tmp_path / "g.csv", index=False)
    done = _simulate("--answers", str(tmp_path / "a.csv"), "--gold", str(tmp_path / "g.csv"))
    assert done.returncode == 2 and "every answer is 'x'" in done.stderr


def test_simulate_with_a_qualification_test_pays_for_it_and_scores_the_rest(tmp_path):
    done = _simulate("--dataset", "temp", "--control-share", "0.05", "--qualification", "3", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["control_items"] == 23 and summary["items"] == 462 - 23 == summary["items_labeled"]
    assert summary["labels_per_item"] == summary["labels_bought"] / 439
    refused = _simulate("--dataset", "temp", "--qualification", "3")
    assert refused.returncode == 2 and "--qualification needs control tasks" in refused.stderr
    fixed = _simulate("--dataset", "temp", "--policy", "fixed", "--control-share", "0.05", "--qualification", "3")
    assert fixed.returncode == 2 and "--qualification is for --policy dynamic" in fixed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "fixed", "--confidence-target", "0.6"], "--confidence-target is for --policy dynamic;"),
        (["--policy", "fixed", "--strategy", "margin"], "--strategy is for --policy active;"),
        (["--overlap", "2"], "--overlap is for --policy fixed; --policy dynamic does not read it"),
        (["--policy", "dynamic", "--aggregator", "glad"], "--aggregator is for --policy fixed;"),
        (["--policy", "active", "--control-share", "0.1"], "--control-share is for --policy fixed or dynamic;"),
        (["--policy", "fixed", "--overlap", "50"], "temp has at most 10 answers per task; --overlap 50 cannot"),
        (["--policy", "dynamic", "--max-overlap", "11"], "temp has at most 10 answers per task; --max-overlap 11"),
        (["--min-overlap", "11"], "temp has at most 10 answers per task; --min-overlap 11"),
        (["--token", "cl_x"], "--token is for --url"),
        (["--url", "localhost:8000", "--token", "cl_x"], "the server URL must be an absolute http://"),
    ],
)
def test_simulate_refuses_an_option_its_policy_would_not_use(args, message):
    """Each ran, ignoring the option (or buying 10 answers per item for ``--overlap 50``), and exited 0."""
    done = _simulate("--dataset", "temp", *args, "--json")
    assert done.returncode == 2 and message in done.stderr and done.stdout == "", done.stderr


def test_simulate_takes_every_answer_recorded_when_asked():
    done = _simulate("--dataset", "temp", "--policy", "fixed", "--overlap", "10", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["labels_per_item"] == 10.0
