"""`crowdloop serve --workers 2`: every process's request counts are summed, whichever answers the scrape.

The server runs with a configured ``CROWDLOOP_METRICS_DIR`` (so the test can see each process's
files), the scrape-only ``CROWDLOOP_METRICS_TOKEN``, and ``CROWDLOOP_METRICS_MAX_PROJECTS=2``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from metrics_scrape import scrape

from servers import start_server

METRICS_TOKEN = "scrape-only-secret-7c1d"
REQUESTS = 60
ROUNDS_DEADLINE_S = 60


@dataclass
class Cluster:
    server: Any
    directory: Path
    stale: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("metrics")
    stale = directory / "counter_4242.db"
    stale.write_bytes(b"left over from an earlier run")  # would break the scrape if it were read
    env = {"CROWDLOOP_METRICS_DIR": str(directory), "CROWDLOOP_METRICS_TOKEN": METRICS_TOKEN,
           "CROWDLOOP_METRICS_MAX_PROJECTS": "2"}  # fmt: skip
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'crowdloop.db'}"
    server = start_server(url, tmp_path_factory.mktemp("logs"), 2, env)
    yield Cluster(server, directory, stale)
    server.stop()


def _me(url: str, token: str) -> int:
    """One request on its own connection, so the kernel may hand it to either process."""
    return httpx.get(f"{url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def test_serve_empties_a_configured_directory(cluster, admin_token):
    assert not cluster.stale.exists()
    scrape(cluster.server.url, admin_token)


def _serving_pids(cluster: Cluster) -> set[str]:
    """The processes that have answered ``/api/v1/me``: each counts in its own file (a health check
    or a scrape is counted too, so a file alone is not enough)."""
    from prometheus_client.mmap_dict import MmapedDict

    def answered_me(path: Path) -> bool:
        return any('"route": "/api/v1/me"' in key for key, *_ in MmapedDict.read_all_values_from_file(str(path)))

    paths = cluster.directory.glob("serve-*/counter_*.db")
    return {path.stem.split("_")[-1] for path in paths if answered_me(path)}


def test_counts_of_both_processes_are_summed(cluster, admin_token):
    """Requests are sent in rounds until both processes have answered some: the server answers its
    health check as soon as one process is up, and on 2 busy cores the other may come up seconds
    later (one CI run had all of a single round answered by the first)."""
    sent, deadline = 0, time.monotonic() + ROUNDS_DEADLINE_S
    with ThreadPoolExecutor(8) as pool:
        while True:
            statuses = list(pool.map(lambda _: _me(cluster.server.url, admin_token), range(REQUESTS)))
            assert statuses == [200] * REQUESTS
            sent += REQUESTS
            if len(_serving_pids(cluster)) == 2 or time.monotonic() > deadline:
                break
    pids = _serving_pids(cluster)
    assert len(pids) == 2, f"expected both processes to have served requests, files: {sorted(pids)}"
    labels = {"method": "GET", "route": "/api/v1/me", "status": "200"}
    for _ in range(6):  # each scrape may be answered by either process: all see the same sums
        scraped = scrape(cluster.server.url, METRICS_TOKEN)
        assert scraped.value("crowdloop_http_requests_total", **labels) == sent
        assert scraped.value("crowdloop_http_request_duration_seconds_count", **labels) == sent


def test_the_metrics_token_opens_metrics_and_nothing_else(cluster):
    assert (
        "crowdloop_build_info"
        in httpx.get(f"{cluster.server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    )
    for path in ("/api/v1/me", "/api/v1/projects"):
        response = httpx.get(cluster.server.url + path, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert response.status_code == 401
    wrong = httpx.get(f"{cluster.server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"})
    assert wrong.status_code == 401


def test_the_project_label_is_bounded_live_projects_first(cluster):
    owner = cluster.server.user("owner", "requester")[1]
    ids = []
    for index in range(4):
        project = owner.create_project(name=f"p{index}", labels=["a", "b"])
        owner.import_items(project["id"], [{"data": {"text": f"p{index} item {i}"}} for i in range(index + 1)])
        ids.append(project["id"])
    queued = _queued(cluster)
    assert queued == {str(ids[3]): 4, str(ids[2]): 3, "other": 1 + 2}  # the two newest, the rest summed
    owner.start(ids[0])  # a live project outranks newer drafts
    assert _queued(cluster) == {str(ids[0]): 1, str(ids[3]): 4, "other": 2 + 3}


def _queued(cluster: Cluster) -> dict[str, float]:
    scraped = scrape(cluster.server.url, METRICS_TOKEN)
    series = scraped.series("crowdloop_items")
    return {dict(labels)["project"]: value for labels, value in series.items() if dict(labels)["state"] == "queued"}
