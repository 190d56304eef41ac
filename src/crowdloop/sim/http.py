"""The HTTP driver: a simulated or replayed crowd works on a real crowdloop server through the SDK.

The server does what it does for people: it chooses the item (its assignment engine), stops
answers on an item (its own dynamic-overlap rule, configured from the policy's
:meth:`~crowdloop.sim.policies.Policy.project_spec`), applies its quality rules and pays.
The driver only plays the workers: each simulated worker is a real worker account that asks
for its next task and submits the crowd's answer. A replayed worker offered an item they
never answered in the recording skips it, which the platform remembers, so it is never
offered to them again. Labels at the end are the platform's own aggregation.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crowdloop.client import Client
from crowdloop.errors import ConflictError, InvalidParameterError, PermissionDeniedError
from crowdloop.sim.crowds import Crowd
from crowdloop.sim.driver import ProgressCallback, SimulationResult
from crowdloop.sim.policies import Policy

IMPORT_CHUNK = 1000


@dataclass
class _Session:
    """The requester, the project and one logged-in SDK client per simulated worker."""

    requester: Client
    project_id: int
    workers: list[Client]
    user_ids: dict[int, Hashable] = field(default_factory=dict)

    def close(self) -> None:
        for client in [self.requester, *self.workers]:
            client.close()


def run_over_http(
    url: str,
    admin_token: str,
    crowd: Crowd,
    policy: Policy,
    *,
    gold: pd.Series | None = None,
    budget: int | None = None,
    price: float = 0.0,
    random_state: int = 0,
    progress: ProgressCallback | None = None,
) -> SimulationResult:
    """Create a project for ``policy`` on the server at ``url``, let ``crowd`` work on it, read the labels.

    ``admin_token`` creates the requester and one worker account per crowd worker. ``gold``
    items become the project's gold (control) questions, asked at their share of the tasks.
    ``budget`` caps the answers submitted.

    The project is open to the simulated workers only, and finished when the run ends, however it
    ends: it was left active and open to all, at the price given (0 by default), and the server's
    real workers were handed its tasks.
    """
    if budget is not None and budget < 0:
        raise InvalidParameterError(f"budget must be a non-negative number of labels; got {budget}.")
    session = _open(url, admin_token, crowd, policy, gold, price)
    try:
        submitted = _work(session, crowd, budget, random_state, progress)
        return _collect(session, crowd, policy, gold, submitted)
    finally:
        try:
            session.requester.update_project(session.project_id, status="finished")
        finally:
            session.close()


def _open(url: str, admin_token: str, crowd: Crowd, policy: Policy, gold: pd.Series | None, price: float) -> _Session:
    tag = uuid.uuid4().hex[:8]
    with Client(url, admin_token) as admin:
        requester = Client(url, str(admin.create_user(f"sim-requester-{tag}", "requester")["token"]))
        accounts = [admin.create_user(f"sim-{tag}-{i}", "worker") for i in range(len(crowd.workers))]
    control = gold.index.intersection(pd.Index(crowd.tasks)) if gold is not None else pd.Index([])
    spec = policy.project_spec() | {"gold_share": round(min(len(control) / max(len(crowd.tasks), 1), 0.5), 3)}
    labels = [str(label) for label in crowd.labels]
    project = requester.create_project(name=f"simulation {policy.name} {tag}", labels=labels, price=price,
                                       open_to_all=False, **spec)  # fmt: skip
    for account in accounts:
        requester.grant_access(project["id"], int(account["id"]))
    rows = [_item_row(position, task, gold if task in control else None) for position, task in enumerate(crowd.tasks)]
    for start in range(0, len(rows), IMPORT_CHUNK):
        requester.import_items(project["id"], rows[start : start + IMPORT_CHUNK])
    requester.start(project["id"])
    workers = [Client(url, str(account["token"])) for account in accounts]
    ids = {int(account["id"]): worker for account, worker in zip(accounts, crowd.workers, strict=True)}
    return _Session(requester, int(project["id"]), workers, ids)


def _item_row(position: int, task: Hashable, gold: pd.Series | None) -> dict[str, object]:
    """The item of the crowd's ``position``-th task. The server normalises text (NFC, whitespace), so
    the task's name comes back changed, and two names that normalise alike would be merged as one
    item: the item carries the task's position, which is how the driver finds its task again."""
    row: dict[str, object] = {"data": {"task": str(task), "position": position}, "external_id": str(task)}
    if gold is not None:
        row["gold_label"] = str(gold.get(task))
    return row


