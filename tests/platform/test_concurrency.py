"""Workers at once on one project, over real `crowdloop serve` processes on SQLite and
PostgreSQL, then the database read directly with SQLAlchemy to check the assignment engine.

Fifty workers: the project has 100 items, each needing exactly 3 answers (min and max overlap
3), and a 5-second lease (the shortest the API accepts). Every worker is a thread with its own
client, looping next task / answer until there is nothing left for them; the workers share one
server, or are split between two servers on the same database. Besides plain workers:

    retry     submits every answer twice (through another connection, or the other server)
    double    submits every answer twice *at the same time*
    skip      skips every other task
    abandon   walks away with a leased task after two answers (the lease must expire)
    late      answers their first task only after its lease ran out (200 or 409, never both)

When they are done, the leases left behind are let run out and fresh workers finish what is
left. Then, from the database itself: no item has more than 3 answers (and every item exactly
3, the project finished), no (item, worker) pair has two answers, every submit answered 200 has
exactly its one stored answer and every answer a submitted assignment, ``answer_count`` is the
real count, ``reserved`` is 0 everywhere and no lease is left open, and the money adds up. The
status code of every response is recorded: none may be a 5xx or a transport error, and each
route answers only what it may (next: 200/204, answer: 200/409, skip: 204/409). A request that
gets no answer in ``REQUEST_TIMEOUT`` stops the crowd, so that a stuck server fails the test in
about a minute instead of hanging it. Every problem found is reported at once.

An expiring lease settled twice at once (by its late answer or skip and another worker's next
task, or by two workers' next tasks) is driven deterministically by
``test_an_expiring_lease_is_settled_exactly_once``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from crowdloop.client import Client
from crowdloop.errors import CrowdloopError
from crowdloop.storage.db import make_engine
from crowdloop.storage.models import Answer, Assignment, Item, Project, ProjectWorker
from servers import Server, start_server
from support import item_id_of

N_WORKERS = 50
N_ITEMS = 100
OVERLAP = 3
LEASE_SECONDS = 5
REQUEST_TIMEOUT = 35.0
"""Longer than SQLite's 30 s busy timeout: a request that takes longer is stuck, and stops the crowd."""
LABELS = ["a", "b", "c"]
PRICE = 0.01
KINDS = ("retry", "double", "skip", "abandon", "late", "plain", "plain", "plain", "plain", "plain")
NO_ANSWER = 0
"""The status recorded for a submit that got no answer (a timeout, a dropped connection): its fate is unknown."""
ALLOWED = {"next": {200, 204}, "answer": {200, 409}, "skip": {204, 409}}


class Recorder(httpx.BaseTransport):
    """Records (route kind, status) of every response, and transport failures, for the checks."""

    def __init__(self, log: Log, stop: threading.Event) -> None:
        self._inner = httpx.HTTPTransport()
        self._log = log
        self._stop = stop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        kind = request.url.path.rsplit("/", 1)[-1]
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError as error:
            self._log.statuses.append((kind, f"transport: {type(error).__name__}"))
            if isinstance(error, httpx.TimeoutException):
                self._stop.set()  # a stuck server: no use waiting for every worker to time out in turn
            raise
        self._log.statuses.append((kind, response.status_code))
        return response

    def close(self) -> None:
        self._inner.close()


def _no_answer(error: CrowdloopError) -> bool:
    """Whether the SDK raised for a request that got no answer: unreachable, or not in time."""
    return "cannot reach" in str(error) or "did not answer" in str(error)


@dataclass
class Submit:
    worker_id: int
    assignment_id: int
    status: int
    answer_id: int | None = None
    duplicate: bool | None = None


@dataclass
class Log:
    statuses: list[tuple[str, int | str]] = field(default_factory=list)
    submits: list[Submit] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


