"""A fit's peak memory, estimated from the sizes of the answers before anything large is allocated.

Full confusion matrices cost workers x classes² numbers, and every method holds a few tasks x
classes arrays (the posteriors), so a file with many classes could need more memory than the
machine has; the operating system then killed the process with no message. Each aggregator
declares a :class:`Footprint`, measured (``benchmarks/memory.py``), and
:func:`check_memory` refuses a fit whose estimate is over the limit, naming the sizes, the
estimate, the limit and the methods that would fit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crowdloop.errors import MemoryLimitError

if TYPE_CHECKING:
    from crowdloop.quality.base import BaseClassificationAggregator

DEFAULT_SHARE = 0.8
"""Share of the memory available when a fit starts that it may take, unless a limit is given."""


OVERHEAD = 4 * 2**20
"""Bytes every fit takes whatever its size (indexes, small arrays, Python objects)."""


@dataclass(frozen=True)
class Sizes:
    """What a fit's memory depends on."""

    answers: int
    tasks: int
    workers: int
    classes: int

    def __str__(self) -> str:
        return f"{self.answers:,} answers ({self.tasks:,} tasks, {self.workers:,} workers, {self.classes:,} classes)"


@dataclass(frozen=True)
class Footprint:
    """Peak bytes of a fit beyond the answers frame: float64 arrays of each shape, and bytes per answer.

    Measured with ``tracemalloc`` and peak RSS over a grid of sizes (``benchmarks/memory.py``),
    rounded up: the estimate is meant to be at or a little above the real peak, never below.
    """

    confusion: float = 0.0
    """Arrays of workers x classes² (the Dawid-Skene family's confusion matrices)."""
    task_classes: float = 0.0
    """Arrays of tasks x classes (vote counts, scores, posteriors, ``probas_``)."""
    worker_classes: float = 0.0
    """Arrays of workers x classes (MACE's spam strategies and their random starts)."""
    per_answer: float = 0.0
    """Bytes per answer: integer codes, the sparse task x (worker, label) matrices, per-answer terms."""

    def bytes(self, sizes: Sizes) -> int:
        w, t, k = sizes.workers, sizes.tasks, sizes.classes
        floats = self.confusion * w * k * k + self.task_classes * t * k + self.worker_classes * w * k
        return int(8 * floats + self.per_answer * sizes.answers) + OVERHEAD

    def dominant(self, sizes: Sizes) -> str:
        """The term that costs most, in words, for the error message."""
        w, t, k = sizes.workers, sizes.tasks, sizes.classes
        terms = {
            f"confusion matrices, workers x classes² = {w:,} x {k:,}²": self.confusion * w * k * k,
            f"tasks x classes = {t:,} x {k:,} arrays": self.task_classes * t * k,
            f"workers x classes = {w:,} x {k:,} arrays": self.worker_classes * w * k,
            "per-answer arrays": self.per_answer * sizes.answers / 8,
        }
        return max(terms, key=lambda term: terms[term])


def available_bytes() -> int | None:
    """Memory the system can give this process now: ``MemAvailable`` (Linux), else free pages, capped
    by a container's cgroup limit; ``None`` when nothing can be read (then there is no default limit)."""
    found = [n for n in (_meminfo_available(), _sysconf_available(), _cgroup_room()) if n is not None]
    return min(found) if found else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sysconf_available() -> int | None:
    if Path("/proc/meminfo").exists():
        return None  # MemAvailable counts the reclaimable cache that free pages leave out
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    """What the container's memory limit leaves (cgroup v2, then v1); ``None`` without a limit."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max", or v1's huge "no limit" number
            return max(int(limit) - usage, 0)
    return None


def memory_limit(max_memory_mb: float | None) -> tuple[float, str]:
    """The limit in bytes and where it comes from (``inf`` when there is none)."""
    if max_memory_mb is not None:
        return max_memory_mb * 2**20, f"the limit of {_mb(max_memory_mb * 2**20)} (max_memory_mb)"
    available = available_bytes()
    if available is None:
        return float("inf"), "no limit (the available memory could not be read)"
    share = DEFAULT_SHARE * available
    return share, f"the limit of {_mb(share)} ({DEFAULT_SHARE:.0%} of the {_mb(available)} available)"


def check_memory(aggregator: BaseClassificationAggregator, sizes: Sizes, max_memory_mb: float | None) -> None:
    """Raise :class:`MemoryLimitError` if ``aggregator``'s fit on ``sizes`` would need more than the limit."""
    footprint = aggregator._footprint
    needed = footprint.bytes(sizes)
    limit, source = memory_limit(max_memory_mb)
    if needed <= limit:
        return
    name = _registry_name(aggregator)
    raise MemoryLimitError(
        f"{name} on {sizes} would need about {_mb(needed)} of memory, mostly for "
        f"{footprint.dominant(sizes)}; that is over {source}. "
        f"{_alternatives(sizes, limit, name)} The limit is CROWDLOOP_MAX_MEMORY_MB for crowdloop aggregate and serve, "
        "fit(..., max_memory_mb=...) in Python: raise it only where that memory is free."
    )


def _alternatives(sizes: Sizes, limit: float, refused: str) -> str:
    from crowdloop.quality import CATEGORICAL_METHODS

    fitting = []
    for name, cls in CATEGORICAL_METHODS.items():
        needed = cls._footprint.bytes(sizes)
        if name != refused and needed <= limit:
            fitting.append(f"{name} ({_mb(needed)})")
    if fitting:
        return f"Methods that fit within it: {', '.join(fitting)}; or merge classes, so there are fewer."
    return "No method fits within it: merge classes, or aggregate the tasks in parts (or with --engine stream)."


def _registry_name(aggregator: BaseClassificationAggregator) -> str:
    from crowdloop.quality import CATEGORICAL_METHODS

    names = [name for name, cls in CATEGORICAL_METHODS.items() if cls is type(aggregator)]
    return names[0] if names else type(aggregator).__name__


def _mb(n_bytes: float) -> str:
    """``1,532 MB``, ``12.5 GB``: the size as the message gives it."""
    mb = n_bytes / 2**20
    if mb >= 10 * 1024:
        return f"{mb / 1024:,.1f} GB"
    return f"{mb:,.0f} MB" if mb >= 10 else f"{mb:.1f} MB"
