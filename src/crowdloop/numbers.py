"""What counts as a plain number in text: one written the way that number prints.

A file reader (:mod:`crowdloop.io`) turns a column into numbers only when every value is one, and
the feature spec (:meth:`crowdloop.learning.FeatureSpec.infer`) takes such a column of item text
as numeric. ``007`` (an id), ``+1`` or ``1,5`` are not, so they stay text. A numeric aggregator
reads any :func:`is_number` label (``00``, ``007``) as a number. It imports numpy alone: the edge's
featurizer imports this.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

INTEGER = re.compile(r"0|-?[1-9][0-9]{0,17}")
"""An integer as it would be written back: no leading zero, no sign but minus, within int64."""
DECIMAL = re.compile(r"-?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))([eE][-+]?[0-9]+)?")
"""A decimal or scientific number: ``1.50``, ``.5``, ``1e3``."""
NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
"""A number however written: ``00``, ``-0``, ``007``, ``+1.5``; what a score column may hold."""


def is_plain_number(text: str) -> bool:
    return bool(INTEGER.fullmatch(text) or DECIMAL.fullmatch(text))


def is_number(text: str) -> bool:
    """Whether ``text`` is a number at all, written plainly or not (``00``, ``+1``).

    Where a value is known to be a number (a score handed to a numeric method), ``00`` means 0;
    only where it may be an id does the stricter :func:`is_plain_number` decide.
    """
    return bool(NUMBER.fullmatch(text.strip()))


def plain(value: Any) -> Any:
    """``value`` as a Python scalar when it is numpy's (``np.int64(2)`` is ``2``): what JSON can
    carry and what a message shows."""
    return value.item() if isinstance(value, np.generic) else value
