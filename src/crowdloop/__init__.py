"""crowdloop: crowdsourcing and human computation for AI, the whole loop.

The public surface is small: truth inference lives in :mod:`crowdloop.quality`,
bundled data sets in :mod:`crowdloop.datasets`, and every deliberate error is a
:class:`CrowdloopError` (see :mod:`crowdloop.errors` for the tree).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from crowdloop.errors import CrowdloopError

if TYPE_CHECKING:
    from crowdloop.config import Settings
    from crowdloop.datasets import Dataset, load_dataset

__version__ = "0.1.0"

__all__ = ["CrowdloopError", "Dataset", "Settings", "__version__", "load_dataset"]

_LAZY = {"Settings": "crowdloop.config", "Dataset": "crowdloop.datasets", "load_dataset": "crowdloop.datasets"}


def __getattr__(name: str) -> Any:
    """Import on first use (PEP 562): the edge runtime imports ``crowdloop.deploy`` without pandas."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crowdloop' has no attribute {name!r}")
