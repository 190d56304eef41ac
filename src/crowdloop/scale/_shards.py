"""Answers cut into partitions by task, and the one operation EM needs on them.

A partition (:class:`Shard`) holds every answer of its tasks, so the E-step of a
task never leaves it. Workers and labels carry *global* codes (one small distinct
pass before partitioning), so the M-step's partial sums of two partitions add up
index by index. Each EM pass is then a map-reduce: every partition turns the
broadcast worker parameters into its tasks' posteriors and returns its partial
expected counts; the counts are summed (a tree reduction on Spark) and the driver
turns the sum into the next parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from crowdloop.quality._data import EncodedAnswers, encoded_from_csr

Stats = tuple[np.ndarray, ...]
"""Partial sums returned by a partition; summed element-wise across partitions."""

ShardFn = Callable[[EncodedAnswers, Any], Stats]
PosteriorFn = Callable[[EncodedAnswers, Any], np.ndarray]


@dataclass(frozen=True)
class Shard:
    """One partition: its tasks' names and their answers as CSR rows of ``worker * K + label``.

    Four bytes an answer (``columns``, int32; int64 past 2^31 worker-class pairs) plus one
    offset per task: this is what the engines cache, on disk or in Spark's block manager.
    """

    tasks: np.ndarray
    indptr: np.ndarray
    columns: np.ndarray

    @property
    def n_answers(self) -> int:
        return len(self.columns)

    def encoded(self, n_workers: int, n_classes: int) -> EncodedAnswers:
        """The partition as the quality kernels' :class:`EncodedAnswers` (local task codes)."""
        return encoded_from_csr(self.indptr, self.columns, n_workers, n_classes)


def build_shard(tasks: Any, worker: np.ndarray, label: np.ndarray, n_classes: int) -> Shard:
    """Group one partition's answers by task (tasks in order seen, answers in order within a task)."""
    local, uniques = pd.factorize(np.asarray(tasks), sort=False)
    order = np.argsort(local, kind="stable")
    counts = np.bincount(local, minlength=len(uniques))
    indptr = np.zeros(len(uniques) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    columns = _compact(worker[order].astype(np.int64) * n_classes + label[order])
    return Shard(np.asarray(uniques), indptr, columns)


def _compact(codes: np.ndarray) -> np.ndarray:
    """``worker * K + label`` codes as int32 (4 bytes an answer) while they fit, else int64.

    Past 2^31 worker-class pairs (50,000 workers x 50,000 classes) int32 wrapped around and
    the answers were decoded as other workers' and other labels.
    """
    if len(codes) and int(codes.max()) > np.iinfo(np.int32).max:
        return codes
    return codes.astype(np.int32)


def add_stats(left: Stats, right: Stats) -> Stats:
    """Element-wise sum of two partitions' partial sums (associative: any tree order works)."""
    return tuple(a + b for a, b in zip(left, right, strict=True))


class ShardEngine(Protocol):
    """Where the partitions live: memory, a directory of files, or a Spark cluster."""

    n_answers: int
    workers: pd.Index
    classes: pd.Index

    def map_sum(self, fn: ShardFn, value: Any) -> Stats:
        """``sum(fn(partition, value) for partition in partitions)`` (``value`` is broadcast)."""
        ...


@dataclass
class MemoryShards:
    """Partitions held in this process: the reference engine the others are checked against."""

    shards: list[Shard]
    workers: pd.Index
    classes: pd.Index

    @property
    def n_answers(self) -> int:
        return sum(shard.n_answers for shard in self.shards)

    def map_sum(self, fn: ShardFn, value: Any) -> Stats:
        parts = (fn(data, value) for data in self._encoded())
        total = next(parts)
        for part in parts:
            total = add_stats(total, part)
        return total

    def posteriors(self, fn: PosteriorFn, value: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(task names, posteriors)`` per partition."""
        for shard, data in zip(self.shards, self._encoded(), strict=True):
            yield shard.tasks, fn(data, value)

    def _encoded(self) -> Iterator[EncodedAnswers]:
        return (shard.encoded(len(self.workers), len(self.classes)) for shard in self.shards)


def memory_shards(answers: pd.DataFrame, n_shards: int = 4) -> MemoryShards:
    """Hash-partition a checked answers frame by task into ``n_shards`` in-memory partitions."""
    from crowdloop.quality._data import check_answers, encode_answers

    data = encode_answers(check_answers(answers))
    bucket = pd.util.hash_array(data.tasks.to_numpy())[data.task] % np.uint64(n_shards)
    shards = []
    for part in range(n_shards):
        rows = np.flatnonzero(bucket == part)
        if len(rows):
            names = data.tasks.to_numpy()[data.task[rows]]
            shards.append(build_shard(names, data.worker[rows], data.label[rows], data.n_classes))
    return MemoryShards(shards, data.workers, data.classes)
