"""``CROWDLOOP_DEFAULT_METHOD``: the aggregation method of a project or an ``aggregate`` run that names none.

The setting was documented and read into ``Settings`` but nothing used it: projects and the
CLI always took ``default``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from crowdloop.api import create_app
from crowdloop.config import Settings
from crowdloop.ports import free_port

API = "/api/v1"


def test_a_project_that_names_no_method_gets_the_servers_default(tmp_path: Path) -> None:
    with warnings.catch_warnings():  # starlette's note that its test client will move off httpx
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'default.db'}", webhook_dispatcher=False,
                        admin_token="cl_default_method_admin", default_method="mv")  # fmt: skip
    with TestClient(create_app(settings)) as http:
        http.headers["Authorization"] = "Bearer cl_default_method_admin"
        unnamed = http.post(f"{API}/projects", json={"name": "unnamed", "labels": ["a", "b"]})
        named = http.post(f"{API}/projects", json={"name": "named", "labels": ["a", "b"], "aggregation_method": "ds"})
        bad = http.post(f"{API}/projects", json={"name": "bad", "labels": ["a", "b"], "aggregation_method": "magic"})
    assert unnamed.status_code == 201 and unnamed.json()["aggregation_method"] == "majority_vote", unnamed.text
    assert named.json()["aggregation_method"] == "dawid_skene"
    assert bad.status_code == 422 and "magic" in bad.json()["detail"], bad.text


def test_aggregate_without_a_method_uses_the_setting() -> None:
    def aggregate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "crowdloop", "aggregate", "--dataset", "rte", *args],
                              capture_output=True, text=True, timeout=120, env=os.environ | env)  # fmt: skip

    configured = aggregate(CROWDLOOP_DEFAULT_METHOD="majority_vote")
    assert configured.returncode == 0, configured.stderr
    assert "MajorityVote" in configured.stderr and "DefaultAggregator" not in configured.stderr
    named = aggregate("--method", "glad", CROWDLOOP_DEFAULT_METHOD="majority_vote")
    assert "GLAD" in named.stderr, named.stderr
    unknown = aggregate(CROWDLOOP_DEFAULT_METHOD="magic")
    assert unknown.returncode == 2 and "unknown aggregation method 'magic'" in unknown.stderr, unknown.stderr


def test_a_default_method_no_project_can_use_is_refused_at_start(tmp_path: Path) -> None:
    """An unknown one was taken, and every project created without a method then failed with
    ``UnknownMethodError`` for a requester who never chose it; a numeric one failed them too."""
    with pytest.raises(ValidationError, match="unknown aggregation method 'magic'"):
        Settings(default_method="magic")
    assert Settings(default_method=" ds ").default_method == "ds"
    url = f"sqlite:///{tmp_path / 'refused.db'}"
    port = free_port()  # nobody listens on it: serve must stop before it
    for method, message in (("magic", "CROWDLOOP_DEFAULT_METHOD: Value error, unknown aggregation method 'magic'"),
                            ("mean", "CROWDLOOP_DEFAULT_METHOD: 'mean' aggregates numeric answers")):  # fmt: skip
        command = [sys.executable, "-m", "crowdloop", "serve", "--port", str(port), "--database-url", url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              env=os.environ | {"CROWDLOOP_DEFAULT_METHOD": method})  # fmt: skip
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and "crowdloop serving" not in done.stderr
