"""A requester and a crowd, end to end over a real `crowdloop serve` process, on SQLite and
PostgreSQL: import with cleaning, assignment with overlap and gold, dynamic overlap, quality
rules, pay, aggregation and exports."""

from __future__ import annotations

import http.client
import io
import json
import time

import pandas as pd
import pytest

from crowdloop.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UnknownLabelError,
)
from crowdloop.learning import FeatureSpec
from support import item_id_of


def _project(requester, **overrides):
    spec = {"name": "rte", "labels": ["0", "1"], "min_overlap": 1, "max_overlap": 3, "price": 0.02}
    return requester.create_project(**(spec | overrides))


def test_health_and_openapi(server):
    assert server.admin.health()["status"] == "ok"
    import httpx

    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/api/v1/projects/{project_id}/tasks/next" in spec["paths"]
    # the schema tells the truth: a bearer token, and errors as {error, detail} (422 included)
    assert (
        spec["security"] == [{"bearer": []}] and spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    )
    assert spec["paths"]["/api/v1/health"]["get"]["security"] == []  # health needs no token
    train = spec["paths"]["/api/v1/projects/{project_id}/models/train"]["post"]["responses"]
    assert train["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
    assert {"401", "403", "404"} <= set(train) and "HTTPValidationError" not in spec["components"]["schemas"]
    artifact = spec["paths"]["/api/v1/projects/{project_id}/models/{ref}/artifact"]["get"]["responses"]["200"]
    assert list(artifact["content"]) == ["application/gzip"]


def test_an_idle_connection_outlives_the_clients_keep_alive(server):
    """The server keeps an idle connection longer than the SDK's pool does (5 s), so a request is
    never sent on a connection the server is closing at that very moment."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", "/api/v1/health")
        assert connection.getresponse().read() and connection.sock is not None
        opened = connection.sock
        time.sleep(5.5)  # idle past the client's keep-alive, and past uvicorn's default of 5 s
        connection.request("GET", "/api/v1/health")  # a closed socket fails here (RemoteDisconnected)
        assert connection.getresponse().status == 200 and connection.sock is opened
    finally:
        connection.close()


def test_import_cleans_validates_and_is_idempotent(server, tmp_path):
    _, requester = server.user("req", "requester")
    project = _project(requester)
    csv = tmp_path / "items.csv"
    csv.write_text(
        "id,text,gold_label,gold_explanation\n"
        "a1,The cat  sat on\u00a0the mat,,\n"
        "a2,The cat sat on the mat,,\n"  # same after whitespace normalisation: merged
        "a3,Cafe\u0301 au lait,,\n"
        "a4,Caf\u00e9 au lait,,\n"  # same after NFC: merged
        "a5,,,\n"  # empty: rejected
        "g1,Is this gold?,1,Because it is.\n"
        "g2,Bad gold,7,\n"  # label outside the label set: rejected
        "a6,The quick brown fox jumps over the lazy dog near the river bank today,,\n"
        "a7,The quick brown fox jumps over the lazy dog near the river bank today!,,\n",
        encoding="utf-8",
    )
    report = requester.upload_items(project["id"], csv)
    assert report["received"] == 9
    assert report["created"] == 5
    assert report["duplicates"] == 2
    assert [(r["row"], r["reason"].split(":")[0]) for r in report["rejected"]] == [
        (5, "empty item"),
        (7, "gold label '7' is not one of the project's labels ['0', '1']"),
    ]
    [near] = report["near_duplicates"]  # a7 is a near copy of a6, named as the file names them
    assert (near["row"], near["external_id"], near["similar_row"], near["similar_external_id"]) == (9, "a7", 8, "a6")
    again = requester.upload_items(project["id"], csv)
    assert again["created"] == 0 and again["duplicates"] == 7
    items = requester.items(project["id"])
    assert len(items) == 5
    assert {i["data"]["text"] for i in items} >= {"The cat sat on the mat", "Café au lait"}
    # a crowd data set's items.csv (the bundled ones too) names the id column "task": an id, not a field
    tasks = tmp_path / "tasks.csv"
    tasks.write_text("task,text\nt1,a sentence of its own\n", encoding="utf-8")
    assert requester.upload_items(project["id"], tasks)["created"] == 1
    added = next(i for i in requester.items(project["id"], limit=1000) if i["external_id"] == "t1")
    assert added["data"] == {"text": "a sentence of its own"}
    gold = [i for i in items if i["is_gold"]]
    assert gold and gold[0]["gold_label"] == "1"


def test_workers_label_with_overlap_gold_feedback_and_pay(server):
    _, requester = server.user("req", "requester")
    project = _project(requester, gold_share=0.25, budget=10.0)
    rows = [{"data": {"text": f"item {i}"}} for i in range(6)]
    rows.append({"data": {"text": "gold item"}, "gold_label": "1", "gold_explanation": "it says so"})
    requester.import_items(project["id"], rows)
    requester.start(project["id"])
    workers = [server.user(f"w{i}", "worker")[1] for i in range(4)]
    answered: dict[int, set[int]] = {}
    feedback_seen = []
    for worker in workers:
        while (task := worker.next_task(project["id"])) is not None:
            assert "gold_label" not in task and "is_gold" not in task
            label = "0" if task["data"]["text"] == "gold item" else "1"
            result = worker.submit(task["assignment_id"], label, seconds=4.0)
            if result["feedback"]:
                feedback_seen.append(result["feedback"])
            answered.setdefault(item_id_of(requester, project["id"], task), set()).add(id(worker))
    assert feedback_seen and feedback_seen[0] == {"correct": False, "expected": "1", "explanation": "it says so"}
    status = requester.status(project["id"])
    assert status["items_done"] == 6  # every regular item stopped by dynamic overlap or max overlap
    listed = {i["id"]: i for i in requester.items(project["id"])}
    for item_id, who in answered.items():
        if not listed[item_id]["is_gold"]:
            assert 1 <= len(who) <= 3
    assert status["spent"] == pytest.approx(0.02 * status["answers"])
    table = requester.workers(project["id"])
    assert sum(row["answers"] for row in table) == status["answers"]
    assert all(row["gold_accuracy"] == 0.0 for row in table if row["gold_answers"])
    assert requester.project(project["id"])["status"] == "finished"


def test_submit_is_idempotent_and_checked(server):
    _, requester = server.user("req", "requester")
    project = _project(requester)
    requester.import_items(project["id"], [{"data": {"text": "one"}}, {"data": {"text": "two"}}])
    requester.start(project["id"])
    _, worker = server.user("w", "worker")
    _, other = server.user("w", "worker")
    task = worker.next_task(project["id"])
    assert worker.next_task(project["id"])["assignment_id"] == task["assignment_id"]  # same lease back
    with pytest.raises(UnknownLabelError, match="'2' is not one of"):
        worker.submit(task["assignment_id"], "2")
    with pytest.raises(NotFoundError):
        other.submit(task["assignment_id"], "1")  # not theirs: looks like it does not exist
    first = worker.submit(task["assignment_id"], "1")
    second = worker.submit(task["assignment_id"], "1")
    assert second["duplicate"] and second["answer_id"] == first["answer_id"]
    assert requester.status(project["id"])["answers"] == 1
    with pytest.raises(InvalidInputError, match="label"):
        worker._call("POST", f"/assignments/{task['assignment_id']}/answer", json={})


def test_quality_rules_ban_with_reason_and_unban(server):
    _, requester = server.user("req", "requester")
    rules = {"min_gold_accuracy": 0.6, "min_gold_answers": 2, "max_skips_in_row": 2}
    project = _project(requester, gold_share=0.5, rules=rules, max_overlap=5)
    rows = [{"data": {"text": f"q{i}"}} for i in range(10)]
    rows += [{"data": {"text": f"gold {i}"}, "gold_label": "1"} for i in range(4)]
    requester.import_items(project["id"], rows)
    requester.start(project["id"])
    created, cheat = server.user("cheat", "worker")
    with pytest.raises(PermissionDeniedError, match="banned"):
        for _ in range(20):
            task = cheat.next_task(project["id"])
            cheat.submit(task["assignment_id"], "0")  # always wrong on gold
    bans = requester.bans(project["id"])
    assert bans[-1]["action"] == "ban" and "gold accuracy 0.00 below 0.6" in bans[-1]["reason"]
    requester.unban(project["id"], created["id"], "second chance")
    assert requester.bans(project["id"])[-1] == {**requester.bans(project["id"])[-1], "action": "unban"}
    assert cheat.next_task(project["id"]) is not None
    made, skipper = server.user("skipper", "worker")
    for _ in range(2):
        skipper.skip(skipper.next_task(project["id"])["assignment_id"])
    with pytest.raises(PermissionDeniedError, match="banned"):
        skipper.next_task(project["id"])
    assert requester.bans(project["id"])[-1]["reason"] == "skipped 2 tasks in a row; the project allows 2"
    row = next(w for w in requester.workers(project["id"]) if w["worker_id"] == made["id"])
    assert row["banned"]  # the worker table shows it, and an unban lifts it
    requester.unban(project["id"], made["id"], "go on")
    assert skipper.next_task(project["id"]) is not None


def test_budget_stops_handing_out_work(server):
    _, requester = server.user("req", "requester")
    project = _project(requester, price=1.0, budget=2.0)
    requester.import_items(project["id"], [{"data": {"text": f"t{i}"}} for i in range(5)])
    requester.start(project["id"])
    _, worker = server.user("w", "worker")
    for _ in range(2):
        task = worker.next_task(project["id"])
        worker.submit(task["assignment_id"], "1")
    assert worker.next_task(project["id"]) is None
    assert requester.status(project["id"])["spent"] == 2.0


def test_visibility_between_projects_and_roles(server):
    _, alice = server.user("alice", "requester")
    _, bob = server.user("bob", "requester")
    project = _project(alice)
    with pytest.raises(NotFoundError):
        bob.status(project["id"])
    with pytest.raises(NotFoundError):
        bob.import_items(project["id"], [{"data": {"text": "x"}}])
    _, worker = server.user("w", "worker")
    assert all(p["id"] != project["id"] for p in worker.projects())  # a draft is invisible to workers
    alice.start(project["id"])
    seen = next(p for p in worker.projects() if p["id"] == project["id"])
    assert "budget" not in seen or seen["budget"] is None
    with pytest.raises(PermissionDeniedError):
        worker.create_project(name="x", labels=["a", "b"])


def test_exports_stream_all_formats_and_label_studio_round_trip(server):
    _, requester = server.user("req", "requester")
    project = _project(requester, max_overlap=2)
    requester.import_items(
        project["id"], [{"data": {"text": f"sentence {i}"}, "external_id": f"e{i}"} for i in range(8)]
    )
    requester.start(project["id"])
    for i in range(2):
        _, worker = server.user(f"w{i}", "worker")
        while (task := worker.next_task(project["id"])) is not None:
            worker.submit(task["assignment_id"], "1", seconds=3)
    assert requester.aggregate(project["id"])["labels"] == 8
    labels = pd.read_csv(io.BytesIO(requester.export(project["id"], "labels", "csv")))
    assert len(labels) == 8 and set(labels["label"].astype(str)) == {"1"}
    jsonl = [json.loads(line) for line in requester.export(project["id"], "answers", "jsonl").splitlines()]
    assert len(jsonl) == 16 and {row["label"] for row in jsonl} == {"1"}
    parquet = pd.read_parquet(io.BytesIO(requester.export(project["id"], "labels", "parquet")))
    assert sorted(parquet["external_id"]) == [f"e{i}" for i in range(8)]
    studio = json.loads(requester.export(project["id"], "label-studio"))
    assert len(studio) == 8 and len(studio[0]["annotations"]) == 2
    payouts = requester.payouts(project["id"])
    assert sum(p["answers"] for p in payouts) == 16
    with pytest.raises(InvalidInputError, match="format"):
        requester._call("GET", f"/projects/{project['id']}/payouts", params={"format": "xml"})  # it answered JSON
    # Label Studio tasks import back into a new project, with the requester's ids; the crowd's answers
    # they carry are not gold (every item the two workers agreed on became gold), a reviewer's are
    other = _project(requester, name="moved")
    path = server.log.parent / "ls.json"
    studio[0]["annotations"].append({"completed_by": 1, "result": studio[0]["annotations"][0]["result"]})
    path.write_text(json.dumps(studio))
    report = requester.upload_items(other["id"], path)
    assert report["created"] == 8
    moved = requester.items(other["id"])
    assert [(i["external_id"], i["gold_label"]) for i in moved if i["is_gold"]] == [("e0", "1")]
    assert sorted(i["external_id"] for i in moved) == [f"e{i}" for i in range(8)]  # they were the item ids


def test_oversized_upload_is_refused_whole(server, tmp_path, monkeypatch):
    _, requester = server.user("req", "requester")
    project = _project(requester)
    big = tmp_path / "big.csv"
    with big.open("w") as handle:
        handle.write("text\n")
        line = "x" * 1000 + "\n"
        for _ in range(110_000):  # about 110 MB, over the default 100 MB limit
            handle.write(line)
    with pytest.raises(PayloadTooLargeError, match="over the 100 MB limit"):
        requester.upload_items(project["id"], big)
    assert requester.items(project["id"]) == []


def test_open_leases_count_against_the_budget(server):
    _, requester = server.user("req", "requester")
    project = _project(requester, price=1.0, budget=2.0, max_overlap=1)
    requester.import_items(project["id"], [{"data": {"text": f"lease {i}"}} for i in range(5)])
    requester.start(project["id"])
    leased = [server.user(f"w{i}", "worker")[1] for i in range(3)]
    tasks = [worker.next_task(project["id"]) for worker in leased]
    assert tasks[0] is not None and tasks[1] is not None
    assert tasks[2] is None  # two open leases already spend the whole budget when answered
    for worker, task in zip(leased[:2], tasks[:2], strict=True):
        worker.submit(task["assignment_id"], "1")
    assert requester.status(project["id"])["spent"] == 2.0


def test_a_csv_header_with_blanks_capitals_or_a_trailing_comma_imports_as_meant(server, tmp_path):
    """A gold_label column written " gold_label" (after ", ") was a data field, so workers saw the
    gold answer, and a trailing comma shifted every value one column left. Values stay text as
    written; training reads a column of plain numbers as numeric."""
    _, requester = server.user("req", "requester")
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("ID, Text, Gold_Label, price, zip\n1, is it a cat, yes, 12.5, 007\n2, a dog, , 3, 0101\n")
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("id,text,gold-label\n3,hello,no,\n4,world,,\n")
    items = {}
    for path in (spaced, trailing):  # a project each: their fields differ
        project = _project(requester, labels=["no", "yes"])
        report = requester.upload_items(project["id"], path)
        assert report["created"] == 2 and report["rejected"] == [], report
        items |= {item["external_id"]: item for item in requester.items(project["id"])}
    assert items["1"]["data"] == {"Text": "is it a cat", "price": "12.5", "zip": "007"}
    assert items["1"]["is_gold"] and items["1"]["gold_label"] == "yes"
    assert items["2"]["data"] == {"Text": "a dog", "price": "3", "zip": "0101"} and not items["2"]["is_gold"]
    spec = FeatureSpec.infer([item["data"] for item in items.values() if "Text" in item["data"]], id_column="id")
    assert spec.numeric == ("price",) and "zip" not in spec.numeric  # "12.5" and "3" are numbers; "007" is not
    assert items["3"]["data"] == {"text": "hello"} and items["3"]["gold_label"] == "no"
    assert items["4"]["data"] == {"text": "world"} and not items["4"]["is_gold"]


def test_a_csv_row_with_values_past_the_header_is_refused_not_cut(server, tmp_path):
    """An unquoted comma in a value (``Sony TV, 40 inch, black``) made more values than columns, and
    the item kept ``Sony TV`` without a word; a long value is read whole."""
    from crowdloop.errors import InvalidInputError

    _, requester = server.user("req", "requester")
    project = _project(requester)
    requester.import_items(project["id"], [{"data": {"text": "already here"}}])
    unquoted = tmp_path / "unquoted.csv"
    unquoted.write_text("id,text\n1,Sony TV, 40 inch, black\n2,a radio\n")
    with pytest.raises(
        InvalidInputError,
        match=r"line 2 has 4 values but the header has 2 columns, so \['40 inch', 'black'\] would be lost",
    ):
        requester.upload_items(project["id"], unquoted)
    assert [item["data"]["text"] for item in requester.items(project["id"])] == ["already here"]  # nothing stored
    mac = tmp_path / "mac.csv"
    mac.write_bytes(b"id,text\rm1,a line ended by CR only\rm2,as classic Mac files are\r")
    assert requester.upload_items(project["id"], mac)["created"] == 2  # read as pandas reads it, not refused
    long = tmp_path / "long.csv"
    long.write_text("text\n" + "word " * 40_000 + "\n")  # 200 kB: past the csv module's default field limit
    assert requester.upload_items(project["id"], long)["created"] == 1


def test_an_upload_is_checked_for_its_caller_before_it_is_read(server, tmp_path):
    """A malformed file sent without a token was parsed first (on the event loop, stalling every
    other request) and answered with the parser's complaint."""
    import httpx

    _, requester = server.user("req", "requester")
    project = _project(requester)
    broken = b'text\n"an unclosed quote\n'
    anonymous = httpx.post(f"{server.url}/api/v1/projects/{project['id']}/items/upload",
                           files={"file": ("broken.csv", broken)})  # fmt: skip
    assert anonymous.status_code == 401, anonymous.text
    _, stranger = server.user("other", "requester")
    path = tmp_path / "broken.csv"
    path.write_bytes(broken)
    with pytest.raises(NotFoundError):
        stranger.upload_items(project["id"], path)  # another's project: not found, whatever the file


def test_a_bonus_counts_the_open_leases_against_the_budget(server):
    _, requester = server.user("req", "requester")
    project = _project(requester, price=0.05, budget=0.10, max_overlap=1)
    requester.import_items(project["id"], [{"data": {"text": f"bonus {i}"}} for i in range(3)])
    requester.start(project["id"])
    workers = [server.user(f"w{i}", "worker") for i in range(2)]
    tasks = [worker.next_task(project["id"]) for _, worker in workers]
    assert all(task is not None for task in tasks)  # two leases: the whole budget once answered
    with pytest.raises(InvalidInputError, match="budget"):
        requester.bonus(project["id"], int(workers[0][0]["id"]), 0.10, "well done")
    for (_, worker), task in zip(workers, tasks, strict=True):
        worker.submit(task["assignment_id"], "1")
    assert requester.status(project["id"])["spent"] == pytest.approx(0.10)


def test_a_user_name_is_checked_as_it_is_stored(server):
    """A name with a trailing blank ("req1 ") passed the uniqueness check and then collided with "req1" in the database: a 500."""
    server.admin.create_user("req1", "requester")
    with pytest.raises(ConflictError, match="already exists"):
        server.admin.create_user("req1 ", "requester")
    with pytest.raises(InvalidInputError, match="at most 200"):
        server.admin.create_user("x" * 201, "requester")


def test_item_pages_refuse_negative_offsets_and_limits(server):
    """On PostgreSQL a negative offset was a 500; on SQLite a negative limit listed every item."""
    import httpx

    _, requester = server.user("req", "requester")
    project = _project(requester)
    headers = {"Authorization": f"Bearer {requester._http.headers['Authorization'].split()[-1]}"}
    for query in ("offset=-1", "limit=-5", "limit=0", "limit=1001"):
        answer = httpx.get(f"{server.url}/api/v1/projects/{project['id']}/items?{query}", headers=headers)
        assert answer.status_code == 422, (query, answer.text)


def test_a_page_over_the_limit_is_refused_and_the_sdk_reads_every_item(server):
    """A limit over 1000 was cut to 1000 without a word, so paging with offset += limit skipped items."""
    _, requester = server.user("req", "requester")
    project = _project(requester)
    requester.import_items(project["id"], [{"data": {"text": f"item {i}"}} for i in range(1005)])
    with pytest.raises(InvalidInputError, match="limit"):
        requester.items(project["id"], limit=2000)
    assert len(requester.items(project["id"], limit=1000)) == 1000
    ids = [item["id"] for item in requester.iter_items(project["id"])]
    assert len(ids) == 1005 and ids == sorted(set(ids))
    assert [item["id"] for item in requester.iter_items(project["id"], page_size=400)] == ids


def test_rows_the_database_cannot_store_are_rejected_one_by_one(server, tmp_path):
    """On PostgreSQL each of these failed the whole import with a 500; SQLite stored NaN as null."""
    _, requester = server.user("req", "requester")
    project = _project(requester)
    lines = ['{"data": {"text": NaN}}', '{"data": {"text": "x", "score": Infinity}}',
             '{"data": {"text": "long id"}, "external_id": "' + "i" * 201 + '"}',
             '{"data": {"text": "nul id"}, "external_id": "a\\u0000b"}', '{"data": {"text": "half \\ud800 a pair"}}',
             '{"data": {"text": "a fine row"}}']  # fmt: skip
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = requester.upload_items(project["id"], path)
    assert report["created"] == 1, report
    reasons = {row["row"]: row["reason"] for row in report["rejected"]}
    assert sorted(reasons) == [1, 2, 3, 4, 5], reasons  # rows counted from 1
    assert "nan, which JSON cannot store" in reasons[1] and "inf, which JSON cannot store" in reasons[2]
    assert "200" in reasons[3] and "NUL" in reasons[4] and "not valid Unicode" in reasons[5]
    assert [item["data"] for item in requester.items(project["id"])] == [{"text": "a fine row"}]


def test_a_gold_file_over_items_already_imported_makes_them_gold(server, tmp_path):
    """Importing gold labels for items the project had was reported as duplicates and did nothing;
    two rows of one item with different gold labels kept the first without a word."""
    _, requester = server.user("req", "requester")
    project = _project(requester, labels=["no", "yes"])
    requester.import_items(project["id"], [{"data": {"text": text}} for text in ("a cat", "a dog", "a cow")])
    gold = tmp_path / "gold.csv"
    gold.write_text("text,gold_label\na cat,yes\na dog,no\na cow,yes\na cow,no\na new one,yes\n")
    report = requester.upload_items(project["id"], gold)
    assert (report["created"], report["gold_added"], report["duplicates"]) == (1, 3, 3), report
    assert [(row["row"], "gold label is 'yes', not 'no'" in row["reason"]) for row in report["rejected"]] == [(4, True)]
    items = {item["data"]["text"]: item for item in requester.items(project["id"])}
    assert {text: (item["is_gold"], item["gold_label"]) for text, item in items.items()} == {
        "a cat": (True, "yes"), "a dog": (True, "no"), "a cow": (True, "yes"), "a new one": (True, "yes")}  # fmt: skip
    again = tmp_path / "again.csv"
    again.write_text("text,gold_label\na cat,no\na dog,no\n")
    report = requester.upload_items(project["id"], again)
    assert report["gold_added"] == 0 and [row["row"] for row in report["rejected"]] == [1]
    assert report["duplicates"] == 1  # the row that agrees; the rejected one is counted once, as rejected
    assert "gold already, with label 'yes', not 'no'" in report["rejected"][0]["reason"]


def test_upload_surprises_are_named_or_read_as_meant(server, tmp_path):
    """A header naming a column twice (pandas made the second "text.1"), a NUL byte (the field was cut
    at it), a JSON Lines file with a byte-order mark (refused) and a numeric id (rejected)."""
    _, requester = server.user("req", "requester")
    project = _project(requester)
    unclosed = 'a quoted field opened on line 3 is never closed \\(an unmatched "\\)'  # it was pandas' C error
    for name, content, message in (("twice.csv", b"text,Text,text\na,b,c\n", "'text' more than once"),
                                   ("nul.csv", b"text\nab\x00cd\n", "NUL bytes"),
                                   ("quote.csv", b'text,text_b\nok,fine\n"never closed,x\ny,z\n', unclosed)):  # fmt: skip
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(InvalidInputError, match=message):
            requester.upload_items(project["id"], path)
    lines = tmp_path / "bom.jsonl"
    lines.write_bytes(b'\xef\xbb\xbf{"data": {"text": "with a mark"}, "external_id": 17}\n')
    assert requester.upload_items(project["id"], lines)["created"] == 1
    assert [item["external_id"] for item in requester.items(project["id"])] == ["17"]


def test_an_import_of_other_fields_is_rejected_naming_them(server, tmp_path):
    """A misspelt header, or the gold answer in a column not named gold_label, made items of
    whatever the file held: workers were shown the answer, and the model took it as a feature.
    The first import declares the project's fields; a row with another field is rejected."""
    _, requester = server.user("req", "requester")
    project = _project(requester)["id"]
    first = tmp_path / "first.csv"
    first.write_text("id,text,text_b,gold label\n1,a cat,a pet,1\n2,a dog,a car,\n")  # "gold label" is gold_label
    report = requester.upload_items(project, first)
    assert (report["created"], report["rejected"]) == (2, []), report
    assert requester.project(project)["fields"] == ["text", "text_b"]
    assert next(item for item in requester.items(project) if item["external_id"] == "1")["gold_label"] == "1"
    misspelt = tmp_path / "misspelt.csv"
    misspelt.write_text("ID,txt,text_b\n3,a bird,a plane\n")
    leaked = tmp_path / "leaked.csv"
    leaked.write_text("id,text,text_b,gold\n4,a fish,a dish,0\n")
    for path, expected in ((misspelt, "field(s) ['txt'] are not the project's fields ['text', 'text_b'] (did you "
                                      "mean 'text' for 'txt'?)"),
                           (leaked, "field 'gold' looks like the gold answer, which workers would be shown: name "
                                    "the column gold_label")):  # fmt: skip
        report = requester.upload_items(project, path)
        assert report["created"] == 0 and report["rejected"][0]["reason"].startswith(expected), report
    assert len(requester.items(project)) == 2  # nothing else was stored
    # a field declared explicitly is taken, whatever it looks like
    requester.update_project(project, fields=["text", "text_b", "gold"])
    assert requester.upload_items(project, leaked)["created"] == 1


@pytest.mark.parametrize(
    "name", ["label_1", "human_label", "sentimentLabel", "final label", "expected_answer", "answer_key", "correct",
             "y_true", "target", "class", "ground_truth", "golden"],
)  # fmt: skip
def test_names_of_answer_columns_are_not_declared_fields(server, name):
    """The check knew gold, truth and a few exact names: ``final_label`` or ``y_true`` in a first
    import became fields, and workers were shown the answer."""
    _, requester = server.user("req", "requester")
    project = _project(requester)["id"]
    report = requester.import_items(project, [{"data": {"text": "one", name: "1"}}, {"data": {"text": "two"}}])
    assert report["created"] == 1 and "looks like the gold answer" in report["rejected"][0]["reason"], report
    assert requester.project(project)["fields"] == ["text"]


def test_a_row_with_its_fields_outside_data_says_where_they_go(server):
    _, requester = server.user("req", "requester")
    project = _project(requester)["id"]
    report = requester.import_items(project, [{"name": "widget", "price": "3"}])
    assert report["created"] == 0, report
    assert report["rejected"][0]["reason"] == (
        """['name', 'price'] are not settings of a row: an item's fields go under "data", as {"data": {"text": ...}}"""
    )


def test_a_gold_label_inside_data_is_told_to_go_beside_it(server):
    """The advice was to name the column gold_label, which it was already, inside "data"."""
    _, requester = server.user("req", "requester")
    project = _project(requester)["id"]
    rows = [{"data": {"text": "one"}}, {"data": {"text": "two", "gold_label": "1"}}]
    report = requester.import_items(project, rows)
    assert report["created"] == 1 and report["rejected"][0]["reason"] == (
        """field 'gold_label' is inside "data", where workers would be shown it: put it at the top level of """
        """the row, beside "data", to make the item gold"""
    )
    assert requester.import_items(project, [{"data": {"text": "two"}, "gold_label": "1"}])["created"] == 1
    assert [item["is_gold"] for item in requester.items(project) if item["data"] == {"text": "two"}] == [True]


def test_an_answers_file_imported_as_items_is_told_so_and_declares_nothing(server):
    """Each of its rows was told its 'label' looked like a gold answer, and the project's fields
    became ['worker'] for good."""
    _, requester = server.user("req", "requester")
    project = _project(requester)["id"]
    rows = [{"external_id": f"t{i}", "data": {"worker": f"w{i}", "label": "1"}} for i in range(3)]
    report = requester.import_items(project, rows)
    assert report["created"] == 0 and len(report["rejected"]) == 3
    assert "look like crowd answers (task, worker, label), not items" in report["rejected"][0]["reason"]
    assert requester.project(project)["fields"] is None
    assert requester.import_items(project, [{"data": {"text": "one"}}])["created"] == 1
    declared = _project(requester, fields=["text", "label"])["id"]  # 'label' a field: 'worker' alone is unknown
    report = requester.import_items(declared, [{"data": {"worker": "w1", "label": "1"}}])
    assert "fields 'worker' and 'label' look like crowd answers" in report["rejected"][0]["reason"]


def test_a_first_import_does_not_declare_a_gold_answer_a_field(server):
    _, requester = server.user("req", "requester")
    project = _project(requester)["id"]
    report = requester.import_items(project, [{"data": {"text": "one", "label": "1"}}, {"data": {"text": "two"}}])
    assert report["created"] == 1 and "field 'label' looks like the gold answer" in report["rejected"][0]["reason"]
    assert requester.project(project)["fields"] == ["text"]
    declared = _project(requester, fields=["text", "label"])["id"]  # a project about labels on jars, say
    assert requester.import_items(declared, [{"data": {"text": "one", "label": "jam"}}])["created"] == 1
    with pytest.raises(InvalidInputError, match="they are not item fields"):
        _project(requester, fields=["text", "gold_label"])


def test_a_gold_file_can_name_its_items_by_id(server, tmp_path):
    """A gold file of id,gold_label was rejected row by row as "empty item", and the import exited 0."""
    _, requester = server.user("req", "requester")
    project = _project(requester)["id"]
    requester.import_items(project, [{"external_id": f"t{i}", "data": {"text": f"item {i}"}} for i in range(3)])
    gold = tmp_path / "gold.csv"
    gold.write_text("task,label\nt0,1\nt1,0\nt9,1\n")  # as the bundled gold.csv files write it
    report = requester.upload_items(project, gold)
    assert (report["gold_added"], report["created"]) == (2, 0), report
    assert [row["reason"] for row in report["rejected"]] == [f"no item with id 't9' in project {project}, and no "
                                                             "fields to make one of"]  # fmt: skip
    labels = {item["external_id"]: item["gold_label"] for item in requester.items(project) if item["is_gold"]}
    assert labels == {"t0": "1", "t1": "0"}
    as_json = requester.import_items(project, [{"external_id": "t2", "gold_label": "0"}])  # JSON: no data needed
    assert as_json["gold_added"] == 1, as_json
    gold.write_text("task,gold_label\nt0,1\nt1,1\n")  # t0 again; t1 against the gold it has
    report = requester.upload_items(project, gold)
    assert (report["gold_added"], report["duplicates"]) == (0, 1), report
    assert "is gold already, with label '0', not '1'" in report["rejected"][0]["reason"]


def test_the_cli_says_when_an_import_did_nothing(server, tmp_path):
    import subprocess
    import sys

    created, requester = server.user("req", "requester")
    project = _project(requester)["id"]
    requester.import_items(project, [{"data": {"text": "one"}}])
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("txt\ntwo\n")
    command = [sys.executable, "-m", "crowdloop", "items", "import", str(project), str(wrong), "--url", server.url,
               "--token", str(created["token"])]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "nothing was imported: every row of wrong.csv was rejected" in done.stderr, done
    assert "row 1: field(s) ['txt']" in done.stderr
