"""Aggregating a project's answers with ``crowdloop.quality``, on demand or in the background.

The result is one ``ItemLabel`` per answered item (label, confidence, method, time) and
each worker's reliability (the aggregator's skill, shown in the worker table). Each run
also refits dynamic overlap's crowd model and settles the items again with it
(:mod:`crowdloop.crowd.stop_rule`). Every run is recorded in ``aggregation_runs``.
Background runs lock the project row, so several app processes never aggregate one
project at the same time.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from crowdloop.config import configure_logging
from crowdloop.crowd import stop_rule
from crowdloop.crowd.projects import get_owned_project
from crowdloop.quality import BaseClassificationAggregator, get_aggregator
from crowdloop.storage.db import dialect_insert, make_engine, param, run_many, session_factory, unit_of_work
from crowdloop.storage.models import (
    AggregationRun,
    Answer,
    Item,
    ItemLabel,
    Project,
    ProjectWorker,
    User,
    utcnow,
)

log = logging.getLogger(__name__)
AUTO_EVERY = 50
"""Answers between two automatic aggregations of a project (at least)."""


def aggregate_project(
    session: Session, actor: User, project_id: int, max_memory_mb: float | None = None
) -> dict[str, Any]:
    """On-demand aggregation by the project's requester."""
    project = get_owned_project(session, actor, project_id)
    return run_aggregation(session, project, max_memory_mb=max_memory_mb)


def run_aggregation(
    session: Session,
    project: Project,
    *,
    reset_counter: bool = True,
    run_id: int | None = None,
    max_memory_mb: float | None = None,
) -> dict[str, Any]:
    """Fit the project's aggregator and the stop rule's crowd model, and store labels and reliabilities.

    ``run_id``: a run row already committed as running (:func:`aggregate_in_background`), so
    the run shows as in progress while it works; without one the run's row is made here.
    ``max_memory_mb``: the server's ``CROWDLOOP_MAX_MEMORY_MB`` (None: 80% of what is available),
    so a fit that would not fit is refused before it takes the process's memory.
    """
    answers = _answers_frame(session, project.id)
    run = session.get(AggregationRun, run_id) if run_id is not None else None
    if run is None:
        run = AggregationRun(project_id=project.id, method=project.aggregation_method)
        session.add(run)
    run.answers = len(answers)
    session.flush()
    if answers.empty:
        _drop_unanswered_labels(session, project.id)
        run.status, run.finished_at = "done", utcnow()
        return _summary(run)
    model = get_aggregator(project.aggregation_method)
    if not isinstance(model, BaseClassificationAggregator):
        raise TypeError(f"{project.aggregation_method} is not a categorical aggregator")
    gold = _gold(session, project.id, answers)
    model.fit(answers, gold=gold, max_memory_mb=max_memory_mb)
    if _superseded(session, project.id, run.id):
        run.status, run.finished_at = "superseded", utcnow()
        return _summary(run)
    fitted = stop_rule.refit(session, project, answers, gold)  # items first, then workers: see its docstring
    _store_labels(session, project, model)
    _drop_unanswered_labels(session, project.id)
    _store_reliability(session, project.id, model)
    project.label_prior, project.crowd_model = fitted["label_prior"], fitted["crowd_model"]
    if reset_counter:
        project.answers_since_aggregation = 0
    if project.status == "active":  # last: the project row is the one every submit waits for
        stop_rule.finish_if_complete(session, project.id)  # the refit may have closed the last items
        session.expire(project, ["status", "finished_by"])  # set in SQL just now
    run.status, run.labels, run.finished_at = "done", len(model.labels_), utcnow()
    return _summary(run)


