"""Train, tune, version and promote a project's model: the service behind ``/models`` and ``crowdloop train``.

Training is three steps, so that no database transaction is open while a model learns
(on SQLite every write transaction holds the database's one write lock; on PostgreSQL a
long transaction keeps old row versions alive):

1. a short unit of work checks the caller and reads the project's labeled regular items,
   its gold items and the labels' lineage (:func:`~crowdloop.learning.project_data.load_project_data`);
2. with no transaction open, the model is trained (or tuned with Optuna when a trial or
   time budget is given), evaluated on the gold items — held out, never trained on —
   saved and exported to ONNX for the edge;
3. a second short unit of work registers the version, points ``candidate`` at it and
   promotes it to ``production`` only if it beats production on the same gold: both are
   scored on the gold items neither learned from (an item made gold after a version trained
   on it would flatter that version), and the candidate must score no lower on accuracy nor on
   macro-F1, and higher on one (:func:`beats`); the first version of a project becomes
   production. With no gold item held out from both, the candidate is not promoted
   automatically. Either way a ``promoted`` or ``rejected`` event records both scores and how
   many gold items they were taken on.

In the HTTP server this runs on the request's worker thread (the pool has
``CROWDLOOP_THREADS``, 8 by default), so one long training takes one thread and no lock:
the other requests go on being served. The services take a :data:`Runner` (``Api.run``
in the server) that opens one unit of work per call, instead of a session.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from sqlalchemy.orm import Session

from crowdloop.config import Settings
from crowdloop.crowd.projects import get_owned_project, get_project
from crowdloop.errors import ArtifactError, EmptyInputError, InvalidParameterError, NotFoundError, PermissionDeniedError
from crowdloop.learning import registry
from crowdloop.learning.features import FeatureSpec, Featurizer
from crowdloop.learning.metrics import evaluate
from crowdloop.learning.models import FAMILIES, SEARCHED, check_seed
from crowdloop.learning.project_data import ID_COLUMN, ProjectData, gold_set, load_project_data, with_fields
from crowdloop.learning.promotion import beats
from crowdloop.learning.search import tune
from crowdloop.learning.torch_mlp import require_torch
from crowdloop.learning.train import TrainedModel, train_model
from crowdloop.storage.models import ModelVersion, User

AUTO_TRIALS = 10
"""Trials of the search when ``family="auto"`` is asked with no budget."""


class Runner(Protocol):
    """Runs ``work`` in one unit of work as the authenticated caller (``Api.run``)."""

    def __call__(self, work: Any, /) -> Any: ...


@dataclass(frozen=True)
class TrainOptions:
    """What to train: one ``family`` (default logistic regression) or a search (``family="auto"``
    or any ``n_trials``/``timeout`` budget) over that family or all of them."""

    family: str | None = None
    n_trials: int = 0
    timeout: float | None = None
    random_state: int = 0
    targets: str = "labels"

    def check(self) -> None:
        if self.family not in (None, "auto", *FAMILIES):
            raise InvalidParameterError(
                f"unknown model family {self.family!r}; choose one of {', '.join(FAMILIES)}, "
                "or auto (a search over the scikit-learn families)."
            )
        check_seed(self.random_state)
        if self.family == "torch_mlp":  # refused before any work, not after the data is read
            require_torch()
        if self.n_trials < 0 or (self.timeout is not None and self.timeout <= 0):
            raise InvalidParameterError(f"need n_trials >= 0 and timeout > 0; got {self.n_trials}, {self.timeout}.")
        if self.targets not in TARGETS:
            raise InvalidParameterError(f"targets must be one of {', '.join(TARGETS)}; got {self.targets!r}.")

    @property
    def searches(self) -> bool:
        return self.family == "auto" or self.n_trials > 0 or self.timeout is not None


TARGETS = ("labels", "crowd")
"""What a model learns from: the project's aggregated labels, or the raw answers through
:class:`~crowdloop.learning.crowd_model.CrowdModel` (the classifier and every worker's
confusion matrix together, Raykar et al. 2010), whose posteriors then train or tune the model."""


@dataclass
class Trained:
    """A trained model, saved to ``folder``, with its scores on gold (step 2's result)."""

    folder: Path
    family: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    search: dict[str, Any] | None
    gold_items: pd.DataFrame
    gold: pd.Series
    targets: pd.DataFrame | None = None
    model: TrainedModel | None = None


def models_root(settings: Settings) -> Path:
    """Where the registry keeps artifacts: ``<CROWDLOOP_DATA_DIR>/models``."""
    return settings.data_dir / "models"


def train_project(run: Runner, project_id: int, registry_dir: Path, options: TrainOptions) -> dict[str, Any]:
    """Train (or tune) on the project's labels, evaluate on its gold, register and maybe promote."""
    options.check()
    data: ProjectData = run(lambda session, actor: _load(session, actor, project_id, options.targets == "crowd"))
    registry_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=registry_dir, prefix=".training-") as scratch:
        trained = fit_and_evaluate(data, options, Path(scratch))
        return dict(run(lambda session, actor: record(session, actor, project_id, trained, registry_dir)))


