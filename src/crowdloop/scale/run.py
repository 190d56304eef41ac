"""One call from a Parquet file of answers to a Parquet file of labels, past one machine's memory.

What ``crowdloop aggregate --engine stream|spark`` runs. ``stream`` partitions the
file on local disk and streams it (:mod:`crowdloop.scale.streaming`); ``spark``
runs the same passes on a Spark cluster (:mod:`crowdloop.scale.spark`, imported
only here, so the core never needs pyspark).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crowdloop.errors import CrowdloopError, DataFileError, InvalidInputError
from crowdloop.io import renamed_columns
from crowdloop.quality._kernels import Progress
from crowdloop.quality.base import BaseClassificationAggregator
from crowdloop.scale.fit import check_scalable, fit_sharded
from crowdloop.scale.streaming import ParquetShards, check_out_file, stream_aggregate

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

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

    ``stream`` writes one file, ``spark`` a directory of part files. Everything that can be
    checked without reading the answers (the method, the paths) is checked before any is read
    or Spark starts. Returns run statistics (method, tasks are not counted to avoid another pass).
    """
    if engine not in ENGINES[1:]:
        raise InvalidInputError(f"engine must be one of {', '.join(ENGINES[1:])} here; got {engine!r}.")
    if Path(answers).suffix.lower() != ".parquet" or Path(out).suffix.lower() != ".parquet":
        raise InvalidInputError(
            "--engine stream/spark read and write Parquet: give ANSWERS.parquet and --out X.parquet."
        )
    check_scalable(estimator)
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
    check_out_file(out)
    with tempfile.TemporaryDirectory(prefix="crowdloop-shards-") as work:
        shards = ParquetShards.prepare(answers, work, rename={v: k for k, v in rename.items()})
        stream_aggregate(shards, estimator, out, progress)
        return {"workers": len(shards.workers), "answers": shards.n_answers}


def _spark(
    answers: Path | str, estimator: BaseClassificationAggregator, out: Path | str, master: str,
    rename: Mapping[str, str], progress: Progress | None,
) -> dict[str, Any]:  # fmt: skip
    """Read, encode, fit and write on Spark; the cached shards are dropped and a session this
    call started is stopped whether the run succeeds or not."""
    _check_spark_paths(answers, out)
    spark, ours = _session(master)
    try:
        frame = _read(spark, answers, rename)
        return _fit_and_write(spark, frame, estimator, answers, out, progress)
    finally:
        if ours:
            spark.stop()


def _fit_and_write(
    spark: SparkSession, frame: DataFrame, estimator: BaseClassificationAggregator, answers: Path | str,
    out: Path | str, progress: Progress | None,
) -> dict[str, Any]:  # fmt: skip
    from crowdloop.scale.spark import SparkShards

    with _spark_errors(DataFileError, f"{answers}: Spark cannot read the answers"):
        engine = SparkShards.from_answers(spark, frame)
    try:
        with _spark_errors(CrowdloopError, "Spark failed during the fit"):
            fit = fit_sharded(estimator, engine, progress)
        with _spark_errors(DataFileError, f"{out}: Spark cannot write the labels"):
            engine.labels(fit).drop("probas").write.mode("overwrite").parquet(str(out))
    finally:
        engine.unpersist()
    return {"workers": len(engine.workers), "answers": engine.n_answers}


def _is_local(path: Path | str) -> bool:
    """A path on this machine (no URL scheme such as ``hdfs://`` or ``s3a://``, or ``file:``)."""
    text = str(path)
    return text.startswith("file:") or not re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", text)


def _local_path(path: Path | str) -> Path:
    return Path(re.sub(r"^file:(//)?", "", str(path)))


def _check_spark_paths(answers: Path | str, out: Path | str) -> None:
    """A missing local file was a Java traceback after Spark's start; ``--out`` = the answers
    made Spark delete them (overwrite) before reading them."""
    if not _is_local(answers):
        return
    source = _local_path(answers)
    if not source.exists():
        raise DataFileError(f"{answers}: no such file or directory.")
    if _is_local(out) and _local_path(out).resolve() == source.resolve():
        raise InvalidInputError(f"--out {out} is the answers: Spark would delete them before reading them.")


def _session(master: str) -> tuple[SparkSession, bool]:
    """The active Spark session, or a new one on ``master``; and whether this call started it."""
    try:
        from pyspark.sql import SparkSession

        from crowdloop.scale.spark import spark_session
    except ImportError as error:
        raise InvalidInputError(
            f"--engine spark needs pyspark ({_first_line(error)}): pip install 'crowdloop[spark]'."
        ) from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    with _spark_errors(InvalidInputError, f"Spark does not start with --master {master}"):
        return spark_session(master, log_level="OFF"), True  # failures come back as one crowdloop error


def _read(spark: SparkSession, answers: Path | str, rename: Mapping[str, str]) -> DataFrame:
    """The answers with our column names: renamed as the local engine renames (refusing a new
    name the file already has, where ``withColumnRenamed`` left two and a traceback)."""
    with _spark_errors(DataFileError, f"{answers}: cannot be read as parquet"):
        frame = spark.read.parquet(str(answers))
    return frame.toDF(*renamed_columns(frame.columns, rename, answers))


@contextmanager
def _spark_errors(kind: type[CrowdloopError], what: str) -> Iterator[None]:
    """Spark's and Java's errors as ``kind`` with their first line: one line for the CLI, not a
    page of Java stack."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    try:
        yield
    except (PySparkException, Py4JError) as error:
        raise kind(f"{what}: {_spark_message(error)}") from None


def _spark_message(error: Exception) -> str:
    """The first line that says what went wrong: a Java exception's own message, not py4j's
    "An error occurred while calling o42.parquet"."""
    java = getattr(error, "java_exception", None)
    if java is not None:
        with suppress(Exception):  # the gateway may be gone: then Python's text
            return _first_line(RuntimeError(str(java.toString())))
    return _first_line(error)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
