"""The local engine past memory: a Parquet file of answers, streamed in bounded pieces.

:meth:`ParquetShards.prepare` reads the file once in record batches (pyarrow):
workers and labels get global codes as they appear (workers in order of first
appearance, labels sorted at the end: the local engine's codes), and every answer
goes to bucket ``hash(task) mod n`` on disk. Each bucket is then grouped by task
into a :class:`~crowdloop.scale._shards.Shard` and saved as two ``.npy`` arrays
(4 bytes an answer plus 8 per task). EM iterations read the shards back one at a
time and run the local kernels on each, so memory is bounded by one shard, not
the file.

Memory bound: about ``60 * shard_answers`` bytes for the shard being worked on
(its int32 answers and the kernels' temporaries), plus ``batch_rows`` answers while
preparing, plus the worker parameters (``n_workers * K * K`` floats). Disk: about
4 bytes an answer plus the task names.

Example:
    >>> import pandas as pd, tempfile, pathlib
    >>> from crowdloop.quality import DawidSkene
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"),
    ...               "label": ["x", "x", "y", "y", "y", "x"]}).to_parquet(tmp / "a.parquet")
    >>> shards = ParquetShards.prepare(tmp / "a.parquet", tmp / "work")
    >>> stream_aggregate(shards, DawidSkene(), tmp / "labels.parquet").estimator.n_iter_ > 0
    True
    >>> pd.read_parquet(tmp / "labels.parquet")["label"].tolist()
    ['x', 'y']
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crowdloop.errors import DataFileError, EmptyInputError, MissingColumnsError, MissingValuesError
from crowdloop.io import renamed_columns
from crowdloop.quality._data import _factorize
from crowdloop.quality._kernels import Progress
from crowdloop.quality.base import BaseClassificationAggregator
from crowdloop.scale._em import ShardedFit
from crowdloop.scale._shards import PosteriorFn, Shard, ShardFn, Stats, add_stats, build_shard
from crowdloop.scale.fit import fit_sharded, label_table

COLUMNS = ("task", "worker", "label")


class Codebook:
    """Codes for values in order of first appearance, grown batch by batch."""

    def __init__(self) -> None:
        self.index: pd.Index | None = None

    def encode(self, values: np.ndarray) -> np.ndarray:
        if self.index is None:
            codes, uniques = pd.factorize(values, sort=False)
            self.index = pd.Index(uniques)
            return np.asarray(codes, dtype=np.int32)
        codes = self.index.get_indexer(pd.Index(values))
        unseen = codes < 0
        if unseen.any():
            self.index = self.index.append(pd.Index(pd.unique(values[unseen])))
            codes[unseen] = self.index.get_indexer(pd.Index(values[unseen]))
        return np.asarray(codes, dtype=np.int32)

    @property
    def values(self) -> pd.Index:
        return pd.Index([]) if self.index is None else pd.Index(self.index)


@dataclass
class ParquetShards:
    """Answers partitioned by task into ``n_shards`` files under ``directory``."""

    directory: Path
    n_shards: int
    n_answers: int
    workers: pd.Index
    classes: pd.Index
    task_type: pa.DataType | None = None
    """The file's type of task ids, given back to them in the labels (numpy turned dates into timestamps)."""

    @classmethod
    def prepare(
        cls,
        path: Path | str,
        directory: Path | str,
        *,
        shard_answers: int = 4_000_000,
        batch_rows: int = 1_000_000,
        rename: Mapping[str, str] | None = None,
    ) -> ParquetShards:
        """One read of ``path``: global codes, then task-grouped shards of about ``shard_answers``."""
        source = _open(Path(path), rename or {})
        n_shards = max(1, math.ceil(source.metadata.num_rows / shard_answers))
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        workers, labels = Codebook(), Codebook()
        names = [(rename or {}).get(c, c) for c in COLUMNS]
        with _Buckets(directory, n_shards) as buckets:
            for batch in source.iter_batches(batch_size=batch_rows, columns=names):
                task, worker, label = (_column(batch, i, name) for i, name in enumerate(COLUMNS))
                bucket = pd.util.hash_array(task) % np.uint64(n_shards)
                buckets.write(bucket, task, workers.encode(worker), labels.encode(label))
        remap, classes = _factorize(pd.Series(labels.values), sort=True)
        n_answers = sum(_finish_shard(directory, i, remap, len(classes)) for i in range(n_shards))
        task_type = source.schema_arrow.field(names[0]).type
        return cls(directory, n_shards, n_answers, workers.values, classes, task_type)

    def shard(self, number: int) -> Shard:
        """Read shard ``number`` back (a few reads of ``.npy`` files)."""
        base = self.directory / f"shard-{number}"
        tasks = pa.ipc.open_file(f"{base}.tasks.arrow").read_all().column(0).to_numpy(zero_copy_only=False)
        return Shard(tasks, np.load(f"{base}.indptr.npy"), np.load(f"{base}.columns.npy"))

    def map_sum(self, fn: ShardFn, value: Any) -> Stats:
        """Sum ``fn`` over the shards, read one at a time."""
        total: Stats | None = None
        for number in range(self.n_shards):
            part = fn(self.shard(number).encoded(len(self.workers), len(self.classes)), value)
            total = part if total is None else add_stats(total, part)
        return total  # type: ignore[return-value]  # prepare makes at least one shard

    def posteriors(self, fn: PosteriorFn, value: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(task names, posteriors)`` shard by shard."""
        for number in range(self.n_shards):
            shard = self.shard(number)
            yield shard.tasks, fn(shard.encoded(len(self.workers), len(self.classes)), value)


def stream_aggregate(
    shards: ParquetShards,
    estimator: BaseClassificationAggregator,
    out: Path | str,
    progress: Progress | None = None,
) -> ShardedFit:
    """Fit on the shards and write ``task, label, confidence`` to the Parquet file ``out``, shard by shard."""
    check_out_file(out)
    fit = fit_sharded(estimator, shards, progress)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | None = None
    for tasks, probas in shards.posteriors(fit.posterior_fn, fit.params):
        if not len(tasks):
            continue
        frame = label_table(tasks, probas, shards.classes)
        table = _typed_tasks(pa.Table.from_pandas(frame, preserve_index=False), shards.task_type)
        writer = writer or pq.ParquetWriter(str(out), table.schema)
        writer.write_table(table)
    if writer is not None:
        writer.close()
    return fit


def _typed_tasks(table: pa.Table, task_type: pa.DataType | None) -> pa.Table:
    """``table`` with its task ids in the input's type: dates came out as timestamps, time zones
    and decimal precisions were lost on the way through numpy (the local engine keeps them)."""
    if task_type is None or table.schema.field("task").type == task_type:
        return table
    position = table.schema.get_field_index("task")
    return table.set_column(position, "task", table.column("task").cast(task_type))


def check_out_file(out: Path | str) -> None:
    """The labels go to one file: a directory there (Spark's output of an earlier run) was an
    ``IsADirectoryError`` traceback after the whole fit."""
    if Path(out).is_dir():
        raise DataFileError(
            f"{out}: is a directory (Spark writes its labels as a directory of part files); "
            "the stream engine writes one file: give --out another path, or remove the directory."
        )


def _open(path: Path, rename: Mapping[str, str]) -> pq.ParquetFile:
    if path.is_dir():
        raise DataFileError(
            f"{path}: is a directory (of part files, as Spark writes); the stream engine reads one Parquet file: "
            "use --engine spark, or join the parts into one file."
        )
    if not path.is_file():
        raise DataFileError(f"{path}: no such file.")
    try:
        source = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as error:
        raise DataFileError(f"{path}: cannot be read as parquet: {error}") from None
    renamed_columns(source.schema_arrow.names, {theirs: ours for ours, theirs in rename.items()}, path)
    missing = [rename.get(c, c) for c in COLUMNS if rename.get(c, c) not in source.schema_arrow.names]
    if missing:
        raise MissingColumnsError(
            f"{path}: no column(s) {', '.join(missing)}; found {', '.join(source.schema_arrow.names)}."
        )
    if source.metadata.num_rows == 0:
        raise EmptyInputError(f"{path}: answers are empty: there is nothing to aggregate.")
    return source


def _column(batch: pa.RecordBatch, position: int, name: str) -> np.ndarray:
    column = batch.column(position)
    missing = column.null_count + _nan_count(column)
    if missing:
        raise MissingValuesError(f"{missing} answer(s) have no {name} (null or NaN).")
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _nan_count(column: pa.Array) -> int:
    """NaNs of a float column: the local engine refuses them as missing, but they are not Arrow
    nulls, and coded as they stood they became code -1 (the last worker's or class's answer)."""
    if not pa.types.is_floating(column.type):
        return 0
    return int(pc.sum(pc.is_nan(column).cast(pa.int64())).as_py() or 0)


class _Buckets:
    """Append-only Arrow files, one per shard, for the answers before they are grouped."""

    def __init__(self, directory: Path, n_shards: int) -> None:
        self.paths = [directory / f"bucket-{i}.arrow" for i in range(n_shards)]
        self.writers: list[Any] = [None] * n_shards

    def __enter__(self) -> _Buckets:
        return self

    def write(self, bucket: np.ndarray, task: np.ndarray, worker: np.ndarray, label: np.ndarray) -> None:
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(len(self.paths) + 1, dtype=np.uint64))
        for number, (start, stop) in enumerate(itertools.pairwise(bounds)):
            if stop > start:
                rows = order[start:stop]
                self._write(number, pa.record_batch([pa.array(task[rows]), worker[rows], label[rows]], COLUMNS))

    def _write(self, number: int, batch: pa.RecordBatch) -> None:
        if self.writers[number] is None:
            self.writers[number] = pa.ipc.new_stream(str(self.paths[number]), batch.schema)
        self.writers[number].write_batch(batch)

    def __exit__(self, *exc: object) -> None:
        for writer in self.writers:
            if writer is not None:
                writer.close()


def _finish_shard(directory: Path, number: int, remap: np.ndarray, n_classes: int) -> int:
    """Group bucket ``number`` by task and save it as a shard; return its answer count."""
    bucket = directory / f"bucket-{number}.arrow"
    if bucket.exists():
        table = pa.ipc.open_stream(str(bucket)).read_all()
        task, worker, label = (table.column(i).to_numpy(zero_copy_only=False) for i in range(3))
        shard = build_shard(task, worker, remap[label], n_classes)
        bucket.unlink()
    else:  # no task hashed here
        shard = Shard(np.empty(0, dtype=object), np.zeros(1, np.int64), np.empty(0, np.int32))
    base = directory / f"shard-{number}"
    np.save(f"{base}.indptr.npy", shard.indptr)
    np.save(f"{base}.columns.npy", shard.columns)
    tasks = pa.table({"task": pa.array(shard.tasks)})
    with pa.ipc.new_file(f"{base}.tasks.arrow", tasks.schema) as writer:
        writer.write_table(tasks)
    return shard.n_answers
