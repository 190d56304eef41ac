"""The command line, run as a user runs it: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from crowdloop.datasets import load_dataset


def crowdloop(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crowdloop", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.fixture(scope="module")
def rte_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("rte")
    data = load_dataset("rte")
    data.answers.to_csv(folder / "answers.csv", index=False)
    data.gold.rename_axis("task").reset_index().to_csv(folder / "gold.csv", index=False)
    return folder / "answers.csv", folder / "gold.csv"


def test_main_job_on_a_bundled_dataset():
    done = crowdloop("aggregate", "--dataset", "rte")
    assert done.returncode == 0, done.stderr
    assert "DefaultAggregator" in done.stderr
    accuracy = float(next(line for line in done.stderr.splitlines() if "accuracy" in line).split("│")[2])
    assert accuracy > 0.92


def test_aggregate_writes_labels_and_workers(rte_files, tmp_path):
    answers, gold = rte_files
    out, workers = tmp_path / "labels.csv", tmp_path / "workers.parquet"
    done = crowdloop(
        "aggregate",
        str(answers),
        "--method",
        "dawid_skene",
        "--gold",
        str(gold),
        "--out",
        str(out),
        "--workers-out",
        str(workers),
    )
    assert done.returncode == 0, done.stderr
    labels = pd.read_csv(out)
    assert list(labels.columns) == ["task", "label", "confidence"]
    assert len(labels) == 800 and labels["confidence"].between(0.5, 1.0).all()
    truth = pd.read_csv(gold).set_index("task")["label"]
    assert (labels.set_index("task")["label"] == truth.reindex(labels["task"]).to_numpy()).mean() > 0.92
    table = pd.read_parquet(workers)
    assert {"worker", "answers", "skill", "gold_accuracy"} <= set(table.columns)
    assert table["answers"].sum() == 8000
    assert "accuracy" in done.stderr


def test_fit_gold_reports_cross_fitted_accuracy(rte_files, tmp_path):
    answers, gold = rte_files
    done = crowdloop(
        "aggregate",
        str(answers),
        "--gold",
        str(gold),
        "--fit-gold",
        "--method",
        "mv",
        "--out",
        str(tmp_path / "l.jsonl"),
    )
    assert done.returncode == 0, done.stderr
    accuracy = float(next(line for line in done.stderr.splitlines() if "accuracy" in line).split("│")[2])
    assert 0.85 < accuracy < 0.99  # never the trivial 1.0 of scoring clamped gold
    labels = pd.read_json(tmp_path / "l.jsonl", lines=True)
    truth = pd.read_csv(gold).set_index("task")["label"]
    assert (labels.set_index("task")["label"] == truth.reindex(labels["task"]).to_numpy()).all()


def test_column_mapping_and_stdout(tmp_path):
    frame = pd.DataFrame({"item": [1, 1, 2], "annotator": ["a", "b", "a"], "answer": ["x", "x", "y"]})
    path = tmp_path / "renamed.tsv"
    frame.to_csv(path, sep="\t", index=False)
    done = crowdloop(
        "aggregate",
        str(path),
        "--task-col",
        "item",
        "--worker-col",
        "annotator",
        "--label-col",
        "answer",
        "-o",
        "-",
        "-m",
        "mv",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["task,label,confidence", "1,x,1.0", "2,y,1.0"]


@pytest.mark.parametrize(
    ("content", "suffix", "args", "message", "code"),
    [
        ("task,worker\n1,a\n", ".csv", [], "lack column(s) label", 2),
        ('task,worker,label\n1,a,"x\n', ".csv", [], "cannot be read as csv", 2),
        ("task,worker,label\n", ".csv", [], "answers are empty", 2),
        ("task,worker,label\n1,a,x\n", ".xlsx", [], "unknown format .xlsx", 2),
        ("task,worker,label\n1,a,x\n", ".csv", ["--method", "magic"], "unknown aggregation method 'magic'", 2),
        ("task,worker,label\n1,a,x\n", ".csv", ["--task-col", "item"], "no column(s) item", 2),
        # no task column was a KeyError traceback (the ids were aligned with gold before the check)
        ("item,worker,label\n1,a,x\n", ".csv", [], "lack column(s) task; found item, worker, label", 2),
        ("task\tworker\tlabel\n1\ta\tx\n", ".csv", [], "lack column(s) task, worker, label; found task", 2),
        ("", ".jsonl", [], "lack column(s) task, worker, label; found no columns", 2),
    ],
)
def test_errors_are_one_clear_line(tmp_path, content, suffix, args, message, code):
    path = tmp_path / f"answers{suffix}"
    path.write_text(content)
    done = crowdloop("aggregate", str(path), *args)
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr


@pytest.fixture
def wsd_parquet(tmp_path) -> Path:
    path = tmp_path / "answers.parquet"
    load_dataset("wsd").answers.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--master", "local[2]"], "--master is for --engine spark; --engine local runs in this process"),
        (["--engine", "stream", "--master", "local[2]"], "--master is for --engine spark; --engine stream runs"),
        (["--engine", "stream", "--dataset", "rte"], "--engine stream reads an ANSWERS.parquet file, not --dataset"),
        (["--engine", "spark", "--dataset", "rte"], "--engine spark reads an ANSWERS.parquet file, not --dataset"),
    ],
)
def test_options_an_engine_would_ignore_are_refused(wsd_parquet, tmp_path, args, message):
    """--dataset with stream/Spark and --master without Spark did nothing, and said nothing."""
    done = crowdloop("aggregate", str(wsd_parquet), *args, "--out", str(tmp_path / "labels.parquet"))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "labels.parquet").exists()


def test_spark_input_problems_are_one_line_before_spark_starts(wsd_parquet, tmp_path):
    """A missing file was a page of Java stack after Spark's start, with exit code 1; --out on
    the answers themselves made Spark delete them (overwrite) before reading them."""
    out = str(tmp_path / "labels.parquet")
    missing = crowdloop("aggregate", str(tmp_path / "nope.parquet"), "--engine", "spark", "--out", out)
    assert missing.returncode == 2 and "nope.parquet: no such file or directory" in missing.stderr
    assert missing.stderr.strip().count("\n") == 0, missing.stderr
    same = crowdloop("aggregate", str(wsd_parquet), "--engine", "spark", "--out", str(wsd_parquet))
    assert same.returncode == 2 and "is the answers" in same.stderr, same.stderr
    assert pd.read_parquet(wsd_parquet).shape == (1770, 3)


def test_spark_without_pyspark_says_how_to_install_it(wsd_parquet, tmp_path):
    """Run where pyspark cannot be imported (as on an install without the spark extra)."""
    script = (
        "import sys; sys.modules['pyspark'] = None; from crowdloop.cli import main; "
        f"main(['aggregate', {str(wsd_parquet)!r}, '--engine', 'spark', '--out', {str(tmp_path / 'x.parquet')!r}])"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "pip install 'crowdloop[spark]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_missing_file_and_gold_outside_label_set(tmp_path):
    done = crowdloop("aggregate", str(tmp_path / "nope.csv"))
    assert done.returncode == 2 and "no such file" in done.stderr
    (tmp_path / "a.csv").write_text("task,worker,label\n1,a,x\n1,b,y\n")
    (tmp_path / "g.csv").write_text("task,label\n1,z\n")
    done = crowdloop("aggregate", str(tmp_path / "a.csv"), "--gold", str(tmp_path / "g.csv"), "--fit-gold")
    assert done.returncode == 2 and "'z' are not in the label set" in done.stderr


def test_a_fit_over_the_memory_limit_is_refused_with_what_to_do(tmp_path, monkeypatch):
    """Many classes used to mean gigabytes of confusion matrices and a process killed without a word."""
    n = 2_000
    answers = pd.DataFrame(
        {"task": range(n), "worker": [f"w{i % 100}" for i in range(n)], "label": [i % 1_000 for i in range(n)]}
    )
    answers.to_csv(tmp_path / "answers.csv", index=False)
    monkeypatch.setenv("CROWDLOOP_MAX_MEMORY_MB", "200")
    done = crowdloop("aggregate", str(tmp_path / "answers.csv"), "--method", "dawid_skene")
    assert done.returncode == 2, done.stderr
    assert "dawid_skene on 2,000 answers (2,000 tasks, 100 workers, 1,000 classes) would need about" in done.stderr
    assert "limit of 200 MB" in done.stderr and "majority_vote (" in done.stderr, done.stderr
    assert crowdloop("aggregate", str(tmp_path / "answers.csv"), "--method", "majority_vote").returncode == 0


def test_export_refuses_a_format_label_studio_ignores(tmp_path):
    """--what label-studio --format parquet wrote JSON to the .parquet path."""
    done = crowdloop("export", "1", "--what", "label-studio", "--format", "parquet", "-o", str(tmp_path / "x.parquet"))
    assert done.returncode == 2 and "label-studio is always JSON" in done.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_export_refuses_a_format_its_file_suffix_contradicts(tmp_path):
    """-o labels.parquet without --format wrote CSV into it; now the suffix names the format, and
    a --format that says otherwise is refused before anything is asked of the server."""
    done = crowdloop("export", "1", "--format", "csv", "-o", str(tmp_path / "labels.parquet"), "--token", "t")
    assert done.returncode == 2 and "--format csv but" in done.stderr and "ends in .parquet" in done.stderr
    assert not (tmp_path / "labels.parquet").exists()


def test_export_refuses_parquet_to_a_terminal(tmp_path):
    """-o - is stdout, as aggregate's: it wrote a file named "-". Parquet (binary) goes only into a pipe or file."""
    import pty

    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "crowdloop", "export", "1", "--format", "parquet", "-o", "-",
             "--url", "http://127.0.0.1:9", "--token", "cl_x"],
            stdout=follower, stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=120,
        )  # fmt: skip
    finally:
        os.close(leader)
        os.close(follower)
    assert done.returncode == 2 and "Parquet is binary" in done.stderr
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("args", [["token", "me"], ["create-user", "me", "--role", "admin"]])
def test_admin_refuses_a_sqlite_file_that_does_not_exist(tmp_path, args):
    """A mistyped path answered "no user named 'me'" (or created the user) and left a new database behind."""
    typo = tmp_path / "crowdlop.db"
    done = crowdloop("admin", *args, "--database-url", f"sqlite:///{typo}")
    assert done.returncode == 6 and f"no SQLite database at {typo}" in done.stderr
    assert "crowdloop serve" in done.stderr and done.stdout == ""
    assert not typo.exists()
    memory = crowdloop("admin", *args, "--database-url", "sqlite://")
    assert memory.returncode == 2 and "in-memory database" in memory.stderr