@dataclass
class Crowd:
    project: int
    log: Log
    servers: list[Server]
    requester: Client
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self, token: str, server: Server) -> Client:
        return Client(server.url, token, timeout=REQUEST_TIMEOUT, transport=Recorder(self.log, self.stop))

    def submit(self, client: Client, worker_id: int, assignment_id: int, label: str) -> None:
        try:
            body = client.submit(assignment_id, label, seconds=1.0)
        except CrowdloopError as error:
            # the SDK raises the bare CrowdloopError for a request that got no answer at all
            status = NO_ANSWER if type(error) is CrowdloopError and _no_answer(error) else error.status_code
            self.log.submits.append(Submit(worker_id, assignment_id, status))
            self.log.errors.append(f"answer {assignment_id} by {worker_id}: {type(error).__name__}: {error}")
            return
        self.log.submits.append(Submit(worker_id, assignment_id, 200, body["answer_id"], body["duplicate"]))

    def work(self, index: int, worker_id: int, token: str, kind: str) -> None:
        """One worker's loop until next_task answers 204 (nothing left for them)."""
        home, away = self.servers[index % len(self.servers)], self.servers[(index + 1) % len(self.servers)]
        rng = random.Random(index)
        with self.client(token, home) as client, self.client(token, away) as other:
            taken = failures = 0
            while failures < 10 and not self.stop.is_set():
                try:
                    task = client.next_task(self.project)
                except CrowdloopError as error:
                    self.log.errors.append(f"next for {worker_id}: {type(error).__name__}: {error}")
                    failures += 1
                    continue
                if task is None:
                    return
                taken += 1
                assignment = task["assignment_id"]
                if kind == "abandon" and taken == 3:
                    return  # walks away: the lease must run out and the item go back to the pool
                if kind == "skip" and taken % 2 == 0:
                    try:
                        client.skip(assignment)
                        self.log.skipped.append(assignment)
                    except CrowdloopError as error:
                        self.log.errors.append(f"skip {assignment} by {worker_id}: {type(error).__name__}: {error}")
                    continue
                if kind == "late" and taken == 1:
                    time.sleep(LEASE_SECONDS + 1)
                label = rng.choice(LABELS)
                if kind == "double":
                    twin = threading.Thread(target=self.submit, args=(other, worker_id, assignment, label))
                    twin.start()
                    self.submit(client, worker_id, assignment, label)
                    twin.join()
                else:
                    self.submit(client, worker_id, assignment, label)
                    if kind == "retry":
                        self.submit(other, worker_id, assignment, label)

    def settle(self) -> None:
        """Let the abandoned leases run out, then fresh workers finish what is left."""
        if self.stop.is_set():
            return
        engine = make_engine(self.servers[0].database_url)
        try:
            with engine.connect() as connection:
                latest = connection.scalar(
                    select(func.max(Assignment.expires_at)).where(
                        Assignment.project_id == self.project, Assignment.status == "leased"
                    )
                )
        finally:
            engine.dispose()
        if latest is not None:
            latest = latest if latest.tzinfo else latest.replace(tzinfo=UTC)
            time.sleep(max(0.0, (latest - datetime.now(UTC)).total_seconds()) + 0.5)
        for sweep in range(2 * OVERLAP):
            if self.stop.is_set() or self.requester.project(self.project)["status"] == "finished":
                return
            created, _ = self.servers[0].user(f"sweeper{sweep}", "worker")
            self.work(sweep, int(created["id"]), str(created["token"]), "plain")


def run_crowd(servers: list[Server]) -> Crowd:
    _, requester = servers[0].user("requester", "requester")
    project = requester.create_project(
        name="fifty", labels=LABELS, min_overlap=OVERLAP, max_overlap=OVERLAP, lease_seconds=LEASE_SECONDS,
        price=PRICE,
    )  # fmt: skip
    report = requester.import_items(project["id"], [{"data": {"text": f"sentence {i:03d}"}} for i in range(N_ITEMS)])
    assert report["created"] == N_ITEMS
    requester.start(project["id"])
    crowd = Crowd(project["id"], Log(), servers, requester)
    workers = []
    for index in range(N_WORKERS):
        created, _ = servers[0].user(f"w{index}", "worker")
        workers.append((index, int(created["id"]), str(created["token"]), KINDS[index % len(KINDS)]))
    with ThreadPoolExecutor(max_workers=N_WORKERS) as pool:
        for future in [pool.submit(crowd.work, *worker) for worker in workers]:
            future.result()
    crowd.settle()
    return crowd


