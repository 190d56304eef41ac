"""Automatic aggregation in a child process, and aggregation runs that overlap."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from crowdloop.crowd import aggregation
from crowdloop.crowd.aggregation import AggregationProcess, run_aggregation
from crowdloop.crowd.answers import submit_answer
from crowdloop.crowd.assignment import next_task
from crowdloop.crowd.items import import_items
from crowdloop.crowd.schemas import SubmitIn
from crowdloop.storage.db import make_engine, session_factory, unit_of_work
from crowdloop.storage.migrate import upgrade
from crowdloop.storage.models import AggregationRun, ItemLabel, Project, User


def _project_with_answers(url: str) -> int:
    """An active project of 60 items, each answered once, through the services a request uses."""
    engine = make_engine(url, pool_size=2)
    upgrade(engine)
    factory = session_factory(engine)
    with unit_of_work(factory) as session:
        owner, worker = User(name="owner", role="requester"), User(name="worker", role="worker")
        session.add_all([owner, worker])
        session.flush()
        project = Project(owner_id=owner.id, name="p", labels=["neg", "pos"], max_overlap=1, status="active")
        session.add(project)
        session.flush()
        import_items(session, owner, project.id, [{"data": {"text": f"item {n}"}} for n in range(60)])
        project_id, worker_id = project.id, worker.id
    for n in range(60):
        with unit_of_work(factory) as session:
            worker = session.get(User, worker_id)
            task = next_task(session, worker, project_id)
            assert task is not None
            submit_answer(session, worker, task.assignment_id, SubmitIn(label="pos" if n % 3 else "neg"))
    engine.dispose()
    return project_id


def _labels(url: str, project_id: int) -> int:
    engine = create_engine(url)
    with Session(engine) as session:
        found = session.scalar(select(func.count()).select_from(ItemLabel).where(ItemLabel.project_id == project_id))
    engine.dispose()
    return int(found or 0)


def _wait_for(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_the_child_process_aggregates_and_a_killed_child_is_replaced(tmp_path):
    url = f"sqlite:///{tmp_path / 'crowdloop.db'}"
    project_id = _project_with_answers(url)
    aggregations = AggregationProcess(url)
    try:
        aggregations.submit(project_id)
        child = next(iter(aggregations._executor._processes))  # type: ignore[union-attr]
        os.kill(child, signal.SIGINT)  # Ctrl-C while it is still starting (importing): it died of it
        assert _wait_for(lambda: _labels(url, project_id) == 60)
        assert child != os.getpid()
        # Ctrl-C in a terminal reaches the child too: a run under way died of KeyboardInterrupt, with a
        # traceback, and left its row "running". The server stops the child; the key is ignored.
        ignored = int(
            re.search(r"^SigIgn:\s*([0-9a-f]+)$", Path(f"/proc/{child}/status").read_text(), re.M).group(1), 16
        )
        assert ignored & (1 << (signal.SIGINT - 1)), "the aggregation process does not ignore SIGINT"
        os.kill(child, signal.SIGKILL)
        assert _wait_for(lambda: not aggregations._pending)  # the lost job ends (broken pool), nothing hangs
        engine = create_engine(url)
        with Session(engine) as session:
            session.get(Project, project_id).answers_since_aggregation = 60
            session.execute(ItemLabel.__table__.delete())
            session.commit()
        engine.dispose()
        aggregations.submit(project_id)  # may still meet the dead child: then it is lost, and the
        assert _wait_for(lambda: not aggregations._pending)  # project's counter stays up, so
        aggregations.submit(project_id)  # the next due answer queues it again, to a fresh child
        assert _wait_for(lambda: _labels(url, project_id) == 60)
    finally:
        aggregations.close()


def _gone(pid: int) -> bool:
    """Whether ``pid`` has ended (a zombie has: only its exit status is left for its parent to read)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_the_child_process_ends_when_its_server_is_killed(tmp_path):
    """A server killed with -9 left its aggregation process running for ever (reparented to init,
    180 MB, holding the resource tracker open)."""
    url = f"sqlite:///{tmp_path / 'orphan.db'}"
    project_id = _project_with_answers(url)
    server = (
        "import sys, time\n"
        "from crowdloop.crowd.aggregation import AggregationProcess\n"
        f"aggregations = AggregationProcess({url!r})\n"
        f"aggregations.submit({project_id})\n"
        "while aggregations._pending: time.sleep(0.1)\n"  # the child is up and has aggregated
        "print(next(iter(aggregations._executor._processes)), flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        child = int(process.stdout.readline())
        assert _labels(url, project_id) == 60 and not _gone(child)
    finally:
        process.kill()
        process.wait()
    assert _wait_for(lambda: _gone(child), 15), f"aggregation process {child} outlived its server"


def test_a_run_stopped_by_a_base_exception_is_marked_failed(tmp_path, monkeypatch):
    """Only ``Exception`` was caught: a run stopped by SystemExit (the process told to end) or
    KeyboardInterrupt stayed "running" in its row and in crowdloop_aggregation_runs_in_progress."""
    url = f"sqlite:///{tmp_path / 'stopped.db'}"
    project_id = _project_with_answers(url)
    engine = make_engine(url, pool_size=1)

    def stopped(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(aggregation, "run_aggregation", stopped)
    with pytest.raises(KeyboardInterrupt):
        aggregation.aggregate_in_background(session_factory(engine), project_id)
    with Session(engine) as session:
        runs = session.execute(select(AggregationRun.status, AggregationRun.error, AggregationRun.finished_at)).all()
    engine.dispose()
    assert [(run.status, run.error) for run in runs] == [("failed", "KeyboardInterrupt")]
    assert runs[0].finished_at is not None


def test_a_run_that_started_before_a_stored_one_leaves_its_labels_alone(tmp_path, monkeypatch):
    """A run that finishes after a later-started run stored its labels (an on-demand run beside a
    background one, or another process's) must not put its older labels back; a run that started
    later stores even over fewer answers (an undo took one back)."""
    url = f"sqlite:///{tmp_path / 'crowdloop.db'}"
    project_id = _project_with_answers(url)
    engine = make_engine(url, pool_size=2)
    factory = session_factory(engine)
    with unit_of_work(factory) as session:  # an earlier run over more answers: no reason to hold back
        session.add(AggregationRun(project_id=project_id, method="default", answers=61, status="done"))
    real_gold = aggregation._gold

    def later_run_stores_meanwhile(session, project, labels):  # called while our run fits
        session.add(AggregationRun(project_id=project, method="default", answers=60, status="done"))
        session.flush()
        return real_gold(session, project, labels)

    monkeypatch.setattr(aggregation, "_gold", later_run_stores_meanwhile)
    with unit_of_work(factory) as session:
        summary = run_aggregation(session, session.get(Project, project_id))
    assert summary["status"] == "superseded" and _labels(url, project_id) == 0
    monkeypatch.setattr(aggregation, "_gold", real_gold)
    with unit_of_work(factory) as session:
        summary = run_aggregation(session, session.get(Project, project_id))
    assert summary["status"] == "done" and _labels(url, project_id) == 60
    engine.dispose()


def test_a_failed_background_run_is_recorded_as_failed(tmp_path):
    """The run's row was made inside the run's transaction, so a run that raised left no trace:
    ``crowdloop_aggregation_runs_total{status="failed"}`` could never appear."""
    url = f"sqlite:///{tmp_path / 'failing.db'}"
    project_id = _project_with_answers(url)
    engine = make_engine(url, pool_size=1)
    factory = session_factory(engine)
    with unit_of_work(factory) as session:
        session.get(Project, project_id).aggregation_method = "no_such_method"  # e.g. one an upgrade dropped
    aggregation.aggregate_in_background(factory, project_id)
    with Session(engine) as session:
        runs = session.execute(select(AggregationRun.status, AggregationRun.error, AggregationRun.finished_at)).all()
    engine.dispose()
    assert len(runs) == 1 and runs[0].status == "failed" and runs[0].finished_at is not None
    assert "no_such_method" in runs[0].error


def test_the_servers_aggregations_keep_to_its_memory_limit(tmp_path):
    """``CROWDLOOP_MAX_MEMORY_MB`` was read by ``crowdloop aggregate`` only: the server's fits, on
    demand and in its child process, took the default of 80% of the memory available whatever the
    operator set. A limit far below any fit refuses both, with the setting named."""
    import warnings

    from crowdloop.api import create_app
    from crowdloop.config import Settings

    url = f"sqlite:///{tmp_path / 'limited.db'}"
    project_id = _project_with_answers(url)
    aggregations = AggregationProcess(url, max_memory_mb=0.001)
    try:
        aggregations.submit(project_id)
        assert _wait_for(lambda: not aggregations._pending)
    finally:
        aggregations.close()
    engine = create_engine(url)
    with Session(engine) as session:
        runs = session.execute(select(AggregationRun.status, AggregationRun.error)).all()
    engine.dispose()
    assert [run.status for run in runs] == ["failed"] and "MemoryLimitError" in runs[0].error, runs
    assert _labels(url, project_id) == 0
    with warnings.catch_warnings():  # starlette's note that its test client will move off httpx
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    settings = Settings(database_url=url, webhook_dispatcher=False, admin_token="cl_memory_admin", max_memory_mb=0.001)
    with TestClient(create_app(settings)) as http:
        refused = http.post(
            f"/api/v1/projects/{project_id}/aggregate", headers={"Authorization": "Bearer cl_memory_admin"}
        )
    assert refused.status_code == 422 and "(max_memory_mb)" in refused.json()["detail"], refused.text
    assert _labels(url, project_id) == 0