def _superseded(session: Session, project_id: int, run_id: int) -> bool:
    """Whether a run that started after this one has already stored its labels.

    Runs overlap: a background run that started on 100 answers can finish after an on-demand
    run on 120, and would put older labels, reliabilities and class shares back. Start order,
    not the number of answers, decides, since an undo can leave a newer run fewer answers. The
    check and the store that follows are serialised per project (PostgreSQL: a transaction-level
    advisory lock, which submits never take; SQLite: its single writer), so whichever run
    finishes last sees the other.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_STORE_LOCK, {"space": _LOCK_SPACE, "project": project_id})
    newest = session.scalar(
        select(func.max(AggregationRun.id)).where(
            AggregationRun.project_id == project_id, AggregationRun.status == "done"
        )
    )
    return newest is not None and newest > run_id


_STORE_LOCK = text("SELECT pg_advisory_xact_lock(:space, :project)")
_LOCK_SPACE = 0x6372_6C61  # "crla": the advisory-lock key space of aggregation stores


def _summary(run: AggregationRun) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "method": run.method,
        "answers": run.answers,
        "labels": run.labels,
        "status": run.status,
    }


def _answers_frame(session: Session, project_id: int) -> pd.DataFrame:
    rows = session.execute(
        select(Answer.item_id, Answer.worker_id, Answer.label).where(Answer.project_id == project_id)
    ).all()
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


def _gold(session: Session, project_id: int, answers: pd.DataFrame) -> pd.Series | None:
    """Gold labels of the answered gold items, in classes the answers use: a class nobody has
    answered yet cannot be clamped to, and gold of no answered task is refused by the fit."""
    rows = session.execute(
        select(Item.id, Item.gold_label).where(Item.project_id == project_id, Item.is_gold.is_(True))
    ).all()
    seen, answered = set(answers["label"].unique()), set(answers["task"].unique())
    gold = pd.Series({item: label for item, label in rows if label in seen and item in answered}, dtype=object)
    return gold if len(gold) else None


def _store_labels(session: Session, project: Project, model: BaseClassificationAggregator) -> None:
    """Upsert one label per item, in item order: two runs at once (two processes, or an
    on-demand run beside a background one) both succeed and the later one wins. A requester's
    review decision (method ``review``) is final: no run overwrites it."""
    probas = _in_label_order(model.probas_, project.labels)
    confidence = probas.to_numpy().max(axis=1)
    labels = probas.idxmax(axis=1)  # a tie goes to the label listed first
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {"item_id": int(item), "project_id": project.id, "label": label, "confidence": float(conf),
         "method": project.aggregation_method, "aggregated_at": now}
        for item, label, conf in zip(labels.index, labels.to_numpy(), confidence, strict=True)
    ]  # fmt: skip
    if not rows:
        return
    rows.sort(key=lambda row: row["item_id"])
    statement = dialect_insert(session, ItemLabel)
    changed = {name: statement.excluded[name] for name in ("label", "confidence", "method", "aggregated_at")}
    upsert = statement.on_conflict_do_update(
        index_elements=["item_id"], set_=changed, where=ItemLabel.__table__.c.method != "review"
    )
    session.execute(upsert, rows)


def _in_label_order(probas: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """``probas`` with its columns in the project's label order. The aggregators sort classes as
    text, so a tie went to "10" before "2" on a 1..10 scale, where the simulator (and a requester
    reading the label list) put 2 first."""
    listed = [label for label in labels if label in probas.columns]
    return probas[listed + [label for label in probas.columns if label not in listed]]


def _drop_unanswered_labels(session: Session, project_id: int) -> None:
    """Delete the aggregated labels of items that no longer have an answer (all were undone).

    The upsert only writes the items that have answers, so a label built from an answer that was
    undone since stayed in exports, the status and training for ever. A review decision is the
    requester's, not the crowd's: it stays.
    """
    answered = select(Answer.id).where(Answer.item_id == ItemLabel.item_id).exists()
    session.execute(
        delete(ItemLabel)
        .where(ItemLabel.project_id == project_id, ItemLabel.method != "review", ~answered)
        .execution_options(synchronize_session=False)
    )


def _store_reliability(session: Session, project_id: int, model: BaseClassificationAggregator) -> None:
    """Each worker's skill as their reliability: one executemany, in worker order (the order every
    writer of several standings locks them in)."""
    skills = getattr(model, "skills_", None)
    if skills is None:
        return
    rows = sorted(({"project": project_id, "worker": int(worker), "reliability": float(np.clip(skill, 0.0, 1.0))}
                   for worker, skill in skills.items()), key=lambda row: row["worker"])  # fmt: skip
    run_many(session, _STORE_RELIABILITY, rows)


_STORE_RELIABILITY = (
    update(ProjectWorker)
    .where(ProjectWorker.project_id == param("project"), ProjectWorker.worker_id == param("worker"))
    .values(reliability=param("reliability"))
)


def _claim(factory: sessionmaker[Session], project_id: int) -> bool:
    """Reset the project's counter in a short transaction of its own; False if already claimed.

    The row lock serialises processes (whoever comes second finds the counter at 0), and it
    is released before the model is fitted, so submits never wait for an aggregation.
    """
    with unit_of_work(factory) as session:
        project = session.get(Project, project_id, with_for_update={"key_share": True})
        if project is None or project.answers_since_aggregation == 0:
            return False
        project.answers_since_aggregation = 0
        return True


def due(since: int, total: int) -> bool:
    """Whether enough answers arrived since the last run to aggregate again.

    Every ``AUTO_EVERY`` answers, or every tenth of the answers so far if more, so the
    cost of re-aggregating stays a constant share of the work as a project grows.
    """
    return since >= max(AUTO_EVERY, total // 10)


def aggregate_in_background(
    factory: sessionmaker[Session], project_id: int, max_memory_mb: float | None = None
) -> None:
    """Run after the response is sent; skips when another process is already at it.

    The run's row is committed first, as running, and marked failed if the run raises: inside
    the run's own transaction neither could be seen, so the metrics showed no run in progress
    and no failure ever (``crowdloop_aggregation_runs_total{status="failed"}``).
    """
    run_id = None
    try:
        if not _claim(factory, project_id):
            return
        run_id = _start_run(factory, project_id)
        if run_id is None:
            return
        with unit_of_work(factory) as session:
            project = session.get(Project, project_id)
            if project is not None:
                run_aggregation(session, project, reset_counter=False, run_id=run_id, max_memory_mb=max_memory_mb)
    except Exception as error:  # a background job must log, never kill the worker thread
        log.exception("background aggregation of project %s failed", project_id)
        if run_id is not None:
            _mark_failed(factory, run_id, error)
    except BaseException as error:  # stopped (SystemExit, KeyboardInterrupt): the run did not finish
        if run_id is not None:
            _mark_failed(factory, run_id, error)
        raise


def _start_run(factory: sessionmaker[Session], project_id: int) -> int | None:
    """A run row committed as running (None: the project is gone)."""
    with unit_of_work(factory) as session:
        project = session.get(Project, project_id)
        if project is None:
            return None
        run = AggregationRun(project_id=project_id, method=project.aggregation_method)
        session.add(run)
        session.flush()
        return run.id


def _mark_failed(factory: sessionmaker[Session], run_id: int, error: BaseException) -> None:
    try:
        with unit_of_work(factory) as session:
            run = session.get(AggregationRun, run_id)
            if run is not None:
                run.status, run.finished_at = "failed", utcnow()
                run.error = f"{type(error).__name__}: {error}".strip().removesuffix(":")[:2000]
    except Exception:
        log.exception("could not record the failed aggregation run %s", run_id)


class AggregationProcess:
    """Runs a serving process's automatic aggregations in one child process of its own.

    Fitting a project's truth-inference model is seconds of pure Python and numpy. In a
    thread of the serving process it held the GIL that every request needs: with 10 workers
    answering on PostgreSQL, one process did 129-154 answer cycles/s with next-task p99 of
    89 ms, against 171-178 and 48 ms with no aggregation at all. The child (started on first
    use, ``spawn``, so no lock of this threaded process is copied into it) has its own engine
    on the same database; :func:`aggregate_in_background` still claims the project, so any
    number of serving processes and their children aggregate a project once at a time.

    The child ends with its server: it checks every :data:`PARENT_CHECK_SECONDS` that the process
    that started it is still its parent, and stops when it is not (a server killed with -9 left it
    running, 180 MB, for ever). It ignores Ctrl-C, which the terminal sends to the whole process
    group: the server stops it (:meth:`close`), and it printed a ``KeyboardInterrupt`` traceback.
    """

    def __init__(self, database_url: str, log_level: str = "INFO", max_memory_mb: float | None = None) -> None:
        self.database_url = database_url
        self.log_level = log_level  # the child logs as its server does (CROWDLOOP_LOG_LEVEL)
        self.max_memory_mb = max_memory_mb  # and fits within its limit (CROWDLOOP_MAX_MEMORY_MB)
        self._executor: ProcessPoolExecutor | None = None
        self._pending: set[int] = set()
        self._lock = threading.Lock()

    def submit(self, project_id: int) -> None:
        """Aggregate ``project_id`` soon; a project already waiting is not queued twice.

        Never raises: it runs after an answer was stored, and a failure here must not turn
        that answer's response into an error. A child that died is replaced on the next call.
        """
        try:
            with self._lock:
                if project_id in self._pending:
                    return
                future = self._queue(project_id)
                self._pending.add(project_id)
                executor = self._executor
            future.add_done_callback(lambda done: self._finished(project_id, done, executor))
        except Exception:
            log.exception("could not queue the background aggregation of project %s", project_id)

    def _queue(self, project_id: int) -> Future[None]:
        for _ in range(2):
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    1,
                    multiprocessing.get_context("spawn"),
                    initializer=_start_child,
                    initargs=(self.database_url, self.log_level, self.max_memory_mb, os.getpid()),
                )
            try:
                with _ctrl_c_blocked():  # the child is started here, on first use
                    return self._executor.submit(_aggregate_in_child, project_id)
            except BrokenProcessPool:  # the child died (killed, out of memory): start another
                self._executor = None
        raise RuntimeError("the aggregation process keeps dying")

    def _finished(self, project_id: int, future: Future[None], executor: ProcessPoolExecutor | None) -> None:
        # No lock: this runs in the executor's thread, which may hold its own lock that a
        # submit holding ours waits for. A race with a submit costs at most one skipped
        # queueing, and the project's next due answer queues it again (its counter was not reset).
        self._pending.discard(project_id)
        error = None if future.cancelled() else future.exception()
        if isinstance(error, BrokenProcessPool) and self._executor is executor:
            self._executor = None  # the child died: the next submit starts another
        if error is not None:
            log.error("background aggregation of project %s failed: %s", project_id, error)

    def close(self) -> None:
        """Stop the child; aggregations still queued are dropped (the next due answer queues them again)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


