"""The memory guard: a fit whose estimated peak is over the limit is refused at once, with a message
that says what is too big and what to do; and the estimate is not below the real peak."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from crowdloop.errors import InvalidParameterError, MemoryLimitError
from crowdloop.quality import MACE, DawidSkene, MajorityVote, ShrunkDawidSkene, _memory


def many_classes(n_answers: int, n_tasks: int, n_workers: int, n_classes: int, seed: int = 0) -> pd.DataFrame:
    """Workers right 70% of the time, otherwise a label at random; every class is answered."""
    rng = np.random.default_rng(seed)
    task = np.arange(n_answers) % n_tasks
    truth = rng.integers(0, n_classes, n_tasks)
    label = np.where(rng.random(n_answers) < 0.7, truth[task], rng.integers(0, n_classes, n_answers))
    label[:n_classes] = np.arange(n_classes)
    worker = np.char.add("w", rng.integers(0, n_workers, n_answers).astype(str))
    return pd.DataFrame({"task": task, "worker": worker, "label": label})


def traced_peak(fit) -> int:
    tracemalloc.start()
    try:
        fit()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_a_fit_over_the_limit_is_refused_before_it_allocates():
    answers = many_classes(2_000, 1_000, 50, 400)  # 50 x 400² confusion matrices: 64 MB each
    model = DawidSkene(n_iter=2)
    estimate = model.estimate_memory(2_000, 1_000, 50, 400)
    assert estimate > 100 * 2**20

    tracemalloc.start()
    try:
        with pytest.raises(MemoryLimitError) as caught:
            model.fit(answers, max_memory_mb=20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < estimate / 20  # refused once the answers were encoded, before any matrix
    message = caught.value.detail
    assert "dawid_skene on 2,000 answers (1,000 tasks, 50 workers, 400 classes)" in message
    assert f"about {estimate / 2**20:,.0f} MB" in message
    assert "workers x classes² = 50 x 400²" in message
    assert "the limit of 20 MB (max_memory_mb)" in message
    assert "majority_vote (" in message and "one_coin_dawid_skene (" in message and "shrunk" not in message
    assert "CROWDLOOP_MAX_MEMORY_MB" in message
    assert not hasattr(model, "labels_")


def test_the_default_limit_is_a_share_of_the_available_memory(monkeypatch):
    answers = many_classes(500, 250, 20, 100)
    monkeypatch.setattr(_memory, "available_bytes", lambda: 10 * 2**20)
    with pytest.raises(MemoryLimitError, match=r"limit of 8\.0 MB \(80% of the 10 MB available\)"):
        ShrunkDawidSkene(n_iter=2).fit(answers)
    MajorityVote().fit(answers)  # 20 x 100 x 100 votes are not a confusion matrix: this one fits
    ShrunkDawidSkene(n_iter=2).fit(answers, max_memory_mb=float("inf"))  # no limit, when asked


def test_the_limit_must_be_positive():
    with pytest.raises(InvalidParameterError, match="'max_memory_mb' must be a float in \\(0, inf\\); got 0"):
        MajorityVote().fit(many_classes(10, 5, 3, 2), max_memory_mb=0)


@pytest.mark.parametrize(
    ("model", "sizes"),
    [
        (DawidSkene(n_iter=3), (2_000, 1_000, 50, 300)),  # workers x classes² dominate
        (MajorityVote(), (100_000, 40_000, 100, 100)),  # tasks x classes
        (MACE(n_restarts=2, restart_iter=2, n_iter=2), (40_000, 10_000, 10_000, 100)),  # workers x classes
    ],
    ids=["dawid_skene", "majority_vote", "mace"],
)
def test_the_estimate_is_at_or_a_little_above_the_peak(model, sizes):
    answers = many_classes(*sizes)
    peak = traced_peak(lambda: model.fit(answers))
    estimate = model.estimate_memory(*sizes)
    assert peak <= estimate <= 1.5 * peak, (peak / 2**20, estimate / 2**20)
