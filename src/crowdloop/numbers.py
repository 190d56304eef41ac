"""What counts as a plain number in text: one written the way that number prints.

A file reader (:mod:`crowdloop.io`) turns a column into numbers only when every value is one, and
the feature spec (:meth:`crowdloop.learning.FeatureSpec.infer`) takes such a column of item text
as numeric. ``007`` (an id), ``+1`` or ``1,5`` are not, so they stay text. No heavy imports: the
edge's featurizer imports this.
"""

from __future__ import annotations

import re

INTEGER = re.compile(r"0|-?[1-9][0-9]{0,17}")
"""An integer as it would be written back: no leading zero, no sign but minus, within int64."""
DECIMAL = re.compile(r"-?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))([eE][-+]?[0-9]+)?")
"""A decimal or scientific number: ``1.50``, ``.5``, ``1e3``."""


def is_plain_number(text: str) -> bool:
    return bool(INTEGER.fullmatch(text) or DECIMAL.fullmatch(text))