def _load(session: Session, actor: User, project_id: int, with_answers: bool = False) -> ProjectData:
    return load_project_data(session, get_owned_project(session, actor, project_id), with_answers=with_answers)


def fit_and_evaluate(data: ProjectData, options: TrainOptions, folder: Path) -> Trained:
    """Step 2, no database: train or tune, score on gold, save and export to ONNX into ``folder``."""
    from crowdloop.deploy.onnx import export_onnx

    started = time.perf_counter()
    spec = FeatureSpec.infer(data.items, id_column=ID_COLUMN)
    featurizer = Featurizer(spec).fit(data.items)  # one fit, shared by the crowd model and the training
    if options.targets == "crowd":
        data = _with_crowd_targets(data, featurizer, options)
    model, search = _fit(data, featurizer, options)
    gold_items = with_fields(data.gold_items, spec)
    metrics = evaluate(model, gold_items, data.gold)
    model.metadata.update({"project": data.project_id, "id_column": ID_COLUMN})
    model.save(folder)
    export_onnx(model, folder)
    lineage = {**data.lineage, "gold_items": len(data.gold), "seconds": round(time.perf_counter() - started, 3)}
    # model.params holds every parameter, defaults included (fit_model records them); add how it was made
    params = {**model.params, "random_state": options.random_state, "targets": options.targets}
    return Trained(folder, model.family, params, metrics, lineage, search, gold_items, data.gold, data.targets, model)


def _with_crowd_targets(data: ProjectData, featurizer: Featurizer, options: TrainOptions) -> ProjectData:
    """``data`` with its targets replaced by the crowd model's posteriors over its answered items.

    On ``product``, where one answer in five is wrong and most wrong answers miss a match, the
    aggregated labels call a third to a half of the matches "no match" at two or three answers
    an item; a logistic regression trained on them predicts "no match" everywhere (0.862 on
    the demo's gold, the majority share), while one trained through the crowd model scores 0.93
    on the same answers (0.936 with the true labels).
    """
    from crowdloop.learning.crowd_model import CrowdModel

    if data.answers is None:
        raise InvalidParameterError("training on the crowd needs the project's answers; load them with_answers.")
    family = options.family if options.family not in (None, "auto") else "logreg"
    answers = data.answers[data.answers["task"].isin(data.items[ID_COLUMN])]
    crowd = CrowdModel(family=family, random_state=options.random_state)
    posteriors = crowd.fit(data.items, answers, featurizer=featurizer).probas_
    targets = posteriors.reindex(columns=data.classes, fill_value=0.0)
    targets.index = pd.Index([int(task) for task in targets.index])
    lineage = {**data.lineage, "targets": "crowd (Raykar EM)", "crowd_iterations": crowd.n_iter_}
    return replace(data, targets=targets.rename_axis(None), lineage=lineage)


def _fit(
    data: ProjectData, featurizer: Featurizer, options: TrainOptions
) -> tuple[TrainedModel, dict[str, Any] | None]:
    if not options.searches:
        family = options.family or "logreg"
        model = train_model(data.items, data.targets, family=family, featurizer=featurizer,
                            random_state=options.random_state)  # fmt: skip
        return model, None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial would fill the server's log
    families = SEARCHED if options.family in (None, "auto") else (options.family,)
    n_trials = options.n_trials or (AUTO_TRIALS if options.timeout is None else None)
    result = tune(
        data.items, data.targets, n_trials=n_trials, timeout=options.timeout, families=families,
        featurizer=featurizer, random_state=options.random_state,
    )  # fmt: skip
    search = {"trials": len(result.trials), "cv_score": result.score, "seconds": round(result.seconds, 3)}
    return result.model, search


