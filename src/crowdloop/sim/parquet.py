"""Synthetic answers straight to Parquet, in chunks: crowds larger than memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crowdloop.errors import InvalidParameterError
from crowdloop.sim.synthetic import _answer, _class_shares, _distinct_offsets


def write_synthetic_parquet(
    path: Path | str,
    n_answers: int,
    *,
    n_workers: int = 2000,
    n_classes: int = 5,
    overlap: int = 5,
    spammer_share: float = 0.2,
    chunk_tasks: int = 1_000_000,
    gold_path: Path | str | None = None,
    random_state: int = 0,
) -> int:
    """Write ``n_answers // overlap`` tasks' answers (int64 ``task, worker, label``); return the rows.

    The same crowd as :func:`~crowdloop.sim.synthetic_answers` (workers' accuracy
    from Beta(6, 2), a ``spammer_share`` answering at random, ``overlap`` distinct
    workers a task), drawn ``chunk_tasks`` tasks at a time so memory stays at one
    chunk (about ``chunk_tasks * overlap * 50`` bytes) whatever the size.
    ``gold_path`` also gets the true labels (``task, label``).
    """
    if not 1 <= overlap <= n_workers:
        raise InvalidParameterError(f"overlap must be in [1, n_workers={n_workers}]; got {overlap}.")
    rng = np.random.default_rng(random_state)
    accuracy = rng.beta(6, 2, size=n_workers)
    accuracy[rng.random(n_workers) < spammer_share] = 1.0 / n_classes
    n_tasks = n_answers // overlap
    schema = pa.schema([("task", pa.int64()), ("worker", pa.int64()), ("label", pa.int64())])
    gold = (
        None
        if gold_path is None
        else pq.ParquetWriter(str(gold_path), pa.schema([("task", pa.int64()), ("label", pa.int64())]))
    )
    with pq.ParquetWriter(str(path), schema) as writer:
        for start in range(0, n_tasks, chunk_tasks):
            size = min(chunk_tasks, n_tasks - start)
            truth = rng.choice(n_classes, size=size, p=_class_shares(n_classes))
            workers = _distinct_offsets(rng, size, n_workers, overlap).reshape(-1)
            local = np.repeat(np.arange(size), overlap)
            labels = _answer(rng, truth[local], accuracy[workers], n_classes)
            writer.write_table(pa.table({"task": local + start, "worker": workers, "label": labels}, schema=schema))
            if gold is not None:
                gold.write_table(pa.table({"task": np.arange(start, start + size), "label": truth}))
    if gold is not None:
        gold.close()
    return n_tasks * overlap