def check_invariants(crowd: Crowd) -> None:
    """Every broken promise at once, so that one run tells the whole story."""
    log, problems = crowd.log, []
    broken = Counter((kind, status) for kind, status in log.statuses if isinstance(status, str) or status >= 500)
    if broken:
        problems.append(f"{sum(broken.values())} server errors or requests without an answer: {dict(broken)}")
    odd = Counter((kind, status) for kind, status in log.statuses if kind in ALLOWED and status not in ALLOWED[kind])
    odd -= broken
    if odd:
        problems.append(f"unexpected answers {dict(odd)}: {log.errors[:5]}")
    if crowd.stop.is_set():
        problems.append(f"the crowd was stopped: a request got no answer in {REQUEST_TIMEOUT:.0f} s")
    problems += stored_state_problems(crowd)
    if problems:
        logs = "\n".join(server.log.read_text()[-1500:] for server in crowd.servers)
        report = stall_report(crowd.servers[0].database_url) if crowd.stop.is_set() else ""
        pytest.fail("\n".join(["", *problems, report, "server log tail:", logs]))


def stored_state_problems(crowd: Crowd) -> list[str]:
    """The database itself against the promises and against what the clients were told."""
    engine = make_engine(crowd.servers[0].database_url)
    try:
        with engine.connect() as connection:
            items = connection.execute(
                select(Item.id, Item.answer_count, Item.reserved, Item.done).where(Item.project_id == crowd.project)
            ).all()
            answers = connection.execute(
                select(Answer.id, Answer.assignment_id, Answer.item_id, Answer.worker_id).where(
                    Answer.project_id == crowd.project
                )
            ).all()
            assignments = {
                row.id: row
                for row in connection.execute(
                    select(Assignment.id, Assignment.item_id, Assignment.worker_id, Assignment.status).where(
                        Assignment.project_id == crowd.project
                    )
                )
            }
            project = connection.execute(
                select(Project.status, Project.spent_micros, Project.answers_total).where(Project.id == crowd.project)
            ).one()
            paid = connection.execute(
                select(func.sum(ProjectWorker.answers), func.sum(ProjectWorker.earned_micros)).where(
                    ProjectWorker.project_id == crowd.project
                )
            ).one()
    finally:
        engine.dispose()

    problems = []
    real = Counter(answer.item_id for answer in answers)
    if len(items) != N_ITEMS:
        problems.append(f"{len(items)} items stored, not {N_ITEMS}")
    if over := {item.id: real[item.id] for item in items if real[item.id] > OVERLAP}:
        problems.append(f"items with more than {OVERLAP} answers (item: answers): {over}")
    pairs = Counter((answer.item_id, answer.worker_id) for answer in answers)
    if twice := [pair for pair, count in pairs.items() if count > 1]:
        problems.append(f"(item, worker) pairs with two answers: {twice}")
    if drift := {item.id: (item.answer_count, real[item.id]) for item in items if item.answer_count != real[item.id]}:
        problems.append(f"answer_count differs from the stored answers (item: (column, real)): {drift}")

    by_assignment = {answer.assignment_id: answer for answer in answers}
    for answer in answers:
        assignment = assignments[answer.assignment_id]
        if (assignment.item_id, assignment.worker_id) != (answer.item_id, answer.worker_id):
            problems.append(f"answer {answer.id} does not match its assignment {assignment.id}")
        if assignment.status != "submitted":
            problems.append(f"answer {answer.id} belongs to assignment {assignment.id}, which is {assignment.status}")
    if lost := sorted({a.id for a in assignments.values() if a.status == "submitted"} - set(by_assignment)):
        problems.append(f"submitted assignments without their answer: {lost}")
    if wrongly := [a for a in crowd.log.skipped if assignments[a].status != "skipped" or a in by_assignment]:
        problems.append(f"skips answered 204 but not stored as skips: {wrongly}")

    outcomes: dict[int, list[Submit]] = defaultdict(list)
    for submit in crowd.log.submits:
        outcomes[submit.assignment_id].append(submit)
    for assignment_id, tries in outcomes.items():
        ok = [t for t in tries if t.status == 200]
        stored = by_assignment.get(assignment_id)
        if ok and stored is None:
            problems.append(f"submit of assignment {assignment_id} answered 200 but no answer is stored")
        elif ok and ({t.answer_id for t in ok} != {stored.id} or stored.worker_id != ok[0].worker_id):
            problems.append(f"submits of assignment {assignment_id} answered {tries}, stored answer {stored.id}")
        elif ok and sorted(t.duplicate for t in ok) != [False] * firsts(tries) + [True] * (len(ok) - firsts(tries)):
            problems.append(
                f"submits of assignment {assignment_id} not exactly one first and the rest duplicates: {tries}"
            )
        elif not ok and stored is not None and NO_ANSWER not in [t.status for t in tries]:
            problems.append(f"assignment {assignment_id}: every submit refused {[t.status for t in tries]}, yet stored")

    if crowd.stop.is_set():
        return problems  # not settled: the promises below hold only once the crowd is done and every lease over
    if len([tries for tries in outcomes.values() if len(tries) > 1]) <= 20:
        problems.append("the retries and double submits did not happen")
    if not crowd.log.skipped:
        problems.append("nobody skipped")
    if not any(a.status == "expired" for a in assignments.values()):
        problems.append("no lease ran out")
    if reserved := {item.id: item.reserved for item in items if item.reserved != 0}:
        problems.append(f"reservations left after every lease was settled (item: reserved): {reserved}")
    if open_leases := [a.id for a in assignments.values() if a.status == "leased"]:
        problems.append(f"leases still open after settling: {open_leases}")
    if short := {item.id: real[item.id] for item in items if real[item.id] != OVERLAP or not item.done}:
        problems.append(f"items without exactly {OVERLAP} answers, or not done (item: answers): {short}")
    if project.status != "finished":
        problems.append(f"the project is {project.status}, not finished")
    price_micros = round(PRICE * 1_000_000)
    money = (project.answers_total, project.spent_micros, *paid)
    if money != (len(answers), price_micros * len(answers), len(answers), price_micros * len(answers)):
        problems.append(
            f"counts and money (answers_total, spent, workers' answers, earned) {money} for {len(answers)} answers"
        )
    return problems


