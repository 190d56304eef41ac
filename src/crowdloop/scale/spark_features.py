"""Hashed features on Spark: the edge's numpy featurizer, run per partition.

Why not Spark's ``HashingTF``/``IDF``: the deployed model sees features computed on a device
with numpy only, and they must be the training features bit for bit. So Spark only moves
rows; every partition runs :class:`~crowdloop.learning.hashing.HashedFeaturizer` itself:

1. :func:`fit_featurizer` — each partition counts its bucket document frequencies, a
   ``treeReduce`` sums them (an exact integer sum: the state equals a one-machine fit);
2. :func:`featurize` — the fitted featurizer is broadcast and each partition turns its
   items into ``SparseVector`` rows, values rounded to ``float32`` (what the ONNX graph
   takes), so Spark trains on exactly the edge's inputs.

Items are a Spark DataFrame, a Parquet path or a pandas frame with the spec's id column
and fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml.linalg import SparseVector, VectorUDT
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.types import StructField, StructType

from crowdloop.errors import InvalidInputError, MissingColumnsError
from crowdloop.learning.features import FeatureSpec, shown
from crowdloop.learning.hashing import DEFAULT_BUCKETS, Frequencies, HashedFeaturizer, add_frequencies
from crowdloop.learning.text import Analyzer

CHUNK = 2_048
"""Items featurised together inside a partition: numpy batches, bounded memory."""

ItemsSource = DataFrame | str | Path | pd.DataFrame
"""A Spark DataFrame, a Parquet file or folder, or a pandas frame."""


def items_frame(spark: SparkSession, items: ItemsSource, spec: FeatureSpec) -> DataFrame:
    """``items`` as a Spark DataFrame of the id column and the spec's fields, each item with an id
    and each id once (as :func:`~crowdloop.learning.features.item_ids` wants them locally)."""
    if isinstance(items, str | Path):
        frame = spark.read.parquet(str(items))
    elif isinstance(items, pd.DataFrame):
        frame = spark.createDataFrame(items)
    else:
        frame = items
    wanted = [spec.id_column, *spec.fields]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise MissingColumnsError(f"items lack column(s) {missing}; they have {frame.columns}.")
    selected = frame.select(*wanted)
    check_item_ids(selected, spec.id_column)
    return selected


def check_item_ids(frame: DataFrame, id_column: str) -> None:
    """One pass: every item has an id (not null, not NaN) and no id names two items.

    An item listed twice was trained on twice (its labels joined to both rows, twice the
    weight), and a null id matched no label: the local trainer refuses both.
    """
    column = sf.col(id_column)
    missing = column.isNull()
    if frame.schema[id_column].dataType.typeName() in ("float", "double"):
        missing = missing | sf.isnan(column)
    counts = frame.agg(
        sf.sum(missing.cast("long")).alias("absent"),
        sf.count(column).alias("present"),
        sf.countDistinct(column).alias("distinct"),
    ).collect()[0]
    absent = int(counts["absent"] or 0)  # null when there are no items
    if absent:
        raise InvalidInputError(f"{absent} item(s) have no {id_column!r}.")
    if counts["distinct"] < counts["present"]:
        twice = frame.groupBy(column).count().where(sf.col("count") > 1).limit(1).collect()[0]
        raise InvalidInputError(f"{id_column} {shown(twice[0])} names more than one item; one each.")


def _chunks(rows: Iterator[Row]) -> Iterator[list[dict[str, Any]]]:
    while chunk := [row.asDict() for row in islice(rows, CHUNK)]:
        yield chunk


def _partition_frequencies(rows: Iterator[Row], featurizer: HashedFeaturizer) -> Iterator[Frequencies]:
    total: Frequencies | None = None
    for chunk in _chunks(rows):
        part = featurizer.frequencies(chunk)
        total = part if total is None else add_frequencies(total, part)
    if total is not None:
        yield total


def fit_featurizer(
    frame: DataFrame, spec: FeatureSpec, n_buckets: int = DEFAULT_BUCKETS, analyzer: Analyzer | None = None
) -> HashedFeaturizer:
    """A :class:`HashedFeaturizer` fitted on every item of ``frame`` (one Spark job)."""
    featurizer = HashedFeaturizer(spec, analyzer, n_buckets)
    featurizer._check_hashable()
    parts = frame.rdd.mapPartitions(partial(_partition_frequencies, featurizer=featurizer))
    return featurizer.fit_frequencies(parts.treeReduce(add_frequencies, depth=2))


def _vectors(chunk: list[dict[str, Any]], featurizer: HashedFeaturizer) -> Iterator[SparseVector]:
    block = featurizer.transform_rows(chunk)
    values = block.data.astype(np.float32).astype(np.float64)  # the edge's float32 inputs
    for i in range(block.n_rows):
        start, end = block.indptr[i], block.indptr[i + 1]
        yield SparseVector(block.n_cols, block.indices[start:end], values[start:end])


def _partition_rows(rows: Iterator[Row], shared: Any, keep: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
    featurizer: HashedFeaturizer = shared.value
    for chunk in _chunks(rows):
        for record, vector in zip(chunk, _vectors(chunk, featurizer), strict=True):
            yield (*(record[name] for name in keep), vector)


def featurize(frame: DataFrame, featurizer: HashedFeaturizer, keep: tuple[str, ...] = ()) -> DataFrame:
    """The ``keep`` columns of ``frame`` and a ``features`` vector column, computed per partition."""
    context = frame.sparkSession.sparkContext
    shared = context.broadcast(featurizer)
    fields = [frame.schema[name] for name in keep]
    schema = StructType(
        [*(StructField(f.name, f.dataType, f.nullable) for f in fields), StructField("features", VectorUDT())]
    )
    rows = frame.rdd.mapPartitions(partial(_partition_rows, shared=shared, keep=keep))
    return frame.sparkSession.createDataFrame(rows, schema)
