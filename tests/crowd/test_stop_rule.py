"""Dynamic overlap on the platform: a refit settles items again, and holds back a worker the
crowd model rates below the crowd (crowdloop.crowd.stop_rule), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from crowdloop.crowd.aggregation import run_aggregation
from crowdloop.crowd.answers import submit_answer
from crowdloop.crowd.assignment import next_task, skip_task
from crowdloop.crowd.items import import_items
from crowdloop.crowd.projects import update_project
from crowdloop.crowd.schemas import ProjectUpdate, SubmitIn, TaskOut
from crowdloop.crowd.undo import undo_answer
from crowdloop.crowd.webhooks import register_webhook
from crowdloop.storage.db import make_engine, session_factory, unit_of_work
from crowdloop.storage.migrate import upgrade
from crowdloop.storage.models import Assignment, Item, Project, ProjectWorker, User, WebhookDelivery
from support import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def factory(request: pytest.FixtureRequest, tmp_path) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'crowdloop.db'}", pool_size=2)
        upgrade(engine)
        yield session_factory(engine)
        engine.dispose()
        return
    with postgres_database() as url:
        engine = make_engine(url, pool_size=2)
        upgrade(engine)
        yield session_factory(engine)
        engine.dispose()


def _truth(text: str) -> str:
    return "pos" if int(text.split()[-1]) % 2 == 0 else "neg"


def _item_of(session: Session, task: TaskOut) -> int:
    """The item behind a worker's task: the task does not name it (workers never see item ids), its assignment does."""
    assignment = session.get(Assignment, task.assignment_id)
    assert assignment is not None
    return assignment.item_id


def _answer_all(factory: sessionmaker[Session], worker_id: int, project_id: int, answer) -> int:
    """The worker takes tasks until none is left, answering each with ``answer(item text)``."""
    given = 0
    while True:
        with unit_of_work(factory) as session:
            worker = session.get(User, worker_id)
            task = next_task(session, worker, project_id)
            if task is None:
                return given
            submit_answer(session, worker, task.assignment_id, SubmitIn(label=answer(task.data["text"])))
            given += 1


def _active_project(
    factory: sessionmaker[Session],
    workers: str | tuple[str, ...],
    texts: list[str],
    events: list[str] | None = None,
    **settings: Any,
) -> tuple[int, dict[str, int]]:
    """An owner, the named workers and an active neg/pos project with ``texts`` as items (and a
    webhook for ``events``); the project's id and everyone's user id by name."""
    with unit_of_work(factory) as session:
        owner = User(name="owner", role="requester")
        people = {name: User(name=name, role="worker") for name in workers}
        session.add_all([owner, *people.values()])
        session.flush()
        project = Project(owner_id=owner.id, name="p", labels=["neg", "pos"], status="active", **settings)
        session.add(project)
        session.flush()
        import_items(session, owner, project.id, [{"data": {"text": text}} for text in texts])
        if events:
            register_webhook(session, project.id, "https://example.com/hook", events)
        return project.id, {"owner": owner.id, **{name: user.id for name, user in people.items()}}


def _calibrated_project(factory: sessionmaker[Session], rules: dict | None = None) -> tuple[int, dict[str, int]]:
    """Three truthful workers and one who answers "pos" to everything, on the same 30 items
    (a target nobody reaches keeps them all open); then 10 new items, which the "pos" worker
    alone answers and, before any refit, closes: one answer at the prior 0.7 meets a target of 0.65."""
    project_id, ids = _active_project(factory, ("a", "b", "c", "spammer"), [f"first {n}" for n in range(30)],
                                      min_overlap=4, max_overlap=5, confidence_target=0.999, rules=rules or {})  # fmt: skip
    for name in ("a", "b", "c"):
        assert _answer_all(factory, ids[name], project_id, _truth) == 30
    assert _answer_all(factory, ids["spammer"], project_id, lambda text: "pos") == 30
    with unit_of_work(factory) as session:
        owner = session.get(User, ids["owner"])
        update_project(session, owner, project_id, ProjectUpdate(min_overlap=1, confidence_target=0.65))
        import_items(session, owner, project_id, [{"data": {"text": f"later {n}"}} for n in range(10)])
    assert _answer_all(factory, ids["spammer"], project_id, lambda text: "pos") == 10
    return project_id, ids


def _items(session: Session, project_id: int, prefix: str) -> list[Item]:
    found = session.scalars(select(Item).where(Item.project_id == project_id)).all()
    return [item for item in found if item.data["text"].startswith(prefix)]


def test_a_refit_reopens_items_closed_on_an_unreliable_word_and_closes_settled_ones(factory):
    project_id, ids = _calibrated_project(factory)
    with unit_of_work(factory) as session:
        later = _items(session, project_id, "later")
        assert all(item.done and item.confidence == pytest.approx(0.7) for item in later)
        assert not any(item.done for item in _items(session, project_id, "first"))  # target 0.999 until now
        run_aggregation(session, session.get(Project, project_id))
    with unit_of_work(factory) as session:
        later = _items(session, project_id, "later")
        first = _items(session, project_id, "first")
        # the spammer's "pos" now says nothing: their items go back to the crowd
        assert not any(item.done for item in later)
        assert all(item.confidence < 0.65 for item in later)
        # three agreeing truthful workers now count for more than the prior 0.7 each
        assert all(item.done and item.confidence > 0.95 for item in first)
        spammer = session.get(ProjectWorker, (project_id, ids["spammer"]))
        truthful = session.get(ProjectWorker, (project_id, ids["a"]))
        assert spammer.confusion[0][1] > 0.8  # on a "neg" item they answer "pos"
        assert truthful.confusion[0][0] > 0.9 and truthful.confusion[1][1] > 0.9
        assert not spammer.held_back  # no hold-back rule on this project
        # the aggregator's skill, stored for every worker: the worker table's reliability
        assert truthful.reliability > 0.9 and spammer.reliability < 0.6
        project = session.get(Project, project_id)
        assert set(project.label_prior) == {"neg", "pos"}
        assert len(project.crowd_model["confusion"]) == 2
        a = session.get(User, ids["a"])
        task = next_task(session, a, project_id)
        assert task is not None and task.data["text"].startswith("later")  # reopened items are offered again


