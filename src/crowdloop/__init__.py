"""crowdloop: crowdsourcing and human computation for AI, the whole loop.

The public surface is small: truth inference lives in :mod:`crowdloop.quality`,
bundled data sets in :mod:`crowdloop.datasets`, and every deliberate error is a
:class:`CrowdloopError` (see :mod:`crowdloop.errors` for the tree).
"""

from crowdloop.config import Settings
from crowdloop.datasets import Dataset, load_dataset
from crowdloop.errors import CrowdloopError

__version__ = "0.1.0"

__all__ = ["CrowdloopError", "Dataset", "Settings", "__version__", "load_dataset"]
