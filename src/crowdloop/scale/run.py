"""One call from a Parquet file of answers to a Parquet file of labels, past one machine's memory.

What ``crowdloop aggregate --engine stream|spark`` runs. ``stream`` partitions the
file on local disk and streams it (:mod:`crowdloop.scale.streaming`); ``spark``
runs the same passes on a Spark cluster (:mod:`crowdloop.scale.spark`, imported
only here, so the core never needs pyspark).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crowdloop.errors import InvalidInputError
from crowdloop.quality._kernels import Progress
from crowdloop.quality.base import BaseClassificationAggregator
from crowdloop.scale.streaming import ParquetShards, stream_aggregate

ENGINES = ("local", "stream", "spark")


def aggregate_parquet(
    answers: Path | str,
    estimator: BaseClassificationAggregator,
    out: Path | str,
    *,
    engine: str = "stream",
    master: str = "local[*]",
    rename: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fit ``estimator`` on the Parquet ``answers`` with ``engine``; write ``task, label, confidence`` to ``out``.

    Returns run statistics (method, tasks are not counted to avoid another pass).
    """
    if engine not in ENGINES[1:]:
        raise InvalidInputError(f"engine must be one of {', '.join(ENGINES[1:])} here; got {engine!r}.")
    if Path(answers).suffix.lower() != ".parquet" or Path(out).suffix.lower() != ".parquet":
        raise InvalidInputError(
            "--engine stream/spark read and write Parquet: give ANSWERS.parquet and --out X.parquet."
        )
    started = time.perf_counter()
    if engine == "stream":
        fit_stats = _stream(answers, estimator, out, rename or {}, progress)
    else:
        fit_stats = _spark(answers, estimator, out, master, rename or {}, progress)
    n_iter = getattr(estimator, "n_iter_", None)
    return {"method": type(estimator).__name__, "engine": engine, **fit_stats, "iterations": n_iter,
            "seconds": time.perf_counter() - started}  # fmt: skip


def _stream(
    answers: Path | str, estimator: BaseClassificationAggregator, out: Path | str, rename: Mapping[str, str],
    progress: Progress | None,
) -> dict[str, Any]:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="crowdloop-shards-") as work:
        shards = ParquetShards.prepare(answers, work, rename={v: k for k, v in rename.items()})
        stream_aggregate(shards, estimator, out, progress)
        return {"workers": len(shards.workers), "answers": shards.n_answers}


def _spark(
    answers: Path | str, estimator: BaseClassificationAggregator, out: Path | str, master: str,
    rename: Mapping[str, str], progress: Progress | None,
) -> dict[str, Any]:  # fmt: skip
    from crowdloop.scale.fit import fit_sharded
    from crowdloop.scale.spark import SparkShards, spark_session

    spark = spark_session(master)
    frame = spark.read.parquet(str(answers))
    for source, target in rename.items():  # the file's column -> ours
        frame = frame.withColumnRenamed(source, target)
    engine = SparkShards.from_answers(spark, frame)
    fit = fit_sharded(estimator, engine, progress)
    engine.labels(fit).drop("probas").write.mode("overwrite").parquet(str(out))
    engine.unpersist()
    return {"workers": len(engine.workers), "answers": engine.n_answers}
