"""Leases, dynamic overlap, background aggregation, webhooks and the CLI, over a real server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from crowdloop.crowd.webhooks import verify
from support import item_id_of


def _project(requester, **overrides):
    spec = {"name": "loop", "labels": ["neg", "pos"], "min_overlap": 1, "max_overlap": 3}
    return requester.create_project(**(spec | overrides))


def test_expired_lease_returns_the_item_to_the_pool(server):
    _, requester = server.user("req", "requester")
    project = _project(requester, max_overlap=1, lease_seconds=5)
    requester.import_items(project["id"], [{"data": {"text": "only item"}}])
    requester.start(project["id"])
    _, slow = server.user("slow", "worker")
    _, fast = server.user("fast", "worker")
    task = slow.next_task(project["id"])
    assert fast.next_task(project["id"]) is None  # overlap 1, and it is leased
    time.sleep(6)
    again = fast.next_task(project["id"])
    assert again is not None and again["data"] == task["data"]  # the same item, leased anew
    fast.submit(again["assignment_id"], "pos")
    with pytest.raises(Exception, match="expired"):
        slow.submit(task["assignment_id"], "neg")
    assert requester.status(project["id"])["answers"] == 1


def test_dynamic_overlap_stops_early_for_reliable_workers(server):
    _, requester = server.user("req", "requester")
    project = _project(requester, min_overlap=1, max_overlap=5, confidence_target=0.9, gold_share=0.3)
    requester.import_items(
        project["id"],
        [{"data": {"text": f"item {i}"}} for i in range(20)]
        + [{"data": {"text": f"gold {i}"}, "gold_label": "pos"} for i in range(6)],
    )
    requester.start(project["id"])
    workers = [server.user(f"w{i}", "worker")[1] for i in range(5)]
    for _ in range(200):
        progressed = False
        for worker in workers:  # round robin: everyone answers every item "pos", right on gold
            task = worker.next_task(project["id"])
            if task is not None:
                worker.submit(task["assignment_id"], "pos")
                progressed = True
        if not progressed:
            break
    items = [i for i in requester.items(project["id"]) if not i["is_gold"]]
    assert all(i["done"] for i in items)
    mean_answers = sum(i["answers"] for i in items) / len(items)
    assert mean_answers < 3.0, mean_answers  # fixed overlap would have taken 5 each
    assert all(i["confidence"] >= 0.9 or i["answers"] == 5 for i in items)


def test_a_lone_answer_of_a_rare_class_does_not_settle_an_item(server):
    """Once aggregation has seen that "pos" is rare (10 items in 100), one "pos" from a worker who
    errs now and then leaves the item open, while one "neg" from the same worker settles it; a
    uniform prior would have settled both alike."""
    _, requester = server.user("req", "requester")
    # every worker answers every seed item, so the third worker's ten errors are on record
    # whenever background aggregation happens to run (with min_overlap 1 its timing decided
    # which items were still open when the third worker came, and so what their skill was)
    project = _project(requester, min_overlap=3, max_overlap=3, confidence_target=0.9)
    requester.import_items(project["id"], [{"data": {"text": f"seed {i}"}} for i in range(100)])
    requester.start(project["id"])
    workers = [server.user(f"w{i}", "worker")[1] for i in range(3)]
    for number, worker in enumerate(workers):
        while (task := worker.next_task(project["id"])) is not None:
            seed = int(task["data"]["text"].split()[1])
            label = "pos" if seed < 10 else "neg"
            if number == 2 and 20 <= seed < 30:  # the third worker errs on ten items
                label = "pos"
            worker.submit(task["assignment_id"], label)
    requester.aggregate(project["id"])
    requester.update_project(project["id"], min_overlap=1)
    requester.import_items(project["id"], [{"data": {"text": f"new {i}"}} for i in range(2)])
    if requester.status(project["id"])["status"] == "finished":  # every seed item was settled
        requester.start(project["id"])
    erring = workers[2]
    for label in ("pos", "neg"):
        task = erring.next_task(project["id"])
        assert task is not None and task["data"]["text"].startswith("new")
        erring.submit(task["assignment_id"], label)
    new = [item for item in requester.items(project["id"], offset=100) if item["data"]["text"].startswith("new")]
    settled = sorted((item["done"], item["confidence"]) for item in new)
    assert [done for done, _ in settled] == [False, True], settled
    assert settled[0][1] < 0.9 <= settled[1][1]


def test_aggregation_runs_in_the_background_as_answers_arrive(server):
    _, requester = server.user("req", "requester")
    project = _project(requester, max_overlap=1)
    requester.import_items(project["id"], [{"data": {"text": f"t{i}"}} for i in range(60)])
    requester.start(project["id"])
    _, worker = server.user("w", "worker")
    while (task := worker.next_task(project["id"])) is not None:
        worker.submit(task["assignment_id"], "neg")
    deadline = time.monotonic() + 120  # a child process that imports pandas first: 20 s ran out under load
    while requester.status(project["id"])["labels"] < 50 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert requester.status(project["id"])["labels"] >= 50  # nobody called aggregate


def _receiver_class() -> type[BaseHTTPRequestHandler]:
    """A fresh handler class per test, so recorded requests never leak between runs."""

    class Receiver(_Receiver):
        received: list[tuple[dict[str, str], bytes]] = []  # noqa: RUF012 - per-class on purpose

    return Receiver


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhooks_are_signed_and_delivered(server):
    handler = _receiver_class()
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        _, requester = server.user("req", "requester")
        project = _project(requester, max_overlap=1, rules={"min_gold_accuracy": 0.9, "min_gold_answers": 1},
                           gold_share=0.5)  # fmt: skip
        hook = requester.add_webhook(project["id"], f"http://127.0.0.1:{receiver.server_port}/hook")
        requester.import_items(project["id"], [{"data": {"text": "a"}}, {"data": {"text": "g"}, "gold_label": "pos"}])
        requester.start(project["id"])
        _, worker = server.user("w", "worker")
        with pytest.raises(Exception, match="banned"):
            for _ in range(3):
                task = worker.next_task(project["id"])
                worker.submit(task["assignment_id"], "neg")  # wrong on gold: banned
        _, good = server.user("good", "worker")
        while (task := good.next_task(project["id"])) is not None:
            good.submit(task["assignment_id"], "pos")
        deadline = time.monotonic() + 15
        while len({json.loads(b)["event"] for _, b in handler.received}) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        events = {json.loads(body)["event"] for _, body in handler.received}
        assert {"worker.banned", "item.labeled", "project.finished"} <= events
        headers, body = handler.received[0]
        assert verify(hook["secret"], body, headers["X-Crowdloop-Timestamp"], headers["X-Crowdloop-Signature"])
        # the dispatcher records a delivery after the receiver answered: under load, a moment later
        while not _all_delivered(log := requester.deliveries(project["id"])) and time.monotonic() < deadline + 15:
            time.sleep(0.2)
        assert _all_delivered(log), log
    finally:
        receiver.shutdown()


def _all_delivered(log: list[dict]) -> bool:
    return bool(log) and all(delivery["status"] == "delivered" for delivery in log)


def test_requester_cli_over_the_api(server, tmp_path):
    created, _ = server.user("cli", "requester")
    env_args = ["--url", server.url, "--token", str(created["token"])]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "crowdloop", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)

    made = run("projects", "create", "--name", "cli project", "--labels", "a,b", "--overlap", "1-1", *env_args)
    assert made.returncode == 0, made.stderr
    project_id = next(line for line in made.stdout.splitlines() if "│ id " in line).split("│")[2].strip()
    scripted = run("projects", "create", "--name", "scripted", "--labels", "a,b", "--json", *env_args)
    assert scripted.returncode == 0, scripted.stderr
    second = str(json.loads(scripted.stdout)["id"])  # stdout holds the JSON object and nothing else
    listed = json.loads(run("projects", "list", "--json", *env_args).stdout)
    assert sorted((str(p["id"]), p["name"]) for p in listed) == sorted(
        [(project_id, "cli project"), (second, "scripted")]
    )
    items = tmp_path / "items.csv"
    pd.DataFrame({"text": ["one", "two", "two", ""]}).to_csv(items, index=False)
    imported = run("items", "import", project_id, str(items), *env_args)
    assert imported.returncode == 0, imported.stderr
    assert "created" in imported.stdout and "row 4: empty item" in imported.stderr
    near = tmp_path / "near.csv"
    near.write_text(
        "id,text\nx1,The quick brown fox jumps over the lazy dog\nx2,The quick brown fox jumps over the lazy dog!\n"
    )
    named = run("items", "import", second, str(near), *env_args)
    assert "row 2 (id x2) is like row 1 (id x1) (similarity 0." in named.stderr, named.stderr
    again = run("items", "import", second, str(items), "--json", *env_args)
    assert again.returncode == 0 and json.loads(again.stdout)["rejected"][0]["reason"].startswith("empty item"), (
        again.stderr
    )
    started = run("projects", "start", project_id, *env_args)
    assert started.returncode == 0 and "warning" not in started.stderr, started.stderr
    empty = run("projects", "create", "--name", "empty", "--labels", "a,b", "--json", *env_args)
    idle = run("projects", "start", str(json.loads(empty.stdout)["id"]), *env_args)
    assert idle.returncode == 0 and "warning: the project has no items: import items" in idle.stderr, idle.stderr
    status = run("projects", "status", project_id, *env_args)
    assert status.returncode == 0 and "items" in status.stdout
    as_json = json.loads(run("projects", "status", project_id, "--json", *env_args).stdout)
    assert as_json["status"] == "active" and as_json["items"] == json.loads(again.stdout)["created"]
    out = tmp_path / "labels.csv"
    out.write_text("an older file\n")  # replaced, as aggregate --out replaces its file
    exported = run("export", project_id, "--what", "answers", "-o", str(out), *env_args)
    assert exported.returncode == 0, exported.stderr
    assert out.read_text().startswith("answer_id,item_id")
    by_suffix = run("export", project_id, "--what", "answers", "-o", "answers.parquet", *env_args)
    assert by_suffix.returncode == 0 and (tmp_path / "answers.parquet").read_bytes()[:4] == b"PAR1", by_suffix.stderr
    piped = run("export", project_id, "--what", "label-studio", "-o", "-", *env_args)  # stdout, as aggregate -o -
    assert piped.returncode == 0 and not (tmp_path / "-").exists(), piped.stderr
    assert {task["data"]["text"] for task in json.loads(piped.stdout)} == {"one", "two"}
    denied = run("projects", "status", project_id, "--url", server.url, "--token", "cl_wrong")
    assert denied.returncode == 4 and "invalid or revoked token" in denied.stderr


def test_gold_cli_over_the_api(server):
    """The requester's gold commands: the report, a correction (``--explanation ""`` clears the
    explanation), and taking an item out of gold, refused the second time with one clear line."""
    created, owner = server.user("cli-gold", "requester")
    env_args = ["--url", server.url, "--token", str(created["token"])]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "crowdloop", "items", *args, *env_args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    project = owner.create_project(name="cli gold", labels=["a", "b"], gold_share=0.5)["id"]
    owner.import_items(project, [{"data": {"text": "one"}}, {"data": {"text": "gold"}, "gold_label": "a",
                                                              "gold_explanation": "it says a"}])  # fmt: skip
    owner.start(project)
    _, worker = server.user("cli-gold-worker", "worker")
    task = worker.next_task(project)  # a newcomer's first task is gold
    worker.submit(task["assignment_id"], "b")
    gold = str(item_id_of(owner, project, task))
    report = run("gold", str(project))
    assert report.returncode == 0 and gold in report.stdout and '{"b": 1}' in report.stdout, report
    corrected = run("correct-gold", str(project), gold, "b", "--explanation", "")
    assert corrected.returncode == 0, corrected.stderr
    stored = next(item for item in owner.items(project) if item["id"] == int(gold))
    assert stored["gold_label"] == "b" and "gold_accuracy" in corrected.stdout
    removed = run("remove-gold", str(project), gold)
    assert removed.returncode == 0 and "previous_label" in removed.stdout, removed.stderr
    assert not next(item for item in owner.items(project) if item["id"] == int(gold))["is_gold"]
    again = run("remove-gold", str(project), gold)
    assert again.returncode == 7 and f"item {gold} is not gold" in again.stderr, again


def test_admin_cli_creates_users_and_tokens_on_the_database(server):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "crowdloop", "admin", *args, "--database-url", server.database_url]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    name = f"ops-{time.monotonic_ns()}"
    created = run("create-user", name, "--role", "requester")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert server.client(token).me()["role"] == "requester"
    second = run("token", name)
    assert second.returncode == 0 and server.client(second.stdout.strip()).me()["name"] == name
    assert run("create-user", name, "--role", "worker").returncode == 7  # conflict: the name is taken
    assert run("token", "nobody-by-that-name").returncode == 6


def test_rating_projects_need_a_numeric_scale(server):
    _, requester = server.user("req", "requester")
    with pytest.raises(Exception, match="numbers of its scale"):
        requester.create_project(name="stars", task_type="rating", labels=["bad", "good"])
    project = requester.create_project(name="stars", task_type="rating", labels=["1", "2", "3", "4", "5"])
    assert project["task_type"] == "rating"
