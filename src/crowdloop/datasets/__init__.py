"""Real crowdsourcing data sets with gold labels, bundled for tests and examples.

The bundled sets are small and published under open terms (sources in
``datasets/data/SOURCES.md`` and the README). :func:`load_dataset` also reads any
folder laid out the same way (``answers.csv``, ``gold.csv``, optional
``items.csv``), such as the full collection in ``shared/datasets``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from crowdloop.errors import NotFoundError

BUNDLED_ROOT = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Dataset:
    """One data set: long answers, gold labels (task -> label) and optional item texts."""

    name: str
    answers: pd.DataFrame
    gold: pd.Series
    items: pd.DataFrame | None


def bundled_datasets() -> list[str]:
    """Names of the data sets shipped inside the package."""
    return sorted(p.name for p in BUNDLED_ROOT.iterdir() if (p / "answers.csv").exists())


def load_dataset(name: str, root: Path | str | None = None) -> Dataset:
    """Load data set ``name`` from ``root`` (default: the bundled ones)."""
    folder = Path(root or BUNDLED_ROOT) / name
    if not (folder / "answers.csv").exists():
        available = ", ".join(bundled_datasets()) if root is None else f"folders of {root}"
        raise NotFoundError(f"no data set {name!r}; available: {available}.")
    answers = pd.read_csv(folder / "answers.csv")
    gold = pd.read_csv(folder / "gold.csv").set_index("task")["label"]
    items_path = folder / "items.csv"
    items = pd.read_csv(items_path) if items_path.exists() else None
    return Dataset(name, answers, gold, items)
