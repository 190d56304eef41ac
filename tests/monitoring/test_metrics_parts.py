"""The parts of /metrics that need no running server: sources, the metrics directory, the token check."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator

import pytest
from metrics_scrape import parse
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from pydantic import SecretStr

from crowdloop.api import create_app
from crowdloop.config import Settings
from crowdloop.monitoring.labels import ProjectLabels
from crowdloop.monitoring.metrics import Scrape, is_metrics_token, prepare_metrics_dir, remove_metrics_dir

with warnings.catch_warnings():  # starlette's note that its test client will move off httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "cl_parts_admin_token"


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'parts.db'}", webhook_dispatcher=False, admin_token=TOKEN)
    with TestClient(create_app(settings)) as http:
        http.headers["Authorization"] = f"Bearer {TOKEN}"
        yield http


def test_a_feature_adds_its_metrics_with_one_call(client):
    """How the model registry will add per-version gauges: a function of the scrape, registered once."""

    def versions(scrape: Scrape) -> Iterator[Metric]:
        family = GaugeMetricFamily("crowdloop_model_versions", "Registered model versions.", labels=["project"])
        for project in sorted(scrape.projects.named):
            family.add_metric([scrape.projects.label(project)], 2.0)
        yield family

    project = client.post("/api/v1/projects", json={"name": "p", "labels": ["a", "b"]}).json()["id"]
    client.app.state.metrics.add_source(versions)
    scraped = parse(client.get("/metrics").text)
    assert scraped.value("crowdloop_model_versions", project=str(project)) == 2.0
    assert scraped.value("crowdloop_answers_total", project=str(project)) == 0.0


def test_route_labels_are_templates_and_unmatched_paths_share_one(client):
    client.get("/api/v1/projects/12345")
    for path in ("/wp-login.php", "/no/such/thing", "/api/v1/nope"):
        client.get(path)
    routes = {
        dict(labels)["route"] for labels in parse(client.get("/metrics").text).series("crowdloop_http_requests_total")
    }
    assert "/api/v1/projects/{project_id}" in routes and "<unmatched>" in routes
    assert not any("12345" in route or "wp-login" in route for route in routes)


def test_finished_runs_of_projects_summed_as_other_are_not_in_progress(tmp_path):
    """With CROWDLOOP_METRICS_MAX_PROJECTS=1 and two projects aggregated, both runs done, the
    gauge said one run was in progress in ``project="other"``: its branch counted every run of
    the projects without a label of their own, finished or not."""
    from sqlalchemy import insert

    from crowdloop.storage.db import make_engine
    from crowdloop.storage.models import AggregationRun, utcnow

    url = f"sqlite:///{tmp_path / 'other.db'}"
    settings = Settings(database_url=url, webhook_dispatcher=False, admin_token=TOKEN, metrics_max_projects=1)
    with TestClient(create_app(settings)) as http:
        http.headers["Authorization"] = f"Bearer {TOKEN}"
        older, newer = (http.post("/api/v1/projects", json={"name": n, "labels": ["a", "b"]}).json()["id"]
                        for n in ("older", "newer"))  # fmt: skip
        engine = make_engine(url, pool_size=1)
        with engine.begin() as connection:
            for project, status in ((older, "done"), (newer, "done"), (older, "superseded"), (older, "failed")):
                connection.execute(insert(AggregationRun).values(project_id=project, method="default", status=status,
                                                                 finished_at=utcnow()))  # fmt: skip
        scraped = parse(http.get("/metrics").text)
        assert scraped.value("crowdloop_aggregation_runs_in_progress", project="other") == 0.0
        assert scraped.value("crowdloop_aggregation_runs_in_progress", project=str(newer)) == 0.0
        with engine.begin() as connection:  # one run of the summed project still at work: that one counts
            connection.execute(insert(AggregationRun).values(project_id=older, method="default", status="running"))
        engine.dispose()
        scraped = parse(http.get("/metrics").text)
        assert scraped.value("crowdloop_aggregation_runs_in_progress", project="other") == 1.0
        assert scraped.value("crowdloop_aggregation_runs_in_progress", project=str(newer)) == 0.0
        assert scraped.value("crowdloop_aggregation_runs_total", project=str(newer), status="done") == 1.0


def test_project_labels_name_the_listed_ids_and_sum_the_rest():
    labels = ProjectLabels(frozenset({3, 4}))
    assert [labels.label(i) for i in (1, 3, 4, 5)] == ["other", "3", "4", "other"]
    assert labels.sum_by_label([(1, 2.0), (3, 1.0), (5, 4.0)]) == {"3": 1.0, "4": 0.0, "other": 6.0}
    assert labels.counters([(1, 2.0), (3, 1.0), (5, 4.0)]) == {"3": 1.0, "4": 0.0}  # no "other" counter


def test_the_metrics_directory(tmp_path):
    assert prepare_metrics_dir(None, 1) == (None, False)  # one process counts in memory
    made, temporary = prepare_metrics_dir(None, 3)
    assert made is not None and made.is_dir() and temporary
    remove_metrics_dir(made)
    assert not made.exists()
    configured = tmp_path / "metrics"
    configured.mkdir()
    for name in ("histogram_77.db", "counter_77.db", "gauge_livesum_77.db", "summary_77.db"):
        (configured / name).write_bytes(b"old")
    (configured / "notes.txt").write_text("not ours")
    (configured / "crowdloop.db").write_bytes(b"the database")  # CROWDLOOP_METRICS_DIR=. wiped it
    host = socket.gethostname()
    dead, alive = configured / f"serve-{host}-{_a_dead_pid()}", configured / f"serve-{host}-{os.getppid()}"
    for directory in (dead, alive):
        directory.mkdir()
        (directory / "counter_5.db").write_bytes(b"counts")
    own, temporary = prepare_metrics_dir(configured, 2)
    assert own == configured / f"serve-{host}-{os.getpid()}" and own.is_dir() and temporary
    # another instance's counts stay while it runs (starting a second one deleted them)
    assert sorted(path.name for path in configured.iterdir()) == sorted(["crowdloop.db", "notes.txt", alive.name,
                                                                         own.name])  # fmt: skip
    assert (alive / "counter_5.db").exists()


def test_a_folder_with_this_process_own_name_is_stale(tmp_path):
    """A container restarted after a crash runs ``serve`` as pid 1 again on the same host name: the
    folder its last run left counted as a running instance's (its pid is alive: ours), was kept,
    and ``serve`` refused to start for ever ("serve-vm-1: File exists", exit 1)."""
    left = tmp_path / f"serve-{socket.gethostname()}-{os.getpid()}"
    left.mkdir()
    (left / "counter_1.db").write_bytes(b"counts of the crashed run")
    own, _ = prepare_metrics_dir(tmp_path, 1)
    assert own == left and own.is_dir() and list(own.iterdir()) == []


def _a_dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(finished.stdout)


def test_the_metrics_token_check():
    secret = SecretStr("s3cret")
    assert is_metrics_token(secret, "s3cret")
    assert not is_metrics_token(secret, "s3cret ") and not is_metrics_token(secret, None)
    assert not is_metrics_token(None, "s3cret") and not is_metrics_token(SecretStr("x"), "")


def test_pooled_confidence_weighs_each_batch_by_its_predictions():
    """Every batch sends up to 256 values: pooled whole, a device that made 5 predictions counted
    as much as one that made 10,000."""
    from crowdloop.monitoring.drift_service import Window, observed_sample
    from crowdloop.storage.models import EdgeTelemetry

    busy = EdgeTelemetry(predictions=10_000, summary={"confidence_sample": [0.9] * 256, "class_counts": {"a": 9}})
    quiet = EdgeTelemetry(predictions=5, summary={"confidence_sample": [0.1] * 256, "class_counts": {"a": 1}})
    sample = observed_sample(Window([busy, quiet]))
    assert sample.confidence is not None
    assert sample.confidence.count(0.9) == 256 and sample.confidence.count(0.1) == 1  # 5 / (10,000 / 256), at least 1
    assert sample.classes == {"a": 10}