def firsts(tries: list[Submit]) -> int:
    """How many submits of one assignment may say ``duplicate: false``: one, unless the first got no answer."""
    ok = [t for t in tries if t.status == 200]
    return 0 if NO_ANSWER in [t.status for t in tries] and all(t.duplicate for t in ok) else 1


def stall_report(database_url: str) -> str:
    """On PostgreSQL, who holds what: a stuck server shows as transactions idle while others wait on them."""
    if not database_url.startswith("postgresql"):
        return ""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT state, wait_event_type, count(*) AS n, max(now() - xact_start) AS longest,"
                    " min(left(query, 90)) AS query FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " GROUP BY state, wait_event_type ORDER BY n DESC"
                )
            ).all()
    finally:
        engine.dispose()
    return "PostgreSQL sessions of the test database (state, waiting on, count, longest transaction, a query):\n" + (
        "\n".join(f"  {tuple(row)}" for row in rows)
    )


@contextmanager
def serving(database_url: str, log_dir: Path, count: int) -> Iterator[list[Server]]:
    """``count`` `crowdloop serve` processes on one database, started one after the other, all stopped after."""
    servers: list[Server] = []
    try:
        for _ in range(count):
            servers.append(start_server(database_url, log_dir))
        yield servers
    finally:
        for running in servers:
            running.stop()


@pytest.mark.slow
def test_fifty_workers_on_one_server(database_url, tmp_path):
    with serving(database_url, tmp_path, 1) as servers:
        check_invariants(run_crowd(servers))


@pytest.mark.slow
def test_fifty_workers_split_between_two_servers_on_one_database(database_url, tmp_path):
    with serving(database_url, tmp_path, 2) as servers:
        check_invariants(run_crowd(servers))


def _wait_for_lock_waits(database_url: str, count: int, *, required: bool = True) -> None:
    """Until ``count`` sessions wait on a lock (PostgreSQL); SQLite shows no waiters, so give them a moment.

    ``required=False``: the request may legitimately not wait (expiring leases are taken with SKIP
    LOCKED, so a second request passes over a lease another one holds); give it time, then go on.
    """
    if not database_url.startswith("postgresql"):
        time.sleep(1.0)
        return
    engine = make_engine(database_url)
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    try:
        for _ in range(300 if required else 40):
            with engine.connect() as connection:
                if connection.scalar(query) >= count:
                    return
            time.sleep(0.05)
        if required:
            raise AssertionError(f"{count} requests never came to wait on the held lock")
    finally:
        engine.dispose()


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except CrowdloopError as error:
        return error


