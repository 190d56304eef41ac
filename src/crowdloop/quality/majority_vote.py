"""Majority vote and Wawa: the fast, assumption-free baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crowdloop.quality._data import EncodedAnswers, EncodedGold
from crowdloop.quality._kernels import (
    Progress,
    clamp_gold,
    normalize_rows,
    one_hot,
    vote_counts,
    worker_agreement,
)
from crowdloop.quality._memory import Footprint
from crowdloop.quality.base import BaseClassificationAggregator


class MajorityVote(BaseClassificationAggregator):
    r"""Each task gets the label most workers gave it.

    .. math:: p(z_t = k) \propto \sum_{(t, w, l)} [l = k]

    ``probas_`` are the vote shares; ``skills_`` is each worker's agreement with
    the result.

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 1], "worker": ["a", "b", "c"],
        ...                         "label": ["cat", "cat", "dog"]})
        >>> MajorityVote().fit(answers).labels_.tolist()
        ['cat']
    """

    _footprint = Footprint(task_classes=3.3, per_answer=48)

    def __init__(self) -> None:
        pass

    def _fit(self, data: EncodedAnswers, gold: EncodedGold, progress: Progress | None) -> np.ndarray:
        probas = clamp_gold(normalize_rows(vote_counts(data)), gold)
        self.skills_ = _skills(data, probas)
        return probas


class Wawa(BaseClassificationAggregator):
    r"""Worker Agreement With Aggregate: a majority vote weighted by agreement.

    A plain majority vote gives each worker a skill :math:`s_w`, their share of
    answers matching it; a second vote weighs every answer by :math:`s_w`:

    .. math:: p(z_t = k) \propto \sum_{(t, w, l)} s_w [l = k]

    Reference: Appen's "Worker Agreement with Aggregate" (as in Crowd-Kit).

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 2, 2], "worker": ["a", "b", "a", "b"],
        ...                         "label": [0, 0, 1, 1]})
        >>> Wawa().fit(answers).labels_.tolist()
        [0, 1]
    """

    _footprint = Footprint(task_classes=4.3, per_answer=36)

    def __init__(self) -> None:
        pass

    def _fit(self, data: EncodedAnswers, gold: EncodedGold, progress: Progress | None) -> np.ndarray:
        first = clamp_gold(normalize_rows(vote_counts(data)), gold)
        skills = _skill_array(data, first)
        probas = clamp_gold(normalize_rows(vote_counts(data, skills)), gold)
        self.skills_ = pd.Series(skills, index=data.workers.rename("worker"), name="skill")
        return probas


def _skill_array(data: EncodedAnswers, probas: np.ndarray) -> np.ndarray:
    """Agreement of each worker with the hard labels of ``probas``."""
    return worker_agreement(data, one_hot(np.argmax(probas, axis=1), data.n_classes))


def _skills(data: EncodedAnswers, probas: np.ndarray) -> pd.Series:
    values = _skill_array(data, probas)
    return pd.Series(values, index=data.workers.rename("worker"), name="skill")
