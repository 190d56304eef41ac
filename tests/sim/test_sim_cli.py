"""`crowdloop simulate` run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

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
