"""benchmarks/scale.py cleans up only what it made in --workdir (it removed the whole directory)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd

from crowdloop.sim.parquet import write_synthetic_parquet

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _scale_module():
    """benchmarks/scale.py under a name of its own (tests/scale is a package named ``scale`` too)."""
    spec = importlib.util.spec_from_file_location("benchmark_scale", BENCHMARKS / "scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCHMARKS))  # for its ``_common``
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def test_workdir_keeps_what_was_there_and_loses_what_the_run_made(tmp_path):
    scratch = _scale_module().Scratch
    work = tmp_path / "mine"
    work.mkdir()
    (work / "notes.txt").write_text("the user's, not the benchmark's")
    with scratch(work) as run:
        answers, gold = run.input("answers-2000.parquet"), run.input("gold-2000.parquet")
        write_synthetic_parquet(answers, 2_000, gold_path=gold)
        run.made(answers, gold)
        out = run.output("labels-memory-2000.parquet")
        pd.read_parquet(answers).to_parquet(out)
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]

    fresh = tmp_path / "new"
    with scratch(fresh, keep=True) as run:
        write_synthetic_parquet(run.input("answers-1000.parquet"), 1_000)
        run.made(run.input("answers-1000.parquet"))
    assert (fresh / "answers-1000.parquet").exists()  # --keep: for the next run
    with scratch(fresh) as run:
        assert run.input("answers-1000.parquet").exists()  # reused, not made by this run: kept
    assert (fresh / "answers-1000.parquet").exists()
    with scratch(tmp_path / "gone") as run:
        run.output("x").write_text("x")
    assert not (tmp_path / "gone").exists()  # made by the run, empty at its end