def test_needs_exactly_one_input():
    done = crowdloop("aggregate")
    assert done.returncode == 2 and "either an ANSWERS file or --dataset" in done.stderr
    done = crowdloop("aggregate", "--dataset", "imagenet")
    assert (
        done.returncode == 6 and "no data set 'imagenet'; available: cf, ms, product, rte, sp, temp, wsd" in done.stderr
    )


def test_numeric_method(tmp_path):
    path = tmp_path / "scores.csv"
    pd.DataFrame({"task": [1, 1, 2], "worker": ["a", "b", "a"], "label": [1.0, 3.0, 5.0]}).to_csv(path, index=False)
    done = crowdloop("aggregate", str(path), "-m", "mean", "-o", "-")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["task,label", "1,2.0", "2,5.0"]


def test_numeric_method_reads_scores_written_with_leading_zeros(tmp_path):
    """The emotion data's ``00`` and ``-0`` scores kept its label column text, and ``-m mean`` refused
    it ("column label has dtype object"); categorical methods still read ``007`` as written."""
    path = tmp_path / "scores.csv"
    path.write_text("task,worker,label\n1,a,00\n1,b,-0\n2,a,007\n2,b,5\n")
    done = crowdloop("aggregate", str(path), "-m", "mean", "-o", "-")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["task,label", "1,0.0", "2,6.0"]
    voted = crowdloop("aggregate", str(path), "-m", "mv", "-o", "-")
    assert voted.stdout.splitlines()[2] == "2,007,0.5", voted.stdout  # a tie, to the first label as written
    path.write_text("task,worker,label\n1,a,00\n1,b,high\n2,a,low\n2,b,high\n")
    refused = crowdloop("aggregate", str(path), "-m", "mean")
    assert refused.returncode == 2 and "3 answer(s) have a label that is not a number, such as 'high', 'low'" in (
        refused.stderr
    )


