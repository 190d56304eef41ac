"""Projects: creation, visibility, status and the progress summary.

Visibility is enforced here, once: admins see everything, requesters their own
projects, workers the published (not draft) projects open to them. A project the caller may not
see is reported as not found, so its existence does not leak.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Exists, exists, func, or_, select
from sqlalchemy.orm import Session

from crowdloop.crowd.auth import require_role
from crowdloop.crowd.schemas import (
    ProjectCreate,
    ProjectOut,
    ProjectUpdate,
    from_micros,
    to_micros,
)
from crowdloop.errors import ConflictError, InvalidInputError, NotFoundError
from crowdloop.quality import CATEGORICAL_METHODS, get_aggregator
from crowdloop.storage.models import Answer, Assignment, Item, ItemLabel, Project, ProjectAccess, User

TRANSITIONS = {
    "draft": {"active", "finished"},
    "active": {"paused", "finished"},
    "paused": {"active", "finished"},
    "finished": {"active"},
}


def create_project(session: Session, actor: User, spec: ProjectCreate, default_method: str = "default") -> Project:
    """A draft project of ``actor``'s; one that names no aggregation method gets ``default_method``
    (the server's ``CROWDLOOP_DEFAULT_METHOD``)."""
    require_role(actor, "admin", "requester")
    values = spec.model_dump(exclude={"price", "budget", "rules"})
    values["aggregation_method"] = registry_method(spec.aggregation_method or default_method)
    project = Project(
        owner_id=actor.id,
        price_micros=to_micros(spec.price),
        budget_micros=to_micros(spec.budget),
        rules=spec.rules.model_dump(),
        **values,
    )
    session.add(project)
    session.flush()
    return project


def registry_method(method: str) -> str:
    """The registry name of a categorical aggregation method given by any name ``get_aggregator``
    takes (``ds``, ``DawidSkene``...): stored so, the web settings form shows the method the project
    uses, and saving the form does not replace an alias it has no option for."""
    kind = type(get_aggregator(method))
    for name, cls in CATEGORICAL_METHODS.items():
        if cls is kind:
            return name
    raise InvalidInputError(f"{method!r} aggregates numeric answers; projects need a categorical method.")


def visible_projects(actor: User) -> Any:
    """A select of the projects ``actor`` may see."""
    query = select(Project)
    if actor.role == "requester":
        return query.where(Project.owner_id == actor.id)
    if actor.role == "worker":
        return query.where(Project.status != "draft", admitted(Project.id, actor.id))
    if actor.role == "device":  # belongs to no requester: only the projects whose owner granted it
        return query.where(Project.status != "draft", access_granted(Project.id, actor.id))
    return query


def access_granted(project_id: Any, worker_id: Any) -> Exists:
    """SQL: the worker (or device) was granted access to the project (either side a column or a value)."""
    return exists().where(ProjectAccess.project_id == project_id, ProjectAccess.worker_id == worker_id)


def admitted(project_id: Any, worker_id: Any) -> Any:
    """SQL: the project (a query over ``Project``) is open to the worker: open to all, or granted."""
    return or_(Project.open_to_all, access_granted(project_id, worker_id))


def open_leases(session: Session, project_id: int) -> int:
    """Leases handed out on the project and not answered, skipped or expired yet: each will cost the price."""
    query = select(func.count()).where(Assignment.project_id == project_id, Assignment.status == "leased")
    return int(session.scalar(query) or 0)


def get_project(session: Session, actor: User, project_id: int) -> Project:
    project: Project | None = session.scalar(visible_projects(actor).where(Project.id == project_id))
    if project is None:
        raise NotFoundError(f"no project {project_id}.")
    return project


def get_owned_project(session: Session, actor: User, project_id: int, *, lock: bool = False) -> Project:
    """A project the actor may manage (its requester, or an admin)."""
    require_role(actor, "admin", "requester")
    query = visible_projects(actor).where(Project.id == project_id)
    project: Project | None = session.scalar(query.with_for_update(key_share=True) if lock else query)
    if project is None:
        raise NotFoundError(f"no project {project_id}.")
    return project


def list_projects(session: Session, actor: User) -> list[Project]:
    return list(session.scalars(visible_projects(actor).order_by(Project.id)))


def update_project(session: Session, actor: User, project_id: int, changes: ProjectUpdate) -> Project:
    project = get_owned_project(session, actor, project_id, lock=True)
    values = changes.model_dump(exclude_unset=True)
    if "status" in values:
        _check_transition(project.status, values.pop("status"))
        project.status = changes.status or project.status
        project.finished_by = "owner" if project.status == "finished" else None
    if "aggregation_method" in values:
        values["aggregation_method"] = registry_method(values["aggregation_method"])
    money = {"price", "budget"} & set(values)
    for name in ("price", "budget"):
        if name in values:
            setattr(project, f"{name}_micros", to_micros(values.pop(name)))
    if money:
        _check_open_leases_fit(session, project)
    if "rules" in values:
        project.rules = {**project.rules, **values.pop("rules")}
    closing = project.open_to_all and values.get("open_to_all") is False
    for name, value in values.items():
        setattr(project, name, value)
    if project.max_overlap < project.min_overlap:
        raise InvalidInputError("max_overlap must be at least min_overlap.")
    if closing:
        from crowdloop.crowd.assignment import revoke_leases  # the assignment engine imports this module

        revoke_leases(session, project.id)
    return project


def _check_open_leases_fit(session: Session, project: Project) -> None:
    """Leases already handed out are paid at the price of the moment they are answered: a higher
    price or a lower budget that they would push over the budget is refused (the change is not
    saved), since the budget is the one promise a requester relies on."""
    if project.budget_micros is None:
        return
    leased = open_leases(session, project.id)
    total = project.spent_micros + leased * project.price_micros
    if total > project.budget_micros:
        raise ConflictError(
            f"the {leased} open lease(s) would take the spend to {from_micros(total):.2f}, over the budget of "
            f"{from_micros(project.budget_micros):.2f}; nothing was changed. Raise the budget, or wait until "
            "they are answered or expire."
        )


def _check_transition(current: str, wanted: str) -> None:
    if wanted != current and wanted not in TRANSITIONS[current]:
        raise ConflictError(f"a {current} project cannot become {wanted}.")


def grant_access(session: Session, actor: User, project_id: int, worker_id: int) -> None:
    """Let a worker into a project that is not open to all, or a device read its deployed models and
    report back from the edge (a device sees no project it was not granted, open to all or not)."""
    get_owned_project(session, actor, project_id)
    worker = session.get(User, worker_id)
    if worker is None or worker.role not in ("worker", "device"):
        raise NotFoundError(f"no worker or device {worker_id}.")
    if session.get(ProjectAccess, (project_id, worker_id)) is None:
        session.add(ProjectAccess(project_id=project_id, worker_id=worker_id))


def project_out(project: Project, *, full: bool) -> ProjectOut:
    """The project as its requester (``full``) or a worker sees it."""
    base = {
        "id": project.id,
        "name": project.name,
        "task_type": project.task_type,
        "labels": project.labels,
        "instructions": project.instructions,
        "status": project.status,
        "price": from_micros(project.price_micros) or 0.0,
        "min_overlap": project.min_overlap,
        "max_overlap": project.max_overlap,
        "confidence_target": project.confidence_target,
        "gold_share": project.gold_share,
    }
    if full:
        base |= {
            "budget": from_micros(project.budget_micros),
            "spent": from_micros(project.spent_micros),
            "aggregation_method": project.aggregation_method,
            "rules": project.rules,
            "lease_seconds": project.lease_seconds,
            "open_to_all": project.open_to_all,
            "fields": project.fields,
        }
    return ProjectOut(**base)


def project_status(session: Session, actor: User, project_id: int) -> dict[str, Any]:
    """Progress, money and label counts of one project.

    An item the requester decided in review is done work, not a control item, though the decision
    made it gold: counted in ``items_done`` and ``items_reviewed``, not in ``gold_items``, so
    progress (``items_done`` of ``items - gold_items``) never goes back when items are decided.
    """
    project = get_owned_project(session, actor, project_id)
    reviewed = ItemLabel.method == "review"
    items = session.execute(
        select(
            func.count(),
            func.count().filter(or_(Item.done, reviewed)),
            func.count().filter(Item.is_gold),
            func.count().filter(reviewed),
        )
        .select_from(Item)
        .outerjoin(ItemLabel, ItemLabel.item_id == Item.id)
        .where(Item.project_id == project_id)
    ).one()
    answers = session.scalar(select(func.count()).where(Answer.project_id == project_id)) or 0
    labels = session.scalar(select(func.count()).where(ItemLabel.project_id == project_id)) or 0
    spent = from_micros(project.spent_micros) or 0.0
    return {
        "project_id": project.id,
        "status": project.status,
        "items": items[0],
        "gold_items": items[2] - items[3],
        "items_done": items[1],
        "items_reviewed": items[3],
        "answers": answers,
        "labels": labels,
        "spent": spent,
        "budget": from_micros(project.budget_micros),
        "cost_per_label": spent / labels if labels else None,
    }
