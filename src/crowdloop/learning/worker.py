"""The model as a worker: its predictions enter truth inference as one more (pseudo-)worker.

Truth inference then estimates the model's reliability exactly as a person's — its
confusion matrix in Dawid-Skene, its skill in the default aggregator — so a good model
strengthens the labels and a bad one is down-weighted instead of trusted blindly::

    answers_plus = model_as_worker(cross_val_probas(items, labels), name="model:v3", answers=answers)
    aggregator = DefaultAggregator().fit(answers_plus)
    aggregator.skills_["model:v3"]   # the model's estimated reliability

On the items a model learned from, give its out-of-fold probabilities
(:func:`~crowdloop.learning.train.cross_val_probas`), not its own predictions: there it
echoes its training labels and would be rated far more reliable than it is (on ``rte``, a
model trained on the gold labels of half the items agrees with them on 99% of those items,
on 59% of the others, and out of fold on 57%).

Example:
    >>> import pandas as pd
    >>> probas = pd.DataFrame({"a": [0.9, 0.4], "b": [0.1, 0.6]}, index=pd.Index(["t1", "t2"], name="task"))
    >>> model_as_worker(probas, name="model:v1").to_dict("records")
    [{'task': 't1', 'worker': 'model:v1', 'label': 'a'}, {'task': 't2', 'worker': 'model:v1', 'label': 'b'}]
"""

from __future__ import annotations

import pandas as pd

from crowdloop.errors import ConflictError, InvalidParameterError
from crowdloop.quality._data import check_answers


def model_as_worker(
    probas: pd.DataFrame,
    name: str = "model:latest",
    answers: pd.DataFrame | None = None,
    min_confidence: float = 0.0,
) -> pd.DataFrame:
    """The model's labels as answers of worker ``name`` (``task, worker, label``).

    Only predictions with probability at least ``min_confidence`` are kept. With
    ``answers``, returns them with the model's answers appended; a person already named
    ``name`` is an error rather than a silent merge.
    """
    if not str(name).strip():  # its answers would read as a blank worker's
        raise InvalidParameterError("the model needs a worker name, e.g. 'model:latest'; got an empty one.")
    if not 0.0 <= min_confidence <= 1.0:
        raise InvalidParameterError(f"min_confidence must be in [0, 1]; got {min_confidence}.")
    confident = probas[probas.max(axis=1) >= min_confidence]
    labels = confident.idxmax(axis=1)
    mine = pd.DataFrame({"task": confident.index.to_numpy(), "worker": name, "label": labels.to_numpy()})
    if answers is None:
        return mine
    answers = check_answers(answers)
    if (answers["worker"] == name).any():
        raise ConflictError(f"a worker named {name!r} already answered; give the model another name.")
    return pd.concat([answers[["task", "worker", "label"]], mine], ignore_index=True)
