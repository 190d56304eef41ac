"""Accuracy and time of every aggregator on every shared data set, Crowd-Kit beside.

    python benchmarks/truth_inference.py [--crowdkit-python /path/to/venv/bin/python]

Writes ``benchmarks/results/truth_inference.md`` (and ``.json``). Crowd-Kit runs
in its own environment (see ``benchmarks/requirements-crowdkit.txt``) on the
same answer files; its columns are left out when it is not available.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import (
    CATEGORICAL_SETS,
    NUMERIC_SETS,
    RESULTS,
    SHARED_DATASETS,
    find_crowdkit_python,
    machine,
    markdown,
    run_crowdkit,
)
from crowdloop.datasets import bundled_datasets, load_dataset
from crowdloop.quality import CATEGORICAL_METHODS, NUMERIC_METHODS
from crowdloop.quality.metrics import accuracy_on_gold

CROWDKIT_NAMES = {
    "majority_vote": "MajorityVote",
    "wawa": "Wawa",
    "zero_based_skill": "ZeroBasedSkill",
    "dawid_skene": "DawidSkene",
    "one_coin_dawid_skene": "OneCoinDawidSkene",
    "glad": "GLAD",
    "mace": "MACE",
}
# Best published accuracy per data set: max over Crowd-Kit 1.4.2's methods and the EBCC,
# BWA and IBCC-VB columns of shared/peers.md.
BEST_KNOWN = {
    "bluebird": 0.8889, "cf": 0.9000, "dog": 0.8426, "face": 0.6404, "ms": 0.8000, "product": 0.9397,
    "relevance": 0.6173, "rte": 0.9313, "sp": 0.9170, "temp": 0.9437, "web": 0.8292, "wsd": 0.9944,
}  # fmt: skip


def ours(answers: pd.DataFrame, gold: pd.Series) -> dict[str, tuple[float, float]]:
    """Accuracy and seconds of each crowdloop method."""
    scores = {}
    for name, cls in CATEGORICAL_METHODS.items():
        started = time.perf_counter()
        labels = cls().fit(answers).labels_
        scores[name] = (accuracy_on_gold(labels, gold), time.perf_counter() - started)
    return scores


def crowdkit(
    python: str | None, answers: pd.DataFrame, gold: pd.Series, workdir: Path, timeout: float = 150.0
) -> dict[str, object]:
    """Crowd-Kit's accuracy per method on the same answers (T/O after ``timeout`` seconds)."""
    path = workdir / "answers.csv"
    answers.to_csv(path, index=False)
    jobs = {name: (ck, path) for name, ck in CROWDKIT_NAMES.items()}
    # Crowd-Kit 1.4.2's MACE indexes spam strategies by sorted worker but looks them up by
    # order of appearance: feeding it rows already sorted shows what its model really gives.
    sorted_path = workdir / "answers_sorted.csv"
    answers.sort_values(["worker", "label"], kind="stable").to_csv(sorted_path, index=False)
    jobs["mace_rows_sorted"] = ("MACE", sorted_path)
    results: dict[str, object] = {}
    for name, (method, source) in jobs.items():
        out = workdir / f"{name}.csv"
        run = run_crowdkit(python, {"answers": str(source), "method": method, "out": str(out)}, timeout)
        if "error" in run:
            results[name] = run["error"]
            continue
        labels = pd.read_csv(out, dtype={"task": str}).set_index("task")["label"]
        text_gold = pd.Series(gold.to_numpy(), index=gold.index.astype(str))
        results[name] = (accuracy_on_gold(labels, text_gold), float(run["seconds"]))
    return results