def record(session: Session, actor: User, project_id: int, trained: Trained, registry_dir: Path) -> dict[str, Any]:
    """Step 3: register the version, make it the candidate, promote it if it beats production."""
    project = get_owned_project(session, actor, project_id, lock=True)  # one registration per project at a time
    params = {**trained.params, **({"search": trained.search} if trained.search else {})}
    version = registry.register_version(
        session, project, trained.folder, registry_dir, family=trained.family, params=params,
        metrics=trained.metrics, lineage=trained.lineage, created_by=actor.id,
    )  # fmt: skip
    if trained.targets is not None:
        registry.save_training_targets(registry_dir, version, trained.targets)
    registry.set_alias(session, version, "candidate", "trained")
    decision = decide_promotion(session, version, registry_dir, trained)
    return {"version": version_out(session, version), **decision}


def decide_promotion(session: Session, candidate: ModelVersion, registry_dir: Path, trained: Trained) -> dict[str, Any]:
    """Promote ``candidate`` when there is no production yet, when production's artifact is gone or
    altered (it can serve nobody), or when the candidate :func:`beats` it on the same held-out
    gold: the gold items neither version learned from (:func:`compare_on_gold`). With no such
    item the candidate stays candidate and the comparison says why."""
    production = _production(session, candidate.project_id)
    models = _Models(registry_dir)
    models.keep(candidate, trained.model, trained.targets)
    detail: dict[str, Any] = {"candidate": candidate.version,
                              "production": None if production is None else production.version}  # fmt: skip
    try:
        detail |= compare_on_gold(models, candidate, production, trained.gold_items, trained.gold, trained.metrics)
    except ArtifactError as error:  # production's: the candidate's was verified as it was registered
        detail |= {"candidate_score": _named(_score(trained.metrics)), "production_score": None,
                   "gold_items": len(trained.gold), "production_error": error.detail}  # fmt: skip
    mine, theirs = detail.get("candidate_score"), detail.get("production_score")
    better = mine is not None and theirs is not None and beats(mine, theirs)
    promoted = production is None or "production_error" in detail or better
    if NO_SHARED_GOLD in detail:
        detail[NO_SHARED_GOLD] += (
            f"; it is not promoted automatically: import gold items neither learned from, or promote it by hand "
            f"(crowdloop models promote {candidate.project_id} {candidate.version} --reason ...)"
        )
    if promoted:
        why = "first" if production is None else "production unusable" if "production_error" in detail else (
            "beats production on gold")  # fmt: skip
        detail |= new_fields(models, candidate, production)
        registry.set_alias(session, candidate, "production", why)
    registry.record_event(session, candidate.project_id, candidate.id, "promoted" if promoted else "rejected", detail)
    return {"promoted": promoted, "comparison": detail}


NO_SHARED_GOLD = "no_shared_gold"
"""The comparison's key saying why no version was scored: no gold item is held out from both."""


class _Models:
    """The versions one decision reads, each loaded (its digest verified) at most once."""

    def __init__(self, registry_dir: Path) -> None:
        self.registry_dir = registry_dir
        self._models: dict[int, TrainedModel] = {}
        self._learned: dict[int, set[int] | None] = {}

    def keep(self, version: ModelVersion, model: TrainedModel | None, targets: pd.DataFrame | None) -> None:
        """What the caller already holds of ``version`` (a version just trained)."""
        if model is not None:
            self._models[version.id] = model
        if targets is not None:
            self._learned[version.id] = {int(item) for item in targets.index}

    def model(self, version: ModelVersion) -> TrainedModel:
        if version.id not in self._models:
            self._models[version.id] = TrainedModel.load(registry.artifact_dir(self.registry_dir, version))
        return self._models[version.id]

    def learned(self, version: ModelVersion) -> set[int] | None:
        """The items the version learned from (``None``: not on record)."""
        if version.id not in self._learned:
            self._learned[version.id] = registry.training_items(self.registry_dir, version)
        return self._learned[version.id]