def test_a_refit_announces_the_items_it_closes_and_those_it_reopens(factory):
    project_id, _ = _calibrated_project(factory)
    with unit_of_work(factory) as session:
        register_webhook(session, project_id, "https://example.com/hook", ["item.labeled", "item.reopened"])
    with unit_of_work(factory) as session:
        run_aggregation(session, session.get(Project, project_id))
    with unit_of_work(factory) as session:
        sent = session.scalars(select(WebhookDelivery).where(WebhookDelivery.event == "item.labeled")).all()
        first = {item.id: item for item in _items(session, project_id, "first")}
        assert sorted(delivery.payload["item_id"] for delivery in sent) == sorted(first)
        for delivery in sent:
            assert delivery.payload["label"] == _truth(first[delivery.payload["item_id"]].data["text"])
        # the spammer's "pos" closed the later items; the refit withdrew those labels, and says so
        reopened = session.scalars(select(WebhookDelivery).where(WebhookDelivery.event == "item.reopened")).all()
        later = _items(session, project_id, "later")
        assert sorted(d.payload["item_id"] for d in reopened) == sorted(item.id for item in later)
        assert all(d.payload["answers"] == 1 for d in reopened)


def test_an_undo_that_reopens_an_item_announces_it(factory):
    project_id, ids = _active_project(factory, ("w",), ["one 0", "one 1"], ["item.labeled", "item.reopened"],
                                      min_overlap=1, max_overlap=3, confidence_target=0.65)  # fmt: skip
    worker_id = ids["w"]
    with unit_of_work(factory) as session:
        task = next_task(session, session.get(User, worker_id), project_id)
        item_id = _item_of(session, task)
        submit_answer(session, session.get(User, worker_id), task.assignment_id, SubmitIn(label="pos"))
    with unit_of_work(factory) as session:
        assert session.get(Item, item_id).done  # one answer at the prior 0.7 meets 0.65
        undo_answer(session, session.get(User, worker_id), task.assignment_id)
    with unit_of_work(factory) as session:
        events = session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
        assert [(d.event, d.payload["item_id"]) for d in events] == [
            ("item.labeled", item_id), ("item.reopened", item_id)]  # fmt: skip
        assert events[1].payload["answers"] == 0 and not session.get(Item, item_id).done


def test_a_refit_that_closes_the_last_items_finishes_the_project(factory):
    """It used to leave the project active with nothing to hand out, and never said so."""
    project_id, ids = _active_project(factory, ("a", "b", "c"), [f"first {n}" for n in range(10)], ["project.finished"],
                                      min_overlap=3, max_overlap=5, confidence_target=0.99)  # fmt: skip
    for worker_id in (
        ids["a"],
        ids["b"],
        ids["c"],
    ):  # three agreeing answers at the prior 0.7 each: 0.927, short of 0.99
        assert _answer_all(factory, worker_id, project_id, _truth) == 10
    with unit_of_work(factory) as session:
        assert session.get(Project, project_id).status == "active"
        run_aggregation(session, session.get(Project, project_id))
    with unit_of_work(factory) as session:
        assert all(item.done for item in _items(session, project_id, "first"))
        assert session.get(Project, project_id).status == "finished"
        sent = session.scalars(select(WebhookDelivery).where(WebhookDelivery.event == "project.finished")).all()
        assert [delivery.payload for delivery in sent] == [{"project_id": project_id}]


def test_a_held_back_worker_gets_only_items_no_one_else_can_take(factory):
    project_id, ids = _calibrated_project(factory, rules={"hold_back_quantile": 0.5})
    with unit_of_work(factory) as session:
        run_aggregation(session, session.get(Project, project_id))
    with unit_of_work(factory) as session:
        standing = {name: session.get(ProjectWorker, (project_id, ids[name])) for name in ("a", "b", "c", "spammer")}
        assert standing["spammer"].held_back
        assert not any(standing[name].held_back for name in ("a", "b", "c"))
        bar = session.get(Project, project_id).crowd_model["skill_bar"]
        assert 0.7 < bar < 1.0
    with unit_of_work(factory) as session:
        owner = session.get(User, ids["owner"])
        import_items(session, owner, project_id, [{"data": {"text": f"extra {n}"}} for n in range(3)])
    with unit_of_work(factory) as session:
        spammer = session.get(User, ids["spammer"])
        assert next_task(session, spammer, project_id) is None  # the new items are within others' reach
    orphan = None
    for name in ("a", "b", "c"):  # every trusted worker passes on the item "a" is offered first
        with unit_of_work(factory) as session:
            worker = session.get(User, ids[name])
            task = next_task(session, worker, project_id)
            while orphan is not None and _item_of(session, task) != orphan:
                skip_task(session, worker, task.assignment_id)
                task = next_task(session, worker, project_id)
            skip_task(session, worker, task.assignment_id)
            orphan = _item_of(session, task)
    with unit_of_work(factory) as session:
        spammer = session.get(User, ids["spammer"])
        task = next_task(session, spammer, project_id)
        assert task is not None and _item_of(session, task) == orphan
        submit_answer(session, spammer, task.assignment_id, SubmitIn(label="pos"))
    with unit_of_work(factory) as session:
        assert next_task(session, session.get(User, ids["spammer"]), project_id) is None