def test_numeric_gold_is_measured_and_fit_gold_needs_gold(tmp_path):
    """--gold with a numeric method printed nothing about gold; --fit-gold without --gold was ignored."""
    path, gold = tmp_path / "scores.csv", tmp_path / "gold.csv"
    pd.DataFrame({"task": [1, 1, 2, 2], "worker": list("abab"), "label": [1, 3, 5, 5]}).to_csv(path, index=False)
    gold.write_text("task,label\n1,3\n2,5\n")
    done = crowdloop("aggregate", str(path), "-m", "mean", "--gold", str(gold))
    assert done.returncode == 0, done.stderr
    assert "gold_mae" in done.stderr and "0.5000" in done.stderr and "0.7071" in done.stderr, done.stderr
    crossed = crowdloop("aggregate", str(path), "-m", "mean", "--gold", str(gold), "--fit-gold")
    assert crossed.returncode == 0 and "0.5000" in crossed.stderr, crossed.stderr  # held out: not the trivial 0
    alone = crowdloop("aggregate", str(path), "-m", "mean", "--fit-gold", "-o", str(tmp_path / "labels.csv"))
    assert alone.returncode == 2 and "--fit-gold) needs gold (--gold GOLD)" in alone.stderr, alone.stderr
    assert not (tmp_path / "labels.csv").exists()


