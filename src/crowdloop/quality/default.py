"""The default aggregator: what ``crowdloop aggregate`` uses when no method is named."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from crowdloop.quality._data import EncodedAnswers, EncodedGold
from crowdloop.quality._kernels import Progress
from crowdloop.quality._memory import Footprint
from crowdloop.quality._params import RandomState
from crowdloop.quality.base import BaseClassificationAggregator
from crowdloop.quality.mace import MACE
from crowdloop.quality.shrunk_dawid_skene import ShrunkDawidSkene


class DefaultAggregator(BaseClassificationAggregator):
    r"""The average of two complementary worker models; robust across crowds.

    .. math::
        p(z_t = k) = \tfrac12\, p_{\text{ShrunkDS}}(z_t = k)
                   + \tfrac12\, p_{\text{MACE}}(z_t = k)

    Why it is the default: on the twelve categorical data sets of
    ``shared/datasets`` no single model is best everywhere. Full Dawid-Skene
    collapses where workers answer little (``cf``) or classes are many (``ms``);
    one-coin models and MACE lose where workers have class-specific habits or
    classes are unbalanced (``product``). :class:`ShrunkDawidSkene` keeps full
    confusion matrices but shrinks them towards a worker's two-parameter
    "knows or follows a habit" fit, and :class:`MACE` (here with learned class
    proportions) models spammers explicitly; their errors differ, so the average
    is right more often than either. Its mean accuracy over those data sets is
    above the mean of the best published result on each one (see
    ``benchmarks/results/truth_inference.md``).

    ``skills_`` is the mean of the two models' skills; ``errors_`` the shrunk
    Dawid-Skene confusion matrices.

    Example:
        >>> import pandas as pd
        >>> answers = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"),
        ...                         "label": ["a", "a", "b", "b", "b", "b"]})
        >>> DefaultAggregator().fit(answers).labels_.tolist()
        ['a', 'b']
    """

    _footprint = Footprint(confusion=2.2, task_classes=4.3, worker_classes=6.5, per_answer=96)

    _parameter_constraints: ClassVar[dict[str, object]] = {"random_state": RandomState()}

    def __init__(self, random_state: int | np.random.Generator | None = 0) -> None:
        self.random_state = random_state

    def _fit(self, data: EncodedAnswers, gold: EncodedGold, progress: Progress | None) -> np.ndarray:
        shrunk = ShrunkDawidSkene()
        spam = MACE(learn_class_prior=True, random_state=self.random_state)
        first = shrunk._fit(data, gold, progress)
        second = spam._fit(data, gold, _offset(progress, shrunk.n_iter_))
        self.n_iter_ = shrunk.n_iter_ + spam.n_iter_
        self.errors_ = shrunk.errors_
        self.priors_ = shrunk.priors_
        skills = (shrunk.skills_ + spam.skills_) / 2
        self.skills_ = pd.Series(skills.to_numpy(), index=skills.index, name="skill")
        return np.asarray((first + second) / 2)


def _offset(progress: Progress | None, done: int) -> Progress | None:
    """Number the second model's iterations after the first one's."""
    if progress is None:
        return None
    return lambda iteration, change: progress(done + iteration, change)
