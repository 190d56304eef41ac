"""Learning from the crowd directly: a classifier and every worker's confusion matrix, together.

Raykar et al., *Learning From Crowds*, JMLR 11 (2010). Worker :math:`j` answers
:math:`l` on item :math:`i` of true class :math:`k` with probability
:math:`\\pi^{(j)}_{kl}`; the true class follows the classifier,
:math:`p(z_i = k \\mid x_i) = f_\\theta(x_i)_k`. EM alternates:

* **E-step** :math:`q_{ik} \\propto f_\\theta(x_i)_k \\prod_{(i,j,l)} \\pi^{(j)}_{kl}`;
* **M-step** :math:`\\pi^{(j)}_{kl} \\propto \\alpha + \\sum_{(i,j,l)} q_{ik}`
  (Dirichlet smoothing :math:`\\alpha`), and :math:`\\theta` maximises
  :math:`\\sum_i \\sum_k q_{ik} \\log f_\\theta(x_i)_k` (soft-label training, any family).

Two departures from the paper, both against the classifier echoing its own training
labels: the E-step uses *out-of-fold* probabilities :math:`f_\\theta(x_i)` (``n_folds``
models, each fitted without item :math:`i`), and :math:`q` starts from an aggregator's
posteriors (``init``, majority vote as in the paper by default) rather than from scratch.
The model returned is fitted on the final :math:`q` over all items.

Example (``items`` with a text column, ``answers`` with task, worker, label)::

    crowd = CrowdModel(family="logreg").fit(items, answers)
    crowd.labels_, crowd.errors_, crowd.model_.predict_proba(new_items)
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd

from crowdloop.errors import InvalidInputError, InvalidParameterError, NotFittedError
from crowdloop.learning.features import FeatureSpec, Featurizer, Items, item_ids, shown
from crowdloop.learning.models import check_family
from crowdloop.learning.train import TrainedModel, fit_model, out_of_fold_probas
from crowdloop.quality import get_aggregator
from crowdloop.quality._data import EncodedAnswers, check_answers, encode_answers


def confusion_matrices(data: EncodedAnswers, posteriors: np.ndarray, smoothing: float) -> np.ndarray:
    """M-step for workers: :math:`\\pi^{(j)}_{kl}`, shape (workers, classes, classes)."""
    counts = np.full((data.n_workers, data.n_classes, data.n_classes), smoothing)
    index: Any = (data.worker, slice(None), data.label)
    np.add.at(counts, index, posteriors[data.task])
    return np.asarray(counts / counts.sum(axis=2, keepdims=True))


def worker_log_likelihood(data: EncodedAnswers, errors: np.ndarray) -> np.ndarray:
    """:math:`\\sum_{(i,j,l)} \\log \\pi^{(j)}_{kl}` per task and class."""
    out = np.zeros((data.n_tasks, data.n_classes))
    np.add.at(out, data.task, np.log(errors[data.worker, :, data.label]))
    return out


def posterior(prior: np.ndarray, loglik: np.ndarray) -> np.ndarray:
    """E-step: normalised :math:`\\text{prior} \\times \\exp(\\text{loglik})`, computed in logs."""
    logits = np.log(np.clip(prior, 1e-12, 1.0)) + loglik
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return np.asarray(out / out.sum(axis=1, keepdims=True))


class CrowdModel:
    """Raykar-style EM of a classifier (``family``) and worker confusion matrices.

    Fitted attributes: ``model_`` (:class:`TrainedModel`), ``probas_`` (task x class
    posteriors), ``labels_``, ``errors_`` (confusion matrices, workers x true x answered),
    ``classes_``, ``n_iter_``.
    """

    def __init__(
        self,
        family: str = "logreg",
        params: dict[str, Any] | None = None,
        init: str = "majority_vote",
        n_iter: int = 3,
        tol: float = 1e-3,
        n_folds: int = 3,
        smoothing: float = 1.0,
        random_state: int = 0,
    ) -> None:
        self.family = family
        self.params = params
        self.init = init
        self.n_iter = n_iter
        self.tol = tol
        self.n_folds = n_folds
        self.smoothing = smoothing
        self.random_state = random_state

    def _check(self) -> None:
        check_family(self.family)
        if self.n_iter < 1 or self.n_folds < 2 or self.smoothing <= 0 or self.tol < 0:
            raise InvalidParameterError(
                f"CrowdModel needs n_iter >= 1, n_folds >= 2, smoothing > 0 and tol >= 0; got n_iter={self.n_iter}, "
                f"n_folds={self.n_folds}, smoothing={self.smoothing}, tol={self.tol}."
            )

    def fit(
        self, items: Items, answers: pd.DataFrame, spec: FeatureSpec | None = None, featurizer: Featurizer | None = None
    ) -> Self:
        """Learn from items (features) and raw answers; items without answers are not trained on."""
        self._check()
        featurizer = featurizer or Featurizer(spec or FeatureSpec.infer(items)).fit(items)
        ids = item_ids(items, featurizer.spec.id_column)
        return self.fit_features(featurizer, featurizer.transform(items), ids, answers)

    def fit_features(self, featurizer: Featurizer, X: Any, ids: Any, answers: pd.DataFrame) -> Self:
        """:meth:`fit` with the feature rows already computed (row ``i`` of ``X`` is item ``ids[i]``),
        for callers that refit often on the same items (an active-learning loop)."""
        self._check()
        answers = check_answers(answers)
        known = answers["task"].isin(ids)
        if not known.any():
            first_answer, first_item = answers["task"].iloc[0], next(iter(ids))
            raise InvalidInputError(
                f"none of the answers' tasks is an item's id: answers name e.g. {shown(first_answer)}, "
                f"the items e.g. {shown(first_item)}."
            )
        answers = answers[known]  # answers on other tasks have no features to learn from
        data = encode_answers(answers)
        X = X[pd.Index(ids).get_indexer(data.tasks)]
        q = self._initial(answers, data)
        q = self._em(X, data, q)
        self._finish(featurizer, X, data, q)
        return self

    def _initial(self, answers: pd.DataFrame, data: EncodedAnswers) -> np.ndarray:
        start = get_aggregator(self.init).fit(answers).probas_
        return np.asarray(start.reindex(index=data.tasks, columns=data.classes).fillna(0.0).to_numpy())

    def _em(self, X: Any, data: EncodedAnswers, q: np.ndarray) -> np.ndarray:
        self.n_iter_ = 0
        for _ in range(self.n_iter):
            errors = confusion_matrices(data, q, self.smoothing)
            new = posterior(self._out_of_fold(X, q), worker_log_likelihood(data, errors))
            change, q = float(np.abs(new - q).max()), new
            self.n_iter_ += 1
            if change < self.tol:
                break
        return q

    def _out_of_fold(self, X: Any, q: np.ndarray) -> np.ndarray:
        """Classifier probabilities of each item from a model not trained on it."""
        return out_of_fold_probas(X, q, self.family, self.params, self.n_folds, self.random_state)

    def _finish(self, featurizer: Featurizer, X: Any, data: EncodedAnswers, q: np.ndarray) -> None:
        targets = pd.DataFrame(q, index=data.tasks, columns=data.classes)
        self.model_: TrainedModel = fit_model(featurizer, X, targets, self.family, self.params, self.random_state)
        self.model_.metadata["trained_on"] = "crowd (Raykar EM)"
        self.errors_ = confusion_matrices(data, q, self.smoothing)
        self.probas_ = targets
        self.labels_ = targets.idxmax(axis=1).rename("label")
        self.classes_ = list(data.classes)

    def predict_proba(self, items: Items) -> pd.DataFrame:
        """The fitted classifier's probabilities on ``items``."""
        if not hasattr(self, "model_"):
            raise NotFittedError("CrowdModel is not fitted yet: call fit(items, answers) first.")
        return self.model_.predict_proba(items)
