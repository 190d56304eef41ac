"""Zero-Based Skill: weighted majority vote with skills learned by gradient steps."""

from __future__ import annotations

from typing import ClassVar

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
from crowdloop.quality._params import Interval
from crowdloop.quality.base import BaseClassificationAggregator


class ZeroBasedSkill(BaseClassificationAggregator):
    r"""Weighted majority vote whose weights chase each worker's agreement.

    Skills start at :math:`1/K + \epsilon`; each iteration votes with them and
    moves every skill towards the worker's agreement :math:`a_w` with the vote:

    .. math:: s_w \leftarrow s_w + \eta \, (a_w - s_w)

    with the learning rate :math:`\eta` multiplied by ``lr_reduce_factor`` every
    ``lr_steps_to_reduce`` iterations. Stops early once skills move less than
    ``tol``. Reference: Crowd-Kit's ZeroBasedSkill (Toloka).

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"),
        ...                         "label": [0, 0, 1, 1, 1, 1]})
        >>> ZeroBasedSkill().fit(answers).labels_.tolist()
        [0, 1]
    """

    _footprint = Footprint(task_classes=4.3, per_answer=36)

    _parameter_constraints: ClassVar[dict[str, object]] = {
        "n_iter": Interval(int, 1, None),
        "lr_init": Interval(float, 0, 1, "right"),
        "lr_steps_to_reduce": Interval(int, 1, None),
        "lr_reduce_factor": Interval(float, 0, 1, "right"),
        "tol": Interval(float, 0, None),
    }

    def __init__(
        self,
        n_iter: int = 100,
        lr_init: float = 1.0,
        lr_steps_to_reduce: int = 20,
        lr_reduce_factor: float = 0.5,
        tol: float = 1e-5,
    ) -> None:
        self.n_iter = n_iter
        self.lr_init = lr_init
        self.lr_steps_to_reduce = lr_steps_to_reduce
        self.lr_reduce_factor = lr_reduce_factor
        self.tol = tol

    def _fit(self, data: EncodedAnswers, gold: EncodedGold, progress: Progress | None) -> np.ndarray:
        skills = np.full(data.n_workers, 1.0 / data.n_classes + 1e-5)
        rate, iteration = self.lr_init, 0
        for iteration in range(1, self.n_iter + 1):
            if iteration % self.lr_steps_to_reduce == 0:
                rate *= self.lr_reduce_factor
            votes = clamp_gold(normalize_rows(vote_counts(data, skills)), gold)
            hard = one_hot(np.argmax(votes, axis=1), data.n_classes)
            step = rate * (worker_agreement(data, hard) - skills)
            skills = skills + step
            if progress is not None:
                progress(iteration, float(np.abs(step).max()))
            if np.abs(step).max() < self.tol:
                break
        self.n_iter_ = iteration
        self.skills_ = pd.Series(skills, index=data.workers.rename("worker"), name="skill")
        return clamp_gold(normalize_rows(vote_counts(data, skills)), gold)
