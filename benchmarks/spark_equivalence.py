"""Spark local[2] against the local engine on every categorical data set in ``../shared/datasets``.

    python benchmarks/spark_equivalence.py [--methods majority_vote dawid_skene ...]

Each data set's answers go to Spark as a DataFrame split into at least four partitions (so
tasks really are spread over shards), each method is fitted by both engines, and the table
gives the share of tasks whose label differs and the largest difference of any class
probability. Issue 7 asks for the same labels and probabilities within 1e-6. Writes
``benchmarks/results/spark_equivalence.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import pandas as pd

from _common import CATEGORICAL_SETS, RESULTS, SHARED_DATASETS, machine, markdown
from crowdloop.datasets import load_dataset
from crowdloop.quality import get_aggregator
from crowdloop.scale import fit_sharded

METHODS = ["majority_vote", "dawid_skene", "one_coin_dawid_skene", "default"]


def compare(spark, name: str, methods: list[str]) -> list[dict[str, object]]:
    from crowdloop.scale.spark import SparkShards

    answers = load_dataset(name, SHARED_DATASETS).answers
    partition = max(500, math.ceil(len(answers) / 4))
    engine = SparkShards.from_answers(spark, spark.createDataFrame(answers), partition_answers=partition)
    rows = []
    try:
        for method in methods:
            started = time.perf_counter()
            local = get_aggregator(method).fit(answers)
            fit = fit_sharded(get_aggregator(method), engine)
            labels = engine.labels(fit).toPandas().set_index("task")
            probas = np.stack(labels["probas"].to_numpy())
            expected = local.probas_.loc[labels.index].to_numpy()
            rows.append({
                "data set": name, "method": method, "answers": len(answers), "partitions": engine.n_partitions,
                "tasks": len(labels), "missing tasks": len(local.labels_) - len(labels),
                "labels differing": float((labels["label"] != local.labels_.loc[labels.index]).mean()),
                "max |p diff|": float(np.abs(probas - expected).max()),
                "seconds": round(time.perf_counter() - started, 1),
            })  # fmt: skip
            print(rows[-1], flush=True)
    finally:
        engine.unpersist()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--datasets", nargs="+", default=CATEGORICAL_SETS)
    args = parser.parse_args()
    from crowdloop.scale import spark_session

    spark = spark_session("local[2]")
    try:
        rows = [row for name in args.datasets for row in compare(spark, name, args.methods)]
    finally:
        spark.stop()
    table = pd.DataFrame(rows)
    worst = float(table["max |p diff|"].max())
    same = bool((table["labels differing"] == 0).all() and (table["missing tasks"] == 0).all())
    verdict = f"every label the same: {'yes' if same else 'no'}; largest probability difference {worst:.1e}"
    text = "\n".join([
        "# Spark local[2] against the local engine",
        "",
        f"Machine: {machine()}.",
        "",
        "Regenerate with `python benchmarks/spark_equivalence.py`. Issue 7's check: the same labels and",
        f"probabilities within 1e-6 on every data set. Result: {verdict}.",
        "",
        markdown(table.assign(**{"max |p diff|": table["max |p diff|"].map(lambda v: f"{v:.1e}")})),
        "",
    ])  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "spark_equivalence.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    (RESULTS / "spark_equivalence.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
