"""What a model version saw in training, in the terms an edge device reports: the drift reference.

For a version, the reference is computed from the project's *population*: its regular items
that existed when the version was registered, except those an edge device sent back (they
were chosen for being unsure). It is kept, once computed, in a ``drift_reference``
:class:`~crowdloop.storage.models.ModelEvent` (never in the artifact folder, whose SHA-256
digest must not change). The population, not only the labeled items: active learning and
dynamic overlap choose which items get labels, by the model's doubt, so the labeled items are
the hard ones and their confidences are lower than the stream's. Measured in ``crowdloop
demo`` (active learning on ``product``): against the labeled items alone every round of a
stationary stream alarmed; against the population none did.

The two parts of the population are far from the stream alone and like it together: in ``crowdloop
demo`` (seeds 0-2, the third version), the out-of-fold confidences of the labeled items against
the stream's give a KS ``D`` of 0.41-0.44 and the unlabeled items' (the easy ones) 0.20-0.24,
while the whole population's against the version's confidences on some 5,300 ``product`` pairs
the project never imported gives 0.017-0.039 (means 0.0007-0.007 apart; the largest, seed 0's,
was there already for its first version, trained on 84 items, and for models trained on other
items: that pool is, by chance, easier than the rest of the set).

* **confidence** and **predicted classes**: for labeled items, *out-of-fold* predictions: the
  version's training done again without each of :data:`FOLDS` folds (shuffled and stratified
  by leading class, seeded), the featurizer fitted anew on the fold's training part, then the
  version's family and hyper-parameters, with every item the version learned from that is not
  in the population (the edge's) in every training part; for unlabeled items, the version's
  own predictions (it never saw them). In-sample predictions would not do: a model is more
  confident, and predicts its rarer classes more often, on items it was fitted on than on new
  items from the same distribution. Measured on the bundled ``product`` set (logistic
  regression, 1,500 training items, 1,000 held-out items): against in-sample predictions the
  held-out class mix gives χ² p = 7e-6, a false alarm; against out-of-fold predictions p =
  0.24. Nor would the version's own fitted featurizer: its vocabulary and idf were learned
  with the held-out items in them, so a pair's rare shared terms (a model number on both
  sides) raise its TF-IDF cosine as they never do a new item's. With fewer than
  :data:`MIN_CROSS_FIT` labeled items (or a fold with one class) the version's in-sample
  predictions are used, marked so.
* **inputs**: for each field the model reads, each item's text length and whether it is empty,
  exactly as :class:`crowdloop.deploy.telemetry.Telemetry` counts them on the edge (a value
  that is not a string counts as ``""``).

Samples are capped at :data:`SAMPLE_SIZE` items (a seeded draw), so the event stays small
(about 30 bytes an item with two text fields). The cap was 1,000, a draw of 56% of the demo's
population of 1,793, and which 1,000 were drawn decided how often the check alarmed: for the
third version of a seed-0 demo (whose round-3 stream holds, by chance, more matches than its
pool: 15.7% against 11.1%), 30 draws of 1,000 had that round's checks alarm between 0% and 33.5%
of the time, the whole population 7.0% (each over the edge's 256-of-300 confidence samples). A
smaller reference is also a less sensitive check: on the demo's versions (seeds 0-4, three
each), windows of 300 new pairs with 20% matches instead of about 12% were caught 20.9% of the
time before its tests shared one false-alarm rate, 17.3% after with 1,000 items, 21.8% with
the whole population (stationary windows: 1.77%, 1.02%, 1.49%).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from crowdloop.errors import EmptyInputError, InvalidInputError
from crowdloop.learning import registry
from crowdloop.learning.project_data import ID_COLUMN, items_frame, soft_from_confidence
from crowdloop.learning.train import (
    TrainedModel,
    aligned_targets,
    fit_model,
    full_probas,
    soft_targets,
    stratified_folds,
)
from crowdloop.storage.models import Item, ItemLabel, ModelEvent, ModelVersion, Project

REFERENCE_KIND = "drift_reference"
SAMPLE_SIZE = 2000
FOLDS = 5
MIN_CROSS_FIT = 50


def input_stats(value: Any) -> tuple[int, bool]:
    """One field of one item as the edge counts it: its text length and whether it is empty."""
    text = value if isinstance(value, str) else ""
    return len(text), not text.strip()


@dataclass(frozen=True)
class Population:
    """What a version's reference is computed from (see the module docstring).

    ``items`` is the population, predicted for the reference; ``training`` the fields of every
    regular item there was when the version was registered, the edge's included, so that the
    refits learn from every item the version learned from; ``soft`` the targets (item id x
    class) of the labeled ones.
    """

    items: pd.DataFrame
    training: pd.DataFrame
    soft: pd.DataFrame


def population(session: Session, project: Project, version: ModelVersion) -> Population:
    """The version's population and training items with the labels' soft targets.

    Items sent back by an edge are left out of the population unless the project has no other
    items; they stay among the training items.
    """
    query = (
        select(Item.id, Item.data, Item.source, ItemLabel.label, ItemLabel.confidence)
        .outerjoin(ItemLabel, ItemLabel.item_id == Item.id)
        .where(Item.project_id == project.id, Item.is_gold.is_(False), Item.created_at <= version.created_at)
        .order_by(Item.id)
    )
    rows = session.execute(query).all()
    chosen = [row for row in rows if row.source != "edge"] or rows
    if not any(row.label is not None for row in chosen):
        raise EmptyInputError(f"model version {version.version} has no labeled training items left to compare with.")
    labeled = [row for row in rows if row.label is not None]
    index = pd.Index([int(row.id) for row in labeled])
    labels = pd.Series([str(row.label) for row in labeled], index=index)
    confidence = pd.Series([float(row.confidence) for row in labeled], index=index)
    classes = [str(label) for label in project.labels]
    training = items_frame([(row.id, row.data) for row in rows])
    items = training if len(chosen) == len(rows) else items_frame([(row.id, row.data) for row in chosen])
    return Population(items, training, soft_from_confidence(labels, confidence, classes))


def out_of_fold(
    model: TrainedModel, items: pd.DataFrame, training: pd.DataFrame, soft: pd.DataFrame, seed: int
) -> tuple[np.ndarray, bool]:
    """Class probabilities of ``items`` (labeled ones), in their order, each from a refit that
    never saw it; ``True`` when cross-fitted.

    The refits are the version's training done again without one fold: the featurizer is
    fitted anew on the fold's training part (a vocabulary and idf learned with the held-out
    items in them would be a leak), then the version's family and hyper-parameters. Items of
    ``training`` that are not in ``items`` (the edge's) are in every fold's training part,
    as they were in the version's. Folds are shuffled and stratified by leading class
    (:func:`~crowdloop.learning.train.stratified_folds`, seeded).
    """
    positions, targets = aligned_targets(items, soft, ID_COLUMN)
    order = np.argsort(positions, kind="stable")  # the items' order, not the targets' (a version's are its own)
    positions, targets = positions[order], targets.iloc[order]
    rows = items.iloc[positions].reset_index(drop=True)
    if len(rows) < MIN_CROSS_FIT:
        return model.predict_proba(rows).to_numpy(), False
    others = training[~training[ID_COLUMN].isin(rows[ID_COLUMN]) & training[ID_COLUMN].isin(soft.index)]
    other_targets = soft_targets(soft).loc[others[ID_COLUMN]]
    folds = stratified_folds(targets.to_numpy(), FOLDS, random_state=seed)
    probas = np.zeros((len(rows), len(model.classes_)))
    try:
        for fold in range(FOLDS):
            held = folds == fold
            part = pd.concat([rows[~held], others], ignore_index=True)
            featurizer = copy.copy(model.featurizer).fit(part)
            fit = fit_model(featurizer, featurizer.transform(part), pd.concat([targets[~held], other_targets]),
                            model.family, model.params)  # fmt: skip
            probas[held] = full_probas(fit.estimator, featurizer.transform(rows[held]), len(model.classes_))
    except InvalidInputError:  # a fold whose training part has a single class
        return model.predict_proba(rows).to_numpy(), False
    return probas, True


def build_reference(model: TrainedModel, source: Population, seed: int) -> dict[str, Any]:
    """The JSON reference of a version (see the module docstring): the population's labeled
    items predicted out of fold, the rest by ``model`` itself."""
    items = source.items
    labeled = items[ID_COLUMN].isin(source.soft.index).to_numpy()
    chosen = np.sort(np.random.default_rng(seed).permutation(len(items))[:SAMPLE_SIZE])
    probas = np.zeros((len(items), len(model.classes_)))
    probas[labeled], cross_fitted = out_of_fold(model, items[labeled], source.training, source.soft, seed)
    unlabeled = chosen[~labeled[chosen]]
    if len(unlabeled):
        probas[unlabeled] = model.predict_proba(items.iloc[unlabeled]).to_numpy()
    labels = [str(model.classes_[code]) for code in probas[chosen].argmax(axis=1)]
    records = items.to_dict("records")
    return {
        "items": len(probas),
        "labeled": int(labeled.sum()),
        "cross_fitted": cross_fitted,
        "confidence": [round(float(value), 6) for value in probas.max(axis=1)[chosen]],
        "classes": dict(Counter(labels)),
        "inputs": {name: _input_sample(records, name, chosen) for name in model.featurizer.spec.fields},
    }


def _input_sample(records: list[dict[Any, Any]], name: str, chosen: np.ndarray) -> dict[str, list[int]]:
    pairs = [input_stats(records[position].get(name)) for position in chosen]
    return {"lengths": [length for length, _ in pairs], "empty": [int(empty) for _, empty in pairs]}


def cached_reference(session: Session, version: ModelVersion) -> dict[str, Any] | None:
    query = (
        select(ModelEvent.detail)
        .where(ModelEvent.version_id == version.id, ModelEvent.kind == REFERENCE_KIND)
        .order_by(ModelEvent.id.desc())
        .limit(1)
    )
    detail = session.scalar(query)
    return None if detail is None else dict(detail)


def reference_for(session: Session, project: Project, version: ModelVersion, registry_dir: Path) -> dict[str, Any]:
    """The version's reference: cached, or computed now from its artifact and training items, then cached."""
    cached = cached_reference(session, version)
    if cached is not None:
        return cached
    model = TrainedModel.load(registry.artifact_dir(registry_dir, version))
    source = population(session, project, version)
    learned = registry.training_targets(registry_dir, version)
    if learned is not None:  # what the version really learned from (e.g. the crowd model's posteriors)
        source = replace(source, soft=learned.reindex(columns=source.soft.columns, fill_value=0.0))
    reference = {"version": version.version, **build_reference(model, source, seed=version.id)}
    registry.record_event(session, project.id, version.id, REFERENCE_KIND, reference)
    session.flush()
    return reference