@pytest.mark.slow
@pytest.mark.parametrize("race", ["answer", "skip", "walked away"])
def test_an_expiring_lease_is_settled_exactly_once(database_url, tmp_path, race):
    """A lease that has just run out is settled by two requests at once:

    answer, skip     its worker answers (skips) it while another worker's next task expires it;
    walked away      its worker is gone, and two other workers' next tasks expire it together.

    Exactly one of the two may settle it: the item's reservation comes back once, the assignment
    says what happened, and the item (overlap exactly 1) ends with exactly one answer. The test
    holds the item's row (on SQLite: the write lock), so that the first request, which has locked
    the assignment, is still running when the second one reads that assignment.
    """
    with serving(database_url, tmp_path, 1) as (server,):
        _, requester = server.user("requester", "requester")
        project = requester.create_project(
            name="race", labels=LABELS, min_overlap=1, max_overlap=1, lease_seconds=LEASE_SECONDS
        )["id"]
        raced, warm_up = {"data": {"text": "the raced sentence"}, "priority": 1.0}, {"data": {"text": "a warm-up"}}
        requester.import_items(project, [raced, warm_up])
        requester.start(project)
        late, other, third = (server.user(f"w{i}", "worker")[1] for i in range(3))
        task = late.next_task(project)
        assert task["data"] == raced["data"]
        # the other worker has worked here before, as in any real crowd: a first visit would insert their
        # standing row and so wait on the project row (its foreign key), which a submit holds
        warm = other.next_task(project)
        assert warm["data"] == warm_up["data"]
        other.submit(warm["assignment_id"], "b")
        item_id = item_id_of(requester, project, task)  # after the warm-up, which must come before the expiry
        expires = datetime.fromisoformat(task["expires_at"].replace("Z", "+00:00"))
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
        first_call: Callable[[], Any] = {
            "answer": lambda: late.submit(task["assignment_id"], "a"),
            "skip": lambda: late.skip(task["assignment_id"]),
            "walked away": lambda: other.next_task(project),
        }[race]
        second_worker = third if race == "walked away" else other
        engine = make_engine(server.database_url)
        try:
            with engine.connect() as blocker, ThreadPoolExecutor(max_workers=2) as pool:
                blocker.execute(select(Item.id).where(Item.id == item_id).with_for_update())
                first = pool.submit(_outcome, first_call)
                # a late skip is refused by the clock before it touches the item, so it need not wait
                _wait_for_lock_waits(server.database_url, 1, required=race != "skip")
                second = pool.submit(_outcome, lambda: second_worker.next_task(project))
                _wait_for_lock_waits(server.database_url, 2, required=False)
                blocker.rollback()
                settled, expiring = first.result(), second.result()
            assert not isinstance(expiring, CrowdloopError), expiring
            if race == "skip":  # refused, as a late answer is (by the clock, or by the row the other request expired)
                assert type(settled).__name__ == "ConflictError" and "expired" in str(settled), settled
            if race == "walked away":
                leases = [(other, settled), (third, expiring)]
            else:  # the two others take what is left, both holding a lease at once
                assert not isinstance(settled, CrowdloopError) or type(settled).__name__ == "ConflictError", settled
                leases = [(other, expiring), (third, third.next_task(project))]
            for worker, current in leases:
                while (current := current or worker.next_task(project)) is not None:
                    worker.submit(current["assignment_id"], "b")
                    current = None
            with engine.connect() as connection:
                item = connection.execute(select(Item.answer_count, Item.reserved).where(Item.id == item_id)).one()
                stored = connection.execute(select(Answer.assignment_id).where(Answer.item_id == item_id)).all()
                status = connection.scalar(select(Assignment.status).where(Assignment.id == task["assignment_id"]))
        finally:
            engine.dispose()
    won = race != "walked away" and not isinstance(settled, CrowdloopError)
    expected_status = {"answer": "submitted", "skip": "skipped"}[race] if won else "expired"
    assert (status, item.reserved, item.answer_count, len(stored)) == (expected_status, 0, 1, 1), (
        f"{race}: the first request was answered {settled!r}; the raced assignment is now {status}, and the "
        f"item has {len(stored)} answers (max overlap 1, answer_count {item.answer_count}), reserved={item.reserved}"
    )
