"""Truth inference: turn noisy crowd answers into labels with a confidence.

Every aggregator follows the scikit-learn contract on one long frame with
columns ``task``, ``worker``, ``label``::

    >>> import pandas as pd
    >>> from crowdloop.quality import DawidSkene
    >>> answers = pd.DataFrame({"task": [1, 1, 1], "worker": ["a", "b", "c"],
    ...                         "label": ["cat", "cat", "dog"]})
    >>> DawidSkene().fit(answers).labels_.tolist()
    ['cat']

:func:`get_aggregator` builds one by name (``crowdloop aggregate --method``).
"""

from __future__ import annotations

import re
from typing import Any

from crowdloop.errors import UnknownMethodError
from crowdloop.quality.base import BaseAggregator, BaseClassificationAggregator
from crowdloop.quality.dawid_skene import DawidSkene, OneCoinDawidSkene
from crowdloop.quality.default import DefaultAggregator
from crowdloop.quality.glad import GLAD
from crowdloop.quality.ibcc import IBCC
from crowdloop.quality.mace import MACE
from crowdloop.quality.majority_vote import MajorityVote, Wawa
from crowdloop.quality.numeric import BaseNumericAggregator, Mean, Median, ReliabilityWeightedMean
from crowdloop.quality.shrunk_dawid_skene import ShrunkDawidSkene
from crowdloop.quality.zero_based_skill import ZeroBasedSkill

CATEGORICAL_METHODS: dict[str, type[BaseClassificationAggregator]] = {
    "default": DefaultAggregator,
    "majority_vote": MajorityVote,
    "wawa": Wawa,
    "zero_based_skill": ZeroBasedSkill,
    "dawid_skene": DawidSkene,
    "one_coin_dawid_skene": OneCoinDawidSkene,
    "shrunk_dawid_skene": ShrunkDawidSkene,
    "glad": GLAD,
    "mace": MACE,
    "ibcc": IBCC,
}
"""Categorical aggregators by their registry name."""

NUMERIC_METHODS: dict[str, type[BaseNumericAggregator]] = {
    "mean": Mean,
    "median": Median,
    "reliability_weighted_mean": ReliabilityWeightedMean,
}
"""Numeric aggregators by their registry name."""

METHODS: dict[str, type[BaseAggregator]] = {**CATEGORICAL_METHODS, **NUMERIC_METHODS}


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def get_aggregator(name: str, **params: Any) -> BaseAggregator:
    """Build the aggregator called ``name`` (``dawid_skene``, ``DawidSkene``, ``mv``...).

    Registry names and class names are both accepted, case and ``-``/``_``
    ignored; ``mv`` and ``ds`` are short for majority vote and Dawid-Skene.
    """
    wanted = _normalise({"mv": "majority_vote", "ds": "dawid_skene"}.get(name.lower(), name))
    for key, cls in METHODS.items():
        if wanted in (_normalise(key), _normalise(cls.__name__)):
            return cls(**params)
    raise UnknownMethodError(f"unknown aggregation method {name!r}; choose one of {', '.join(METHODS)}.")


__all__ = [  # noqa: RUF022 - plain sorted(), pinned by tests/test_foundation.py
    "BaseAggregator",
    "BaseClassificationAggregator",
    "BaseNumericAggregator",
    "CATEGORICAL_METHODS",
    "DawidSkene",
    "DefaultAggregator",
    "GLAD",
    "IBCC",
    "MACE",
    "METHODS",
    "MajorityVote",
    "Mean",
    "Median",
    "NUMERIC_METHODS",
    "OneCoinDawidSkene",
    "ReliabilityWeightedMean",
    "ShrunkDawidSkene",
    "Wawa",
    "ZeroBasedSkill",
    "get_aggregator",
]
