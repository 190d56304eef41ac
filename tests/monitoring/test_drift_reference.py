"""The drift reference on real ``product`` pairs: what the deployed version gives on new items.

A version is made as the demo makes it: a pool of pairs, 100 labeled at random and then, twice,
the 200 the current model is least sure of (active learning), trained on the recorded crowd's
vote shares. Its reference is then compared with its confidences on pairs the project never
had, which is what a stationary stream shows it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from crowdloop.datasets import load_dataset
from crowdloop.learning.features import FeatureSpec, Featurizer
from crowdloop.learning.project_data import ID_COLUMN
from crowdloop.learning.train import TrainedModel, soft_targets, stratified_folds, train_model
from crowdloop.monitoring.drift_reference import FOLDS, Population, build_reference, out_of_fold

FIELDS = ("text", "text_b")


def _pairs(frame: pd.DataFrame, first_id: int = 1) -> pd.DataFrame:
    """Items as the platform holds them: their fields and a database-like id."""
    fields = {name: frame[name].fillna("").astype(str).to_numpy() for name in FIELDS}
    return pd.DataFrame({**fields, ID_COLUMN: np.arange(first_id, first_id + len(frame))})


def _vote_shares(tasks: pd.Series, ids: pd.Series, answers: pd.DataFrame) -> pd.DataFrame:
    """Each item's share of the crowd's answers per class (items nobody answered are left out)."""
    mine = answers[answers["task"].isin(set(tasks))]
    shares = pd.crosstab(mine["task"], mine["label"].astype(str), normalize="index")
    id_of = dict(zip(tasks, ids, strict=True))
    shares.index = pd.Index([id_of[task] for task in shares.index])
    return shares


def _train(items: pd.DataFrame, soft: pd.DataFrame) -> TrainedModel:
    """As the service trains: the featurizer fitted on the labeled items, then logistic regression."""
    labeled = items[items[ID_COLUMN].isin(soft.index)]
    spec = FeatureSpec.infer(labeled, id_column=ID_COLUMN)
    return train_model(labeled, soft, spec=spec, featurizer=Featurizer(spec).fit(labeled))


@pytest.fixture(scope="module")
def version() -> dict[str, object]:
    data = load_dataset("product")
    assert data.items is not None
    order = np.random.default_rng(3).permutation(len(data.items))
    pool_rows, unseen_rows = data.items.iloc[order[:1800]], data.items.iloc[order[1800:4300]]
    pool = _pairs(pool_rows)
    shares = _vote_shares(pool_rows["task"], pool[ID_COLUMN], data.answers)
    chosen = list(np.random.default_rng(3).choice(pool[ID_COLUMN], 100, replace=False))
    model = _train(pool, shares.loc[chosen])
    for _ in range(2):  # active learning: the least confident open items are labeled next
        open_items = pool[~pool[ID_COLUMN].isin(chosen)]
        doubt = model.predict_proba(open_items).to_numpy().max(axis=1)
        chosen += list(open_items[ID_COLUMN].to_numpy()[np.argsort(doubt)[:200]])
        model = _train(pool, shares.loc[shares.index.intersection(chosen)])
    soft = shares.loc[shares.index.intersection(chosen)]
    unseen = model.predict_proba(_pairs(unseen_rows, 10**6)).to_numpy().max(axis=1)
    return {"model": model, "pool": pool, "soft": soft, "unseen": unseen}


@pytest.mark.slow
def test_the_reference_is_the_versions_confidence_on_new_items(version):
    """The population (labeled items out of fold, the rest predicted) against 2,500 new pairs:
    alike. Either part alone is not: the labeled items are the hard ones, the others the easy."""
    model, pool, soft, unseen = version["model"], version["pool"], version["soft"], version["unseen"]
    reference = build_reference(model, Population(pool, pool, soft), seed=1)
    assert reference["cross_fitted"] and reference["labeled"] == len(soft) and reference["items"] == len(pool)
    assert len(reference["confidence"]) == len(pool)  # all of it: a draw of some made the check a lottery
    confidence = np.asarray(reference["confidence"])
    alike = stats.ks_2samp(confidence, unseen)
    assert alike.pvalue > 0.05 and abs(confidence.mean() - unseen.mean()) < 0.01, alike
    labeled = pool[ID_COLUMN].isin(soft.index).to_numpy()
    hard, _ = out_of_fold(model, pool[labeled], pool, soft, seed=1)
    easy = model.predict_proba(pool[~labeled]).to_numpy().max(axis=1)
    assert stats.ks_2samp(hard.max(axis=1), unseen).statistic > 0.2
    assert stats.ks_2samp(easy, unseen).statistic > 0.1


@pytest.mark.slow
def test_out_of_fold_is_the_versions_training_done_again_without_the_fold(version):
    """Each labeled item of the population is predicted by a featurizer and a model fitted on the
    other folds and on the training items outside the population (the edge's), never with its
    own fold; the folds are shuffled and even in each leading class."""
    model, pool, soft = version["model"], version["pool"], version["soft"]
    labeled = pool[pool[ID_COLUMN].isin(soft.index)].reset_index(drop=True)
    inside, outside = labeled.iloc[40:], labeled.iloc[:40]  # the first 40 stand for the edge's items
    probas, cross_fitted = out_of_fold(model, inside, labeled, soft, seed=5)
    assert cross_fitted
    targets = soft_targets(soft).loc[inside[ID_COLUMN]]
    folds = stratified_folds(targets.to_numpy(), FOLDS, random_state=5)
    assert not np.array_equal(folds, np.arange(len(inside)) % FOLDS)
    for code in np.unique(targets.to_numpy().argmax(axis=1)):
        counts = np.bincount(folds[targets.to_numpy().argmax(axis=1) == code], minlength=FOLDS)
        assert counts.max() - counts.min() <= 1
    for fold in range(FOLDS):
        part = pd.concat([inside[folds != fold], outside], ignore_index=True)
        again = train_model(part, soft, featurizer=Featurizer(model.featurizer.spec).fit(part), params=model.params)
        expected = again.predict_proba(inside[folds == fold]).to_numpy()
        np.testing.assert_allclose(probas[folds == fold], expected, atol=1e-4)  # rows in another order: solver noise