_CHILD_FACTORY: sessionmaker[Session] | None = None
_CHILD_MAX_MEMORY_MB: float | None = None


@contextmanager
def _ctrl_c_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while it starts the child, which inherits the mask: the child
    then ignores Ctrl-C from its first line, not only from :func:`_start_child` on. It spends
    seconds importing before that, and a Ctrl-C then killed it with a traceback. (Windows has no
    signal masks: there the child ignores Ctrl-C from :func:`_start_child` on.)"""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


PARENT_CHECK_SECONDS = 1.0
"""How often the aggregation process checks that its server is still there."""
STOP_GRACE_SECONDS = 10.0
"""How long the aggregation process, its server gone, gives a run under way to be marked failed."""


def _start_child(
    database_url: str, log_level: str, max_memory_mb: float | None = None, parent: int | None = None
) -> None:
    global _CHILD_FACTORY, _CHILD_MAX_MEMORY_MB
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole foreground group: the server stops us
    if hasattr(signal, "pthread_sigmask"):  # not on Windows
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked until now (_ctrl_c_blocked): dropped
    signal.signal(signal.SIGTERM, _stop)
    configure_logging(log_level)  # a spawned child starts with no handler: its failures had no time or level
    _CHILD_FACTORY = session_factory(make_engine(database_url, pool_size=1))
    _CHILD_MAX_MEMORY_MB = max_memory_mb
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), name="crowdloop-parent-watch", daemon=True).start()


def _stop(_signal: int, _frame: Any) -> None:
    """SIGTERM: leave whatever the process is doing (a run is marked failed on its way out)."""
    raise SystemExit(0)


def _exit_with(parent: int) -> None:
    """End this process once ``parent`` is no longer its parent (it died, and the process was
    handed to init). A run under way is stopped through SIGTERM, so it is marked failed rather
    than left "running"; the process is ended for good after :data:`STOP_GRACE_SECONDS`."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    log.warning("the server process %s is gone; its aggregation process %s stops", parent, os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(STOP_GRACE_SECONDS)
    os._exit(1)


def _aggregate_in_child(project_id: int) -> None:
    if _CHILD_FACTORY is None:
        raise RuntimeError("the aggregation process was not initialised")
    aggregate_in_background(_CHILD_FACTORY, project_id, _CHILD_MAX_MEMORY_MB)
