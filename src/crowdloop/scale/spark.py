"""Truth inference on Apache Spark: the same kernels, one partition of tasks at a time.

Needs ``pip install crowdloop[spark]`` (imported only here). The answers (a Spark
DataFrame with ``task, worker, label`` or a Parquet path) are encoded once:

1. one pass over the answers counts them, finds missing values and gives
   workers global codes (in order of first appearance, files in name order, as the local engine
   numbers them); a pass over the label column alone gives labels sorted codes;
2. answers are repartitioned by ``task`` (the one shuffle) and each partition is
   turned, in one Arrow batch call (no Python per row), into a compact
   :class:`~crowdloop.scale._shards.Shard`, cached (memory, spilling to disk).

Every EM iteration is then one Spark job over the cached shards: the driver
broadcasts the worker parameters, each partition runs the local E-step and
returns its partial M-step counts, and ``treeReduce`` sums them. Labels come
from the same cached shards as a Spark DataFrame (``task, label, confidence,
probas``), written by Spark. No answer is read or shuffled again after the
encoding.

Example (needs Java)::

    spark = SparkSession.builder.master("local[2]").getOrCreate()
    engine = SparkShards.from_answers(spark, "answers.parquet")
    fit = fit_sharded(DawidSkene(), engine)
    engine.labels(fit).write.parquet("labels.parquet")
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as sf

from crowdloop.errors import EmptyInputError, InvalidInputError, MissingColumnsError, MissingValuesError
from crowdloop.quality._data import _factorize
from crowdloop.scale._em import ShardedFit
from crowdloop.scale._shards import PosteriorFn, Shard, ShardFn, Stats, add_stats, build_shard

COLUMNS = ("task", "worker", "label")


def spark_session(master: str = "local[2]", driver_memory: str = "4g", log_level: str | None = None) -> SparkSession:
    """A session for truth inference (Arrow on; memory for the cached shards in local mode).

    ``log_level`` (``"OFF"``, ``"ERROR"``...) from the start: the CLI turns Spark's log off,
    since each failure reaches the user as one crowdloop error, not as log4j's Java stacks.
    """
    builder = (
        SparkSession.builder.master(master)
        .appName("crowdloop")
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
    )
    if log_level is not None:
        builder = builder.config("spark.log.level", log_level)
    return builder.getOrCreate()


@dataclass
class SparkShards:
    """Answers encoded and cached on Spark as one :class:`Shard` per partition."""

    shards: Any
    n_answers: int
    workers: pd.Index
    classes: pd.Index
    n_partitions: int
    task_type: str

    @classmethod
    def from_answers(
        cls, spark: SparkSession, answers: DataFrame | str, partition_answers: int = 2_000_000
    ) -> SparkShards:
        """Encode and cache ``answers`` in partitions of about ``partition_answers`` answers."""
        frame = _selected(spark.read.parquet(answers) if isinstance(answers, str) else answers)
        workers, n_answers = _survey(frame)
        classes, labels, label_codes = _label_codes(frame)
        encoded = _encoded(spark, frame, workers, labels, label_codes)
        n_partitions = max(1, math.ceil(n_answers / partition_answers))
        grouped = encoded.repartition(n_partitions, "task")
        blobs = grouped.mapInArrow(partial(_shard_blobs, n_classes=len(classes)), "shard binary")
        shards = blobs.rdd.map(lambda row: pickle.loads(row[0])).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            _check_all_encoded(shards, n_answers)  # also materialises the cache once
        except Exception:
            shards.unpersist()  # a failed job leaves no cache behind
            raise
        task_type = frame.schema["task"].dataType.simpleString()
        return cls(shards, n_answers, workers, classes, n_partitions, task_type)

    def map_sum(self, fn: ShardFn, value: Any) -> Stats:
        """One Spark job: broadcast ``value``, ``fn`` on every cached shard, tree-sum the results."""
        context = self.shards.context
        shared = context.broadcast(value)
        sizes = (len(self.workers), len(self.classes))
        try:
            parts = self.shards.mapPartitions(partial(_map_partition, fn=fn, shared=shared, sizes=sizes))
            return parts.treeReduce(add_stats, depth=2)  # type: ignore[no-any-return]
        finally:
            shared.unpersist()

    def labels(self, fit: ShardedFit) -> DataFrame:
        """``task, label, confidence, probas`` (classes in ``self.classes`` order), computed lazily by Spark.

        From the cached shards, handed to ``mapInArrow`` as one pickled row per partition:
        no answer is read or shuffled again.
        """
        spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
        shared = self.shards.context.broadcast((fit.posterior_fn, fit.params))
        label_type = "string" if self.classes.dtype == object else _spark_type(self.classes)
        schema = f"task {self.task_type}, label {label_type}, confidence double, probas array<double>"
        run = partial(_label_batches, shared=shared, classes=self.classes, sizes=(len(self.workers), len(self.classes)))
        blobs = spark.createDataFrame(self.shards.map(lambda shard: (pickle.dumps(shard, protocol=5),)), "shard binary")
        return blobs.mapInArrow(run, schema)

    def unpersist(self) -> None:
        """Drop the cached shards."""
        self.shards.unpersist()


def _selected(frame: DataFrame) -> DataFrame:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise MissingColumnsError(f"answers lack column(s) {', '.join(missing)}; found {', '.join(frame.columns)}.")
    return frame.select(*COLUMNS)


def _survey(frame: DataFrame) -> tuple[pd.Index, int]:
    """One pass: the workers in order of first appearance and the answer count.

    First appearance is the smallest (file name, row id): Spark orders a directory's files by
    size, so row ids alone made the worker order, and with it the order of ``skills_``, depend
    on how the answers were cut into files (MACE's start comes from each worker's id, so the
    labels do not). Files in name order are what ``pd.read_parquet`` of
    the directory, hence the local engine, reads; rows of one file keep their order in the ids.

    Missing tasks, workers and labels (null, or NaN in a float column, as the local engine
    counts them) are counted in the same pass: a NaN was a value to Spark, kept as a worker
    or a label of its own or dropped by the label lookup's join.
    """
    rows = frame.withColumn("_file", sf.input_file_name()).withColumn("_row", sf.monotonically_increasing_id())
    per_worker = rows.groupBy("worker").agg(
        sf.min(sf.struct("_file", "_row")).alias("_first"),
        sf.count(sf.lit(1)).alias("_answers"),
        *(sf.sum(_missing(frame, column).cast("long")).alias(f"_no_{column}") for column in COLUMNS),
    )
    stats = per_worker.orderBy("_first").collect()
    for column in COLUMNS:
        count = sum(int(row[f"_no_{column}"]) for row in stats)
        if count:
            raise MissingValuesError(f"{count} answer(s) have no {column} (null or NaN).")
    if not stats:
        raise EmptyInputError("answers are empty: there is nothing to aggregate.")
    return pd.Index([row["worker"] for row in stats]), sum(int(row["_answers"]) for row in stats)


def _missing(frame: DataFrame, column: str) -> Column:
    """True where ``column`` is null, or NaN in a float column."""
    missing = sf.col(column).isNull()
    if frame.schema[column].dataType.typeName() in ("float", "double"):
        missing = missing | sf.isnan(column)
    return missing


def _check_all_encoded(shards: Any, n_answers: int) -> None:
    """The answers in the cached shards must be the answers counted: the joins that give workers
    and labels their codes drop a row whose value does not come back equal from the driver."""
    encoded = int(shards.map(lambda shard: shard.n_answers).sum())
    if encoded != n_answers:
        shards.unpersist()
        raise InvalidInputError(
            f"{n_answers - encoded} of {n_answers} answer(s) lost their worker or label while being encoded "
            "(a value that does not survive the round trip to the driver); nothing was fitted."
        )


def _label_codes(frame: DataFrame) -> tuple[pd.Index, list[Any], np.ndarray]:
    """The classes sorted as the local engine sorts them, each distinct label and its class code."""
    labels = [row["label"] for row in frame.select("label").distinct().collect()]
    codes, classes = _factorize(pd.Series(labels), sort=True)
    return classes, labels, codes


def _encoded(
    spark: SparkSession, frame: DataFrame, workers: pd.Index, labels: list[Any], label_codes: np.ndarray
) -> DataFrame:
    """``task, _w, _l``: each answer with its worker's and label's integer codes (broadcast joins)."""
    worker_codes = spark.createDataFrame(
        pd.DataFrame({"worker": workers.to_numpy(), "_w": np.arange(len(workers), dtype=np.int32)})
    )
    codes = spark.createDataFrame(pd.DataFrame({"label": labels, "_l": label_codes.astype(np.int32)}))
    encoded = frame.join(sf.broadcast(worker_codes), "worker").join(sf.broadcast(codes), "label")
    return encoded.select("task", "_w", "_l")


def _partition_shard(batches: Iterator[pa.RecordBatch], n_classes: int) -> Shard | None:
    table = pa.Table.from_batches(list(batches))
    if table.num_rows == 0:
        return None
    task = table.column("task").to_numpy()
    worker = table.column("_w").to_numpy()
    label = table.column("_l").to_numpy()
    return build_shard(task, worker, label, n_classes)


def _shard_blobs(batches: Iterator[pa.RecordBatch], n_classes: int) -> Iterator[pa.RecordBatch]:
    """The whole partition as one pickled shard (one row per partition, not per answer)."""
    shard = _partition_shard(batches, n_classes)
    if shard is not None:
        yield pa.record_batch([pa.array([pickle.dumps(shard, protocol=5)], pa.binary())], ["shard"])


def _map_partition(shards: Iterator[Shard], fn: ShardFn, shared: Any, sizes: tuple[int, int]) -> Iterator[Stats]:
    total: Stats | None = None
    for shard in shards:
        part = fn(shard.encoded(*sizes), shared.value)
        total = part if total is None else add_stats(total, part)
    if total is not None:
        yield total


def _label_batches(
    batches: Iterator[pa.RecordBatch], shared: Any, classes: pd.Index, sizes: tuple[int, int]
) -> Iterator[pa.RecordBatch]:
    """Each cached shard's tasks with their label, its confidence and every class's probability."""
    posterior_fn: PosteriorFn = shared.value[0]
    shards = (pickle.loads(blob) for batch in batches for blob in batch.column("shard").to_pylist())
    for shard in shards:
        probas = posterior_fn(shard.encoded(*sizes), shared.value[1])
        chosen = np.argmax(probas, axis=1)
        label = pa.array(classes.to_numpy()[chosen])
        flat = pa.FixedSizeListArray.from_arrays(pa.array(probas.reshape(-1)), len(classes))
        lists = flat.cast(pa.list_(pa.float64()))
        confidence = pa.array(probas[np.arange(len(probas)), chosen])
        columns = [pa.array(shard.tasks), label, confidence, lists]
        yield pa.record_batch(columns, ["task", "label", "confidence", "probas"])


def _spark_type(classes: pd.Index) -> str:
    kind = classes.dtype.kind
    return {"i": "bigint", "u": "bigint", "f": "double", "b": "boolean"}.get(kind, "string")