def test_summary_says_how_many_gold_tasks_were_scored(tmp_path):
    """Gold rows matching no task (ids zero-padded in one file only) were dropped without a word,
    and the accuracy on one task of four read like the accuracy on all."""
    answers, gold = tmp_path / "answers.csv", tmp_path / "gold.csv"
    answers.write_text("task,worker,label\n1,a,x\n1,b,x\n2,a,y\n2,b,x\n")
    gold.write_text("task,label\n1,x\n0002,y\n0003,y\n0004,x\n")
    done = crowdloop("aggregate", str(answers), "--gold", str(gold), "-m", "mv", "-o", str(tmp_path / "labels.csv"))
    assert done.returncode == 0, done.stderr
    assert "on 1 of 4 gold tasks" in done.stderr, done.stderr
    assert "warning: 3 gold task(s) have no answers and were not scored (0002, 0003, ...)" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "{answers}"], "is an input file; writing the output there would replace it"),
        (["--gold", "{gold}", "--workers-out", "{gold}"], "is an input file; writing the output there"),
        (["-o", "lab.xlsx"], "unknown format .xlsx"),
        (["-o", "lab.csv", "--workers-out", "workers.xlsx"], "unknown format .xlsx"),
        (["-o", "lab.csv", "--workers-out", "lab.csv"], "--out and --workers-out are both"),
        (["-o", "adir.csv"], "adir.csv: is a directory"),
        (["-o", "afile/x.csv"], "afile is a file, not a directory"),
        (["-o", "lab.csv", "--workers-out", "/proc/w.csv"], "/proc/w.csv: cannot be written"),  # after lab.csv
        (["-o", "-", "--workers-out", "-"], "--out and --workers-out are both - (stdout)"),  # ran together
    ],
)
def test_outputs_are_checked_before_anything_is_read(tmp_path, args, message):
    """-o on the answers or gold replaced them; a bad suffix failed after the whole fit (a bad
    --workers-out after lab.csv was written); a directory in the way was a traceback."""
    answers, gold = tmp_path / "answers.csv", tmp_path / "gold.csv"
    answers.write_text("task,worker,label\n1,a,x\n1,b,x\n")
    gold.write_text("task,label\n1,x\n")
    (tmp_path / "adir.csv").mkdir()
    (tmp_path / "afile").write_text("")
    args = [arg.format(answers=answers, gold=gold) for arg in args]
    done = crowdloop("aggregate", str(answers), "-m", "mv", *args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr, done.stderr
    assert answers.read_text() == "task,worker,label\n1,a,x\n1,b,x\n" and gold.read_text() == "task,label\n1,x\n"
    assert not (tmp_path / "lab.csv").exists()


def test_stream_output_on_the_answers_is_refused(wsd_parquet):
    """--engine stream -o on its answers replaced them with the labels."""
    done = crowdloop("aggregate", str(wsd_parquet), "--engine", "stream", "--out", str(wsd_parquet))
    assert done.returncode == 2 and "is an input file" in done.stderr, done.stderr
    assert pd.read_parquet(wsd_parquet).shape == (1770, 3)


def test_stream_output_that_cannot_be_written_is_refused_before_the_fit(wsd_parquet, tmp_path):
    """As local refuses it: it was "File exists", exit 1, after the whole fit."""
    (tmp_path / "afile").write_text("")
    done = crowdloop(
        "aggregate", str(wsd_parquet), "--engine", "stream", "--out", str(tmp_path / "afile" / "x.parquet")
    )
    assert done.returncode == 2 and "afile is a file, not a directory" in done.stderr, done.stderr


def test_column_options_with_a_bundled_data_set_are_refused():
    """--task-col with --dataset ran and exited 0, the option ignored."""
    done = crowdloop("aggregate", "--dataset", "rte", "--task-col", "item")
    assert done.returncode == 2 and "name an ANSWERS file's columns" in done.stderr, done.stderr


def test_worker_ids_of_mixed_kinds_are_written_to_parquet_with_their_skills(tmp_path):
    """JSON Lines workers "a" and 2: the worker table's Parquet was a pyarrow traceback after the
    labels were written, and worker 2 had no skill in any format."""
    rows = [(1, "a", "x"), (1, 2, "y"), (2, "a", "y"), (2, 2, "y"), (3, "a", "x"), (3, 2, "x")]
    answers = tmp_path / "mixed.jsonl"
    answers.write_text("".join(json.dumps({"task": t, "worker": w, "label": lab}) + "\n" for t, w, lab in rows))
    done = crowdloop(
        "aggregate", str(answers), "-o", str(tmp_path / "l.csv"), "--workers-out", str(tmp_path / "w.parquet")
    )
    assert done.returncode == 0, done.stderr
    workers = pd.read_parquet(tmp_path / "w.parquet")
    assert sorted(workers["worker"]) == ["2", "a"] and workers["skill"].notna().all(), workers


def test_parquet_keeps_a_mix_of_numbers_as_numbers(tmp_path):
    """Only a column pyarrow finds no type for goes as text: 1 and 2.5 stay numbers."""
    from crowdloop.io import write_table

    frame = pd.DataFrame({"score": pd.Series([1, 2.5], dtype=object), "worker": pd.Series(["a", 2], dtype=object)})
    write_table(frame, tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert back["score"].tolist() == [1.0, 2.5] and back["worker"].tolist() == ["a", "2"]


def test_methods_datasets_agreement_and_version(rte_files):
    methods = crowdloop("methods")
    assert methods.returncode == 0
    for name in ("default", "dawid_skene", "glad", "mace", "ibcc", "reliability_weighted_mean"):
        assert name in methods.stdout
    datasets = crowdloop("datasets")
    assert "rte" in datasets.stdout and "8000" in datasets.stdout
    agreement = crowdloop("agreement", str(rte_files[0]))
    assert agreement.returncode == 0 and "krippendorff_alpha" in agreement.stderr
    assert crowdloop("--version").stdout.startswith("crowdloop, version")


def test_agreement_refuses_when_no_two_workers_share_a_task(tmp_path):
    """It printed alpha 1.0 and kappa 1.0 for one worker's repeats on each task."""
    path = tmp_path / "answers.csv"
    path.write_text("task,worker,label\n1,a,x\n1,a,x\n1,a,x\n2,b,y\n2,b,y\n")
    done = crowdloop("agreement", str(path))
    assert done.returncode == 2 and "two or more distinct workers" in done.stderr, done.stderr
    assert "1.0000" not in done.stderr


def test_every_command_is_in_the_readme():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    from crowdloop.cli import cli

    for name in cli.commands:
        assert f"crowdloop {name}" in readme, f"`crowdloop {name}` is not documented in README.md"


HEAVY = ("scipy", "pandas", "sqlalchemy", "sklearn", "numpy", "alembic", "fastapi", "uvicorn")


def test_help_imports_no_heavy_library():
    """`crowdloop --help` took 3.6-4.6 s on a 2-core host: the demo's import brought scipy, the admin's
    pandas and SQLAlchemy. Help and every group's help now import none of them."""
    groups = ["admin", "edge", "items", "models", "projects"]
    script = (
        "import sys\nfrom crowdloop.cli import cli\n"
        f"for args in [['--help']] + [[g, '--help'] for g in {groups!r}] + [['simulate', '--help']]:\n"
        "    cli.main(args=args, prog_name='crowdloop', standalone_mode=False)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_option_choices_written_out_match_the_library():
    """The CLI writes out the names its options offer so as not to import the library for --help."""
    from crowdloop.cli import cli
    from crowdloop.demo.data import DEMO_SETS
    from crowdloop.learning import FAMILIES, STRATEGIES
    from crowdloop.learning.models import MAX_SEED
    from crowdloop.quality import CATEGORICAL_METHODS
    from crowdloop.sim.active import ActiveLearning

    def option(command: str, name: str) -> Any:
        *groups, leaf = command.split()
        found: Any = cli
        for part in [*groups, leaf]:
            found = found.commands[part]
        return next(param for param in found.params if param.name == name)

    assert list(option("simulate", "aggregator").type.choices) == list(CATEGORICAL_METHODS)
    assert list(option("simulate", "strategy").type.choices) == list(STRATEGIES)
    assert list(option("models prioritize", "strategy").type.choices) == list(STRATEGIES)
    assert list(option("simulate", "model").type.choices) == list(FAMILIES)
    assert list(option("demo", "dataset").type.choices) == sorted(DEMO_SETS)
    for name, attribute in (("strategy", "strategy"), ("retrain_every", "retrain_every"), ("model", "family"),
                            ("targets", "targets")):  # fmt: skip
        assert option("simulate", name).default == getattr(ActiveLearning, attribute)
    for command in ("simulate", "train", "models prioritize", "demo"):
        assert option(command, "seed").type.max == MAX_SEED


class _FakeClient:
    """Stands in for the SDK's Client in commands that only call it."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers

    def __enter__(self) -> _FakeClient:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return self.answers[name]


def test_items_import_shows_a_spinner_while_it_uploads(monkeypatch, tmp_path):
    """A 50,000-row import showed nothing for 16 s; it now has train's spinner on stderr (on a terminal)."""
    from click.testing import CliRunner

    from crowdloop.cli import cli, platform

    shown: list[str] = []
    spinning: list[bool] = []

    @contextmanager
    def spinner(text: str) -> Iterator[Any]:
        shown.append(text)
        spinning.append(True)
        yield lambda _: None
        spinning.append(False)

    def upload(project_id: int, path: Path) -> dict[str, Any]:
        assert spinning == [True], "the upload runs under the spinner"
        return {"created": 1, "rejected": [], "near_duplicates": []}

    monkeypatch.setattr(platform, "spinner", spinner)
    monkeypatch.setattr(platform, "_client", lambda url, token: _FakeClient(upload_items=upload))
    (tmp_path / "items.csv").write_text("text\none\n")
    done = CliRunner().invoke(cli, ["items", "import", "3", str(tmp_path / "items.csv")])
    assert done.exit_code == 0, done.output
    assert shown == ["importing items.csv into project 3"] and spinning == [True, False]


def test_help_summaries_are_whole_and_serve_says_how_the_first_admin_signs_in():
    """admin --help cut the token command's summary at "(e.g."; serve --help never named CROWDLOOP_ADMIN_TOKEN."""
    from click.testing import CliRunner

    from crowdloop.cli import cli

    admin = CliRunner().invoke(cli, ["admin", "--help"], terminal_width=80).output
    assert "token        Issue another token for an existing user who lost theirs." in admin
    assert "(e.g." not in admin
    serve = " ".join(CliRunner().invoke(cli, ["serve", "--help"], terminal_width=80).output.split())
    assert "The first admin signs in with the token set in CROWDLOOP_ADMIN_TOKEN" in serve


def test_a_table_cell_shows_a_fraction_to_four_places():
    """``remove-gold`` printed a gold accuracy as 0.46938775510204084; ``--json`` keeps every digit."""
    from crowdloop.cli.platform import _cell

    assert [_cell(0.46938775510204084), _cell(12345.678), _cell(1.0), _cell(3), _cell(None), _cell({"b": 1})] == [
        "0.4694", "12345.678", "1.0", "3", "None", '{"b": 1}'
    ]  # fmt: skip
