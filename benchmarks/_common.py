"""Shared helpers of the benchmark scripts: machine description, data location, tables."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
CATEGORICAL_SETS = [
    "bluebird",
    "cf",
    "dog",
    "face",
    "ms",
    "product",
    "relevance",
    "rte",
    "sp",
    "temp",
    "web",
    "wsd",
]
NUMERIC_SETS = ["emotion", "wordsim"]


def machine() -> str:
    """One line naming the machine, so recorded numbers keep their context."""
    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        cpu = model
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores ({cpu}), {memory:.0f} GiB; "
        f"Python {platform.python_version()}; {platform.system()} {platform.release()}; "
        f"load average {load:.1f} when recorded"
    )


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table without needing the optional ``tabulate`` package."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "–" if pd.isna(value) else f"{value:.4f}"
    return str(value)


def run_crowdkit(python: str | None, job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one job in Crowd-Kit's own environment (it needs scikit-learn<1.6, pandas<3).

    Returns ``{"labels_path": ..., "seconds": ...}`` or ``{"error": ...}``.
    """
    if python is None:
        return {"error": "not installed"}
    runner = ROOT / "benchmarks" / "crowdkit_runner.py"
    try:
        done = subprocess.run(
            [python, str(runner)], input=json.dumps(job), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": "T/O"}
    if done.returncode != 0:
        return {"error": "error", "stderr": done.stderr[-500:]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def find_crowdkit_python(explicit: str | None) -> str | None:
    """The interpreter that can import crowdkit: the given one, this one, or none."""
    if explicit:
        return explicit
    try:
        import crowdkit  # noqa: F401
    except ImportError:
        return None
    return sys.executable