def compare_on_gold(
    models: _Models,
    candidate: ModelVersion,
    production: ModelVersion | None,
    gold_items: pd.DataFrame,
    gold: pd.Series,
    candidate_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Both versions' accuracy and macro-F1 on the same gold: the items neither learned from.

    A version is never judged on items it learned from: gold items that were regular items (and
    labeled) when a version was trained, made gold since, would flatter it. ``gold_items`` says
    how many items both were scored on; ``gold_learned`` (version → count) how many were left out
    because a version learned from them; ``training_not_on_record`` lists versions whose training
    items are not kept (registered before they were, or trained outside the service), taken as
    having learned from none of the gold. With no item left, neither is scored and
    :data:`NO_SHARED_GOLD` says why. ``candidate_metrics``: the candidate's scores on all of
    ``gold``, used when it is also what the two share (no need to score it again). Raises
    :class:`ArtifactError` when production's artifact is unusable.
    """
    versions = [candidate] if production is None else [candidate, production]
    keep = pd.Series(True, index=gold.index)
    learned_gold: dict[str, int] = {}
    unknown: list[int] = []
    for version in versions:
        learned = models.learned(version)
        if learned is None:
            unknown.append(version.version)
            continue
        hit = gold.index.isin(list(learned))
        if hit.any():
            learned_gold[str(version.version)] = int(hit.sum())
        keep &= ~hit
    shared = gold[keep.to_numpy()]
    out: dict[str, Any] = {"gold_items": len(shared)}
    if learned_gold:
        out["gold_learned"] = learned_gold
    if unknown:
        out["training_not_on_record"] = unknown
    if production is not None:
        models.model(production)  # an unusable production raises before anything is scored
    if shared.empty:
        whom = "both versions" if production is not None else f"version {candidate.version}"
        learned_words = ", ".join(f"version {v} learned from {n}" for v, n in learned_gold.items())
        why = f"no gold item is held out from {whom}: of the {len(gold)} gold items, {learned_words}"
        out |= {"candidate_score": None, "production_score": None, NO_SHARED_GOLD: why}
        return out
    items = gold_items[gold_items[ID_COLUMN].isin(shared.index)]
    if candidate_metrics is None or len(shared) < len(gold):
        candidate_metrics = _rescore(models, candidate, items, shared)
    out["candidate_score"] = _named(_score(candidate_metrics))
    theirs = None if production is None else _rescore(models, production, items, shared)
    out["production_score"] = None if theirs is None else _named(_score(theirs))
    return out


def new_fields(models: _Models, new: ModelVersion, old: ModelVersion | None) -> dict[str, Any]:
    """``new_fields`` and a ``warning`` when ``new`` reads item fields ``old`` did not (else nothing).

    The edge predicts an item that lacks a field as if the field were empty (as training and
    scoring read an item without it), so clients that do not send the new field go on being
    served, on less than the model learned from.
    """
    if old is None:
        return {}
    try:
        theirs = set(models.model(old).featurizer.spec.fields)
    except ArtifactError:
        return {}
    added = [name for name in models.model(new).featurizer.spec.fields if name not in theirs]
    if not added:
        return {}
    names = ", ".join(repr(name) for name in added)
    it, were = ("it", "it were") if len(added) == 1 else ("them", "they were")
    warning = (
        f"version {new.version} reads {names}, which version {old.version} did not; edge clients that do not "
        f"send {it} get predictions as if {were} empty"
    )
    return {"new_fields": added, "warning": warning}


def _production(session: Session, project_id: int) -> ModelVersion | None:
    try:
        return registry.resolve_version(session, project_id, "production")
    except NotFoundError:
        return None


def _rescore(models: _Models, version: ModelVersion, gold_items: pd.DataFrame, gold: pd.Series) -> dict[str, Any]:
    """A version's scores on the given gold items (ones it did not learn from: the caller's choice)."""
    model = models.model(version)
    return evaluate(model, with_fields(gold_items, model.featurizer.spec), gold)


def _score(metrics: dict[str, Any]) -> tuple[float, float]:
    return float(metrics.get("accuracy", 0.0)), float(metrics.get("macro_f1", 0.0))


def _named(score: tuple[float, float] | None) -> dict[str, float] | None:
    return None if score is None else {"accuracy": score[0], "macro_f1": score[1]}


def promote(
    session: Session, actor: User, project_id: int, ref: str, reason: str, registry_dir: Path
) -> dict[str, Any]:
    """Point ``production`` at a version by hand: the owner's decision, kept with its reason and both
    versions' scores on today's gold that neither learned from, so a step down is on record. A version
    whose artifact is gone or altered is refused (devices could not load it); the version already in
    production is left as it is (``changed`` false, no event). It goes through even when no gold
    item is held out from both (the comparison says so), and warns when the version reads fields
    production did not."""
    project = get_owned_project(session, actor, project_id, lock=True)
    version = registry.resolve_version(session, project_id, ref)
    models = _Models(registry_dir)
    models.model(version)  # verified, or refused
    current = _production(session, project_id)
    if current is not None and current.id == version.id:
        return {**version_out(session, version), "changed": False, "comparison": None}
    detail = {"candidate": version.version, "manual": True, "reason": reason, "by": actor.id,
              "production": None if current is None else current.version}  # fmt: skip
    detail |= _scores_on_gold(session, project, models, version, current)
    detail |= new_fields(models, version, current)
    registry.set_alias(session, version, "production", reason)
    registry.record_event(session, project_id, version.id, "promoted", detail)
    return {**version_out(session, version), "changed": True, "comparison": detail}


def _scores_on_gold(
    session: Session, project: Any, models: _Models, version: ModelVersion, current: ModelVersion | None
) -> dict[str, Any]:
    """Both versions' scores on the project's gold today that neither learned from (an unusable one: its error)."""
    try:
        gold_items, gold = gold_set(session, project.id, list(project.labels))
    except EmptyInputError as error:
        return {"scores": error.detail}
    try:
        return compare_on_gold(models, version, current, gold_items, gold)
    except ArtifactError as error:  # the current production's: the version's own was verified
        out = compare_on_gold(models, version, None, gold_items, gold)
        return {**out, "production_error": error.detail}


def list_models(session: Session, actor: User, project_id: int) -> list[dict[str, Any]]:
    get_owned_project(session, actor, project_id)
    return [version_out(session, v) for v in registry.list_versions(session, project_id)]


def model_events(
    session: Session, actor: User, project_id: int, limit: int = 200, before: int | None = None
) -> list[dict[str, Any]]:
    """The latest ``limit`` events, oldest first; ``before`` (an event id) pages back further."""
    get_owned_project(session, actor, project_id)
    return [
        {"id": e.id, "version_id": e.version_id, "kind": e.kind, "detail": e.detail, "at": e.created_at.isoformat()}
        for e in registry.events(session, project_id, limit, before)
    ]


def readable_version(session: Session, actor: User, project_id: int, ref: str) -> ModelVersion:
    """A version the caller may read: owners and admins any; a device only production or candidate
    of a project open to it; workers none."""
    if actor.role == "worker":
        raise PermissionDeniedError("workers do not read models.")
    if actor.role != "device":
        get_owned_project(session, actor, project_id)
        return registry.resolve_version(session, project_id, ref)
    get_project(session, actor, project_id)
    version = registry.resolve_version(session, project_id, ref)
    if version.version not in registry.aliases(session, project_id).values():
        raise PermissionDeniedError("a device reads only the production or candidate model.")
    return version


def get_model(session: Session, actor: User, project_id: int, ref: str) -> dict[str, Any]:
    return version_out(session, readable_version(session, actor, project_id, ref))


def model_artifact(
    session: Session, actor: User, project_id: int, ref: str, registry_dir: Path
) -> tuple[Path, dict[str, Any]]:
    """The verified artifact folder of a readable version, and the version's metadata."""
    version = readable_version(session, actor, project_id, ref)
    return registry.artifact_dir(registry_dir, version), version_out(session, version)


def version_out(session: Session, version: ModelVersion) -> dict[str, Any]:
    """A version as the API shows it: number, family, digest, metrics, lineage and its aliases."""
    names = [
        name for name, number in registry.aliases(session, version.project_id).items() if number == version.version
    ]
    return {
        "id": version.id,
        "project_id": version.project_id,
        "version": version.version,
        "family": version.family,
        "params": version.params,
        "metrics": version.metrics,
        "lineage": version.lineage,
        "digest": version.artifact_digest,
        "created_by": version.created_by,
        "created_at": version.created_at.isoformat(),
        "aliases": sorted(names),
    }