def numeric_rows(root: Path | None) -> list[dict[str, object]]:
    rows = []
    for name in NUMERIC_SETS if root else []:
        data = load_dataset(name, root)
        gold = data.gold.astype(float)
        for method, cls in NUMERIC_METHODS.items():
            estimate = cls().fit(data.answers).labels_.reindex(gold.index)
            error = estimate - gold
            rows.append({
                "data set": name, "method": method, "MAE": float(error.abs().mean()),
                "RMSE": float(np.sqrt((error**2).mean())), "Pearson r": float(estimate.corr(gold)),
            })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crowdkit-python", help="python of a venv with crowd-kit==1.4.2")
    parser.add_argument("--no-crowdkit", action="store_true")
    parser.add_argument(
        "--crowdkit-timeout", type=float, default=150.0,
        help="seconds before a Crowd-Kit fit is marked T/O (product's GLAD took 128 s at load 3)",
    )  # fmt: skip
    args = parser.parse_args()
    python = None if args.no_crowdkit else find_crowdkit_python(args.crowdkit_python)
    root = SHARED_DATASETS if SHARED_DATASETS.exists() else None
    sets = CATEGORICAL_SETS if root else [s for s in bundled_datasets() if s in CATEGORICAL_SETS]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in sets:
            data = load_dataset(name, root)
            mine = ours(data.answers, data.gold)
            theirs = crowdkit(python, data.answers, data.gold, Path(tmp), args.crowdkit_timeout) if python else {}
            records.append({"data set": name, "ours": mine, "crowdkit": theirs})
            best = max(mine.items(), key=lambda kv: kv[1][0])
            print(
                f"{name:10s} default {mine['default'][0]:.4f}  best ours {best[0]} {best[1][0]:.4f}",
                flush=True,
            )
    report = render(records, numeric_rows(root), python is not None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "truth_inference.md").write_text(report)
    (RESULTS / "truth_inference.json").write_text(json.dumps(records, indent=1, default=str))
    print(report)


def _acc(entry: object) -> float:
    return float(entry[0]) if isinstance(entry, tuple | list) else float("nan")


def render(records: list[dict], numeric: list[dict[str, object]], with_crowdkit: bool) -> str:
    accuracy = pd.DataFrame({r["data set"]: {m: _acc(v) for m, v in r["ours"].items()} for r in records}).T
    seconds = pd.DataFrame({r["data set"]: {m: v[1] for m, v in r["ours"].items()} for r in records}).T
    lines = [
        "# Truth inference: accuracy on gold",
        "",
        f"Machine: {machine()}.",
        "",
        "Accuracy against the gold labels of each data set in `shared/datasets` (every answer kept,",
        "repeats included; no gold used in fitting). Regenerate with `python benchmarks/truth_inference.py`.",
        "",
        "## crowdloop",
        "",
        markdown(_with_mean(accuracy).reset_index(names="data set")),
        "",
        "`best known`: the best of Crowd-Kit 1.4.2 and the published EBCC, BWA and IBCC-VB columns in",
        "`shared/peers.md` for each data set.",
        "",
        markdown(_summary(accuracy)),
        "",
        "## Seconds per fit",
        "",
        markdown(seconds.round(3).reset_index(names="data set")),
    ]
    if with_crowdkit:
        lines += ["", *_crowdkit_section(records, accuracy)]
    if numeric:
        lines += ["", "## Numeric answers", "", markdown(pd.DataFrame(numeric))]
    return "\n".join(lines) + "\n"


def _with_mean(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.loc["mean"] = frame.mean()
    return out


def _summary(accuracy: pd.DataFrame) -> pd.DataFrame:
    best = pd.Series(BEST_KNOWN).reindex(accuracy.index)
    rows = [
        {"": "default (mean)", "value": accuracy["default"].mean()},
        {"": "best known per set (mean)", "value": best.mean()},
        {"": "default minus best known, worst set", "value": (accuracy["default"] - best).min()},
    ]
    return pd.DataFrame(rows)


def _crowdkit_section(records: list[dict], accuracy: pd.DataFrame) -> list[str]:
    rows = []
    for record in records:
        row: dict[str, object] = {"data set": record["data set"]}
        for name, value in record["crowdkit"].items():
            mine = accuracy.loc[record["data set"], name] if name in accuracy.columns else float("nan")
            theirs = value if isinstance(value, str) else f"{value[0]:.4f} ({value[1]:.2f} s)"
            row[name] = theirs if np.isnan(mine) else f"{mine:.4f} / {theirs}"
        rows.append(row)
    return [
        "## Side by side with Crowd-Kit 1.4.2",
        "",
        "Each cell: crowdloop accuracy / Crowd-Kit accuracy (Crowd-Kit seconds), same answers.",
        "`mace_rows_sorted`: Crowd-Kit's MACE on the same answers sorted by worker, see the README.",
        "",
        markdown(pd.DataFrame(rows)),
    ]


if __name__ == "__main__":
    main()