def _work(
    session: _Session, crowd: Crowd, budget: int | None, random_state: int, progress: ProgressCallback | None
) -> int:
    """Workers turn up at random (by the crowd's arrival weights) until none gets a task; submits made.

    A worker who got nothing may get work later (a refit reopens an item, or stops holding them
    back), so when nobody gets anything the requester aggregates, which refits the stop rule,
    and everybody comes back once more; the run ends when such a round buys nothing.
    """
    rng = np.random.default_rng(random_state + 1)
    weights = crowd.arrival_weights().astype(float)
    active = weights > 0
    tasks = crowd.tasks  # a copy per call: read once
    limit = budget if budget is not None else int(sum(len(crowd.tasks_of(w) or crowd.tasks) for w in crowd.workers))
    submitted = since_wake = 0
    while submitted < limit:
        if not active.any():
            if since_wake == 0:
                break
            session.requester.aggregate(session.project_id)
            active, since_wake = weights > 0, 0
            continue
        index = int(rng.choice(np.flatnonzero(active), p=weights[active] / weights[active].sum()))
        if not _one_visit(session.workers[index], session.project_id, crowd, crowd.workers[index], tasks):
            active[index] = False
            continue
        submitted += 1
        since_wake += 1
        if progress is not None:
            progress(submitted, limit)
    return submitted


def _one_visit(client: Client, project_id: int, crowd: Crowd, worker: Hashable, tasks: list[Hashable]) -> bool:
    """One visit of a worker: True if they answered an item, False if the platform has nothing more for them.

    An item the worker never saw in the recording is skipped (the platform won't offer it again)
    and they ask again in the same visit, so a visit buys one answer as in the in-process driver.
    Had a skip ended the visit, a worker who saw a tenth of the items would answer once in ten
    visits, and the prolific workers, often not the best, would get far more than their share.
    """
    can = crowd.tasks_of(worker)
    while True:
        try:
            task = client.next_task(project_id)
        except (ConflictError, PermissionDeniedError):  # banned, capped, too many skips
            return False
        if task is None:
            return False
        name = _task_of(tasks, task["data"])
        if can is None or name in can:
            break
        client.skip(task["assignment_id"])
    given = crowd.answer(worker, name)
    client.submit(task["assignment_id"], label=str(given.label), seconds=given.seconds)
    return True


def _collect(
    session: _Session, crowd: Crowd, policy: Policy, gold: pd.Series | None, submitted: int
) -> SimulationResult:
    requester, project_id = session.requester, session.project_id
    requester.aggregate(project_id)
    listed = crowd.tasks
    by_item = {int(item["id"]): _task_of(listed, item["data"]) for item in requester.iter_items(project_id)}
    by_label = {str(label): label for label in crowd.labels}
    raw = _read_jsonl(requester.export(project_id, "answers", "jsonl"))
    answers = pd.DataFrame({
        "task": [by_item[int(i)] for i in raw.get("item_id", [])],
        "worker": [session.user_ids.get(int(w)) for w in raw.get("worker_id", [])],
        "label": [by_label[str(v)] for v in raw.get("label", [])],
        "seconds": raw.get("seconds", pd.Series(dtype=float)).to_list() if len(raw) else [],
    })  # fmt: skip
    labels = _read_jsonl(requester.export(project_id, "labels", "jsonl"))
    index = pd.Index([by_item[int(i)] for i in labels.get("item_id", [])], name="task")
    values = pd.Series([by_label[str(v)] for v in labels.get("label", [])], index=index, name="label", dtype=object)
    confidence = pd.Series(labels.get("confidence", pd.Series(dtype=float)).to_numpy(), index=index)
    control = gold.index.intersection(pd.Index(crowd.tasks)) if gold is not None else pd.Index([])
    tasks = pd.Index(crowd.tasks, name="task")
    spent = float(requester.status(project_id).get("spent") or 0.0)
    extra = {"server_project": project_id, "server_answers": int(submitted), "spent": spent}
    return SimulationResult(policy.name, answers, values, confidence, tasks, control, extra)


def _task_of(tasks: list[Hashable], data: dict[str, Any]) -> Hashable:
    """The crowd's task an item stands for, by the position it carries (:func:`_item_row`)."""
    return tasks[int(data["position"])]


def _read_jsonl(data: bytes) -> pd.DataFrame:
    if not data.strip():
        return pd.DataFrame()
    return pd.read_json(io.BytesIO(data), lines=True, dtype=False)


__all__ = ["run_over_http"]
