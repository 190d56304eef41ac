"""GET /metrics on a real `crowdloop serve`, on SQLite and PostgreSQL: the numbers are the database's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from metrics_scrape import Exposition, scrape
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from crowdloop.storage.db import make_engine
from crowdloop.storage.models import AggregationRun, Answer, Assignment, Item, ItemLabel, Project, utcnow

PROJECT_ROUTE = "/api/v1/projects/{project_id}"


@dataclass
class Crowd:
    """A project with answers, a label run and one open lease, and the tokens that made them."""

    admin: str
    owner: str
    worker: str
    project: int
    engine: Engine

    def count(self, query: Any) -> float:
        with self.engine.connect() as connection:
            return float(connection.scalar(query) or 0)


@pytest.fixture(scope="module")
def crowd(server: Any, admin_token: str) -> Iterator[Crowd]:
    owner_user, owner = server.user("owner", "requester")
    project = owner.create_project(name="metrics", labels=["no", "yes"], min_overlap=1, max_overlap=2, gold_share=0.2)
    rows: list[dict[str, Any]] = [{"data": {"text": f"sentence {i}"}} for i in range(8)]
    rows.append({"data": {"text": "control"}, "gold_label": "yes"})
    owner.import_items(project["id"], rows)
    owner.start(project["id"])
    workers = [server.user(f"worker{i}", "worker") for i in range(2)]
    for _, worker in workers:
        for _ in range(3):
            task = worker.next_task(project["id"])
            worker.submit(task["assignment_id"], "yes", seconds=3.0)
    assert workers[0][1].next_task(project["id"]) is not None  # left open: one lease
    owner.aggregate(project["id"])
    engine = make_engine(server.database_url, pool_size=2)
    yield Crowd(
        admin=admin_token, owner=str(owner_user["token"]), worker=str(workers[0][0]["token"]), project=project["id"], engine=engine,
    )  # fmt: skip
    engine.dispose()


def _route_count(scraped: Exposition, name: str, status: str = "200") -> float:
    return scraped.value(name, method="GET", route=PROJECT_ROUTE, status=status)


def test_state_metrics_are_the_databases_numbers(server, crowd):
    scraped = scrape(server.url, crowd.admin)
    pid, project = str(crowd.project), crowd.project
    answers = crowd.count(select(func.count()).select_from(Answer).where(Answer.project_id == project))
    assert answers == 6 and scraped.value("crowdloop_answers_total", project=pid) == answers
    regular = (Item.project_id == project, Item.is_gold.is_(False))
    queued = crowd.count(select(func.count()).select_from(Item).where(*regular, Item.done.is_(False)))
    done = crowd.count(select(func.count()).select_from(Item).where(*regular, Item.done.is_(True)))
    assert queued + done == 8 and queued > 0
    assert scraped.value("crowdloop_items", project=pid, state="queued") == queued
    assert scraped.value("crowdloop_items", project=pid, state="done") == done
    assert scraped.value("crowdloop_items", project=pid, state="gold") == 1
    labels = crowd.count(select(func.count()).select_from(ItemLabel).where(ItemLabel.project_id == project))
    assert labels > 0 and scraped.value("crowdloop_labels", project=pid) == labels
    leases = crowd.count(
        select(func.count())
        .select_from(Assignment)
        .where(Assignment.project_id == project, Assignment.status == "leased", Assignment.expires_at > utcnow())
    )
    assert leases == 1 and scraped.value("crowdloop_open_leases", project=pid) == 1
    runs = crowd.count(
        select(func.count()).where(AggregationRun.project_id == project, AggregationRun.status == "done")
    )
    assert runs >= 1 and scraped.value("crowdloop_aggregation_runs_total", project=pid, status="done") == runs
    active = crowd.count(select(func.count()).select_from(Project).where(Project.status == "active"))
    assert scraped.value("crowdloop_projects", status="active") == active


def test_a_finished_projects_open_items_are_not_queue_depth(server, crowd):
    """They stayed in ``state="queued"`` after the owner finished the project, though nobody gets them."""
    _, owner = server.user("finisher", "requester")
    project = owner.create_project(name="finished early", labels=["a", "b"])["id"]
    owner.import_items(project, [{"data": {"text": f"left {i}"}} for i in range(3)])
    owner.start(project)
    assert scrape(server.url, crowd.admin).value("crowdloop_items", project=str(project), state="queued") == 3
    owner.update_project(project, status="finished")
    scraped = scrape(server.url, crowd.admin)
    assert scraped.value("crowdloop_items", project=str(project), state="closed") == 3
    assert ("state", "queued") not in {pair for labels in scraped.series("crowdloop_items") for pair in labels
                                       if ("project", str(project)) in labels}  # fmt: skip


def test_superseded_and_failed_runs_are_finished_runs(server, crowd):
    """A superseded run counted as in progress for ever, and a failed one was never recorded."""
    with crowd.engine.begin() as connection:
        method = connection.scalar(select(Project.aggregation_method).where(Project.id == crowd.project))
        for status in ("superseded", "failed"):
            connection.execute(insert(AggregationRun).values(project_id=crowd.project, method=method, status=status,
                                                             finished_at=utcnow()))  # fmt: skip
    scraped = scrape(server.url, crowd.admin)
    pid = str(crowd.project)
    assert scraped.value("crowdloop_aggregation_runs_total", project=pid, status="superseded") == 1
    assert scraped.value("crowdloop_aggregation_runs_total", project=pid, status="failed") == 1
    assert scraped.value("crowdloop_aggregation_runs_in_progress", project=pid) == 0


def test_request_counts_and_latency_histogram_grow(server, crowd):
    before = scrape(server.url, crowd.admin)
    headers = {"Authorization": f"Bearer {crowd.owner}"}
    with httpx.Client(base_url=server.url, headers=headers) as http:
        for _ in range(3):
            assert http.get(f"/api/v1/projects/{crowd.project}").status_code == 200
        assert http.get("/api/v1/projects/987654321").status_code == 404
    after = scrape(server.url, crowd.admin)
    for name in ("crowdloop_http_requests_total", "crowdloop_http_request_duration_seconds_count"):
        assert _route_count(after, name) - _route_count(before, name) == 3, name
        assert _route_count(after, name, "404") - _route_count(before, name, "404") == 1, name
    bucket = {"method": "GET", "route": PROJECT_ROUTE, "status": "200", "le": "+Inf"}
    name = "crowdloop_http_request_duration_seconds_bucket"
    assert after.value(name, **bucket) - before.value(name, **bucket) == 3
    seconds = "crowdloop_http_request_duration_seconds_sum"
    assert _route_count(after, seconds) > _route_count(before, seconds)
    routes = {dict(labels)["route"] for labels in after.series("crowdloop_http_requests_total")}
    assert not any(str(crowd.project) in route.split("/") for route in routes), "concrete ids in route labels"
    # one process exposes what several do (test_multiprocess_metrics): no *_created series
    assert not [name for name in after.names if name.endswith("_created")]


@pytest.mark.parametrize("who", ["nobody", "wrong token", "worker", "owner"])
def test_only_admins_scrape(server, crowd, who):
    token = {"nobody": None, "wrong token": "cl_" + uuid.uuid4().hex, "worker": crowd.worker, "owner": crowd.owner}[who]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{server.url}/metrics", headers=headers)
    expected = (401, "AuthenticationError") if who in ("nobody", "wrong token") else (403, "PermissionDeniedError")
    assert (response.status_code, response.json()["error"]) == expected
    assert "crowdloop_answers_total" not in response.text
