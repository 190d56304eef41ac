"""deploy/grafana/crowdloop.json uses only metrics, and labels, that a real server exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from metrics_scrape import Exposition, scrape

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "crowdloop.json"
METRIC = re.compile(r"\b(crowdloop_[a-z0-9_]+)\b")
SELECTOR_LABEL = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
PANELS_THE_ISSUE_ASKS_FOR = (
    "answers per second",
    "latency p50",
    "latency p99",
    "queue depth",
    "labels",
    "aggregation runs",
)


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    exprs += [var["definition"] for var in dashboard["templating"]["list"] if var["type"] == "query"]
    return exprs


def _labels_used(expr: str) -> set[str]:
    inside = " ".join(re.findall(r"\{([^}]*)\}", expr))
    grouped = {name.strip() for group in GROUPING.findall(expr) for name in group.split(",")}
    return set(SELECTOR_LABEL.findall(inside)) | (grouped - {""})


def test_the_dashboard_is_well_formed():
    dashboard = _dashboard()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert all(target["expr"].count("(") == target["expr"].count(")") for target in panel["targets"])
    titles = " | ".join(panel["title"].lower() for panel in dashboard["panels"])
    for wanted in PANELS_THE_ISSUE_ASKS_FOR:
        assert wanted in titles, wanted


@pytest.fixture(scope="module")
def exposition(server: Any, admin_token: str) -> Exposition:
    """A scrape after some work, so every labelled series the dashboard reads has samples."""
    _, owner = server.user("dash-owner", "requester")
    project = owner.create_project(name="dashboard", labels=["a", "b"], max_overlap=1)
    owner.import_items(project["id"], [{"data": {"text": f"item {i}"}} for i in range(3)])
    owner.start(project["id"])
    _, worker = server.user("dash-worker", "worker")
    task = worker.next_task(project["id"])
    worker.submit(task["assignment_id"], "a")
    assert worker.next_task(project["id"]) is not None  # an open lease
    owner.aggregate(project["id"])
    return scrape(server.url, admin_token)


def test_every_metric_the_dashboard_reads_is_exposed(exposition):
    used = {name for expr in _expressions(_dashboard()) for name in METRIC.findall(expr)}
    assert len(used) >= 7
    assert sorted(used - exposition.names) == []


def test_every_label_the_dashboard_reads_exists_on_its_metrics(exposition):
    for expr in _expressions(_dashboard()):
        metrics = set(METRIC.findall(expr))
        available = {"le"} | {
            key for (name, labels) in exposition.samples for key, _ in labels if name.startswith(tuple(metrics))
        }
        assert _labels_used(expr) <= available, (expr, sorted(_labels_used(expr) - available))


STATE_METRICS = ("crowdloop_answers_total", "crowdloop_items", "crowdloop_labels", "crowdloop_open_leases",
                 "crowdloop_aggregation_runs")  # fmt: skip
"""Read from the database at scrape time: every instance of a several-instance deployment reports them."""


def test_state_panels_count_the_database_once_whatever_the_instances():
    """Summed over two instances scraped as two targets, the panels showed twice the labels and
    answers the database held; the state metrics take the max over instances."""
    panels = _dashboard()["panels"]
    for expr in [target["expr"] for panel in panels for target in panel["targets"]]:
        if not any(name in expr for name in STATE_METRICS):
            continue
        innermost = re.search(r"(\w+) by \(([^)]*)\) \((?:rate|increase)?\(?crowdloop_", expr)
        assert innermost is not None and innermost.group(1) == "max", expr
