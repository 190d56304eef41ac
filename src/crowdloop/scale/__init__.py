"""Truth inference past one machine's memory: streamed from disk, or on Apache Spark.

Answers are cut into partitions by task, so each task's E-step stays inside one
partition; every partition runs the local engine's numpy kernels and returns its
partial M-step counts, which are summed. Results equal the local engine's (same
labels; probabilities within 1e-6, in practice 1e-12).

- :class:`ParquetShards` + :func:`stream_aggregate`: a Parquet file larger than
  memory, partitioned once on local disk, then streamed one partition at a time.
- ``SparkShards`` (``crowdloop.scale.spark``, needs ``pip install crowdloop[spark]``):
  the partitions cached on a Spark cluster, one Spark job per EM iteration.
  Imported lazily: ``from crowdloop.scale import SparkShards`` loads pyspark.
- ``train_on_spark`` (``crowdloop.scale.spark_train``): a logistic regression trained
  with MLlib on hashed text features, carried into scikit-learn (lazy, like ``SparkShards``);
  ``register_spark_model`` puts it in the model registry.
- :func:`fit_sharded`: fit any of :data:`SCALABLE` on either engine;
  :func:`aggregate_parquet`: file in, file out (``crowdloop aggregate --engine``).
"""

from __future__ import annotations

from typing import Any

from crowdloop.scale._em import ShardedFit
from crowdloop.scale._shards import MemoryShards, Shard, memory_shards
from crowdloop.scale.fit import SCALABLE, fit_sharded, probas_frames
from crowdloop.scale.run import aggregate_parquet
from crowdloop.scale.streaming import ParquetShards, stream_aggregate


def __getattr__(name: str) -> Any:
    if name in ("SparkShards", "spark_session"):
        from crowdloop.scale import spark

        return getattr(spark, name)
    if name in ("train_on_spark", "register_spark_model"):
        from crowdloop.scale import spark_train

        return getattr(spark_train, name)
    raise AttributeError(f"module 'crowdloop.scale' has no attribute {name!r}")


__all__ = [  # noqa: RUF022 - plain sorted()
    "MemoryShards",
    "ParquetShards",
    "SCALABLE",
    "Shard",
    "ShardedFit",
    "SparkShards",
    "aggregate_parquet",
    "fit_sharded",
    "memory_shards",
    "probas_frames",
    "register_spark_model",
    "spark_session",
    "stream_aggregate",
    "train_on_spark",
]
