"""The API the web pages use, over a real server on SQLite and PostgreSQL: tasks leased ahead,
undo while the lease lasts, the dashboard's numbers and the review queue."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from crowdloop.errors import ConflictError, NotFoundError, PermissionDeniedError, UnknownLabelError
from support import item_id_of


def _post(client: Any, path: str, **kwargs: Any) -> httpx.Response:
    """A raw call, to see the status and the error of a refusal (the SDK raises them)."""
    return client._http.post(path, **kwargs)


def _project(server: Any, texts: int = 6, **spec: Any) -> tuple[Any, int]:
    _, owner = server.user("owner", "requester")
    values = {"name": "web", "labels": ["no", "yes"], "min_overlap": 1, "max_overlap": 3, "price": 0.05, "budget": 10.0}
    project = owner.create_project(**(values | spec))
    rows = [{"data": {"text": f"sentence {i}"}} for i in range(texts)]
    owner.import_items(project["id"], rows)
    owner.start(project["id"])
    return owner, int(project["id"])


def test_batch_leases_ahead_and_keeps_what_it_leased(server):
    owner, project = _project(server)
    _, worker = server.user("ahead", "worker")
    first = _post(worker, f"/projects/{project}/tasks/batch", params={"count": 2}).json()
    assert len(first) == 2 and first[0]["assignment_id"] < first[1]["assignment_id"]
    leased = {item_id_of(owner, project, task) for task in first}
    assert len(leased) == 2
    again = _post(worker, f"/projects/{project}/tasks/batch", params={"count": 2}).json()
    assert [t["assignment_id"] for t in again] == [t["assignment_id"] for t in first]  # idempotent
    assert worker.next_task(project)["assignment_id"] in {t["assignment_id"] for t in first}
    worker.submit(first[0]["assignment_id"], "yes", seconds=1.0)
    after = _post(worker, f"/projects/{project}/tasks/batch", params={"count": 2}).json()
    assert after[0]["assignment_id"] == first[1]["assignment_id"] and len(after) == 2
    assert item_id_of(owner, project, after[1]) not in leased
    too_many = _post(worker, f"/projects/{project}/tasks/batch", params={"count": 9})
    assert too_many.status_code == 422


def test_batch_respects_the_answer_cap(server):
    _, project = _project(server, rules={"max_answers_per_worker": 1})
    _, worker = server.user("capped", "worker")
    assert len(_post(worker, f"/projects/{project}/tasks/batch", params={"count": 3}).json()) == 1


def test_undo_reverses_everything_the_answer_did(server):
    owner, project = _project(server, texts=2, max_overlap=1)  # two items: the answer does not finish the project
    _, worker = server.user("undoer", "worker")
    task = worker.next_task(project)
    worker.submit(task["assignment_id"], "yes", seconds=2.0)
    before = owner.status(project)
    assert before["answers"] == 1 and before["spent"] == pytest.approx(0.05) and before["items_done"] == 1
    assert worker.standing(project)["earned"] == pytest.approx(0.05)
    undone = _post(worker, f"/assignments/{task['assignment_id']}/undo")
    assert undone.status_code == 200, undone.text
    assert undone.json()["assignment_id"] == task["assignment_id"] and undone.json()["data"] == task["data"]
    after = owner.status(project)
    assert (after["answers"], after["spent"], after["items_done"]) == (0, 0.0, 0)
    mine = worker.standing(project)
    assert (mine["answers"], mine["earned"]) == (0, 0.0)
    assert worker.next_task(project)["assignment_id"] == task["assignment_id"]  # the lease is theirs again
    again = _post(worker, f"/assignments/{task['assignment_id']}/undo")
    assert again.status_code == 409 and again.json()["error"] == "ConflictError"
    second = worker.submit(task["assignment_id"], "no", seconds=2.0)
    assert second["duplicate"] is False
    assert owner.status(project)["answers"] == 1


def _labels(owner: Any, project: int) -> dict[int, dict[str, Any]]:
    """The project's labels export, by item id."""
    rows = [json.loads(line) for line in owner.export(project, "labels", "jsonl").decode().splitlines() if line]
    return {row["item_id"]: row for row in rows}


def test_an_aggregation_drops_the_label_of_an_item_whose_answers_were_undone(server):
    """The label stayed in exports, the status and training after its only answer was undone,
    through any number of aggregations, also once no answer at all was left."""
    owner, project = _project(server, texts=3, max_overlap=1, aggregation_method="majority_vote")
    leases = []
    for name in ("undo-label-0", "undo-label-1"):
        _, worker = server.user(name, "worker")
        task = worker.next_task(project)
        worker.submit(task["assignment_id"], "yes")
        leases.append((worker, task))
    owner.aggregate(project)
    assert set(_labels(owner, project)) == {item_id_of(owner, project, task) for _, task in leases}
    for undone, (worker, task) in enumerate(leases, start=1):
        worker.undo(task["assignment_id"])
        owner.aggregate(project)  # the second one runs on no answers at all
        assert set(_labels(owner, project)) == {item_id_of(owner, project, kept) for _, kept in leases[undone:]}
        assert owner.status(project)["labels"] == len(leases) - undone


def test_undo_is_refused_once_the_lease_expired(server):
    _, project = _project(server, texts=2, lease_seconds=5)
    _, worker = server.user("late", "worker")
    task = worker.next_task(project)
    worker.submit(task["assignment_id"], "yes")
    time.sleep(5.2)
    late = _post(worker, f"/assignments/{task['assignment_id']}/undo")
    assert late.status_code == 409 and "expired" in late.json()["detail"]


def test_undo_after_training_feedback_is_refused_and_gold_is_otherwise_reversed(server):
    gold = [{"data": {"text": "control"}, "gold_label": "yes", "gold_explanation": "it says yes"}]
    owner, project = _project(server, texts=1, gold_share=0.9)
    owner.import_items(project, gold)
    results = {}
    for label in ("no", "yes"):
        _, worker = server.user(f"gold-{label}", "worker")
        task = worker.next_task(project)
        assert task["data"] == {"text": "control"}  # the first task is gold at this share
        feedback = worker.submit(task["assignment_id"], label)["feedback"]
        results[label] = (feedback, _post(worker, f"/assignments/{task['assignment_id']}/undo"), worker)
    wrong_feedback, wrong_undo, _ = results["no"]
    assert wrong_feedback["expected"] == "yes"
    assert wrong_undo.status_code == 409 and "training feedback" in wrong_undo.json()["detail"]
    right_feedback, right_undo, right_worker = results["yes"]
    assert right_feedback is None and right_undo.status_code == 200
    standing = right_worker.standing(project)
    assert (standing["answers"], standing["gold_answers"]) == (0, 0)


def test_undo_after_a_review_decision_treats_the_answer_as_the_regular_answer_it_was(server):
    """A decision makes the item gold after its answers: undo judged them by the item's gold today,
    so it took a gold answer off the record of a worker who never gave one on it, and refused a
    wrong one as "already corrected by training feedback" though no feedback was shown."""
    owner, project = _project(server, texts=2, min_overlap=2, gold_share=0.3, rules={"training_feedback": True})
    owner.import_items(project, [{"data": {"text": "control"}, "gold_label": "yes"}])
    _, agreeing = server.user("review-undo-yes", "worker")
    control = agreeing.next_task(project)  # a newcomer's first task is the (only) gold item
    agreeing.submit(control["assignment_id"], "yes")
    agreed = agreeing.next_task(project)
    agreeing.submit(agreed["assignment_id"], "yes")
    item = item_id_of(owner, project, agreed)
    _, dissenting = server.user("review-undo-no", "worker")
    while (task := dissenting.next_task(project))["data"] != agreed["data"]:
        dissenting.submit(task["assignment_id"], "yes")  # the control among them, answered right
    dissenting.submit(task["assignment_id"], "no")
    answered = {"yes": (agreeing, agreed), "no": (dissenting, task)}
    owner.decide(project, item, "yes")
    for label, (worker, task) in answered.items():
        before = worker.standing(project)
        assert before["gold_answers"] == 1, label  # the control only
        undone = _post(worker, f"/assignments/{task['assignment_id']}/undo")
        assert undone.status_code == 200, (label, undone.text)
        after = worker.standing(project)
        assert (after["gold_answers"], after["gold_accuracy"]) == (1, 1.0), label


def test_the_dashboard_adds_up(server):
    owner, project = _project(server, texts=4, min_overlap=2, max_overlap=2, confidence_target=0.99)
    workers = [server.user(f"dash{i}", "worker") for i in range(3)]
    for index, (_, worker) in enumerate(workers):
        for _ in range(2):
            task = worker.next_task(project)
            worker.submit(task["assignment_id"], ["no", "yes", "yes"][index], seconds=3.0)
    owner.ban(project, int(workers[0][0]["id"]), "answers against the crowd")
    board = owner._call("GET", f"/projects/{project}/dashboard")
    assert board["answers"] == 6 and sum(board["timeline"]) == 6 and board["timeline"][-1] + board["timeline"][-2] == 6
    assert board["answers_per_minute"] == pytest.approx(6 / 5)
    assert sum(board["confidence_histogram"]) == 4  # every regular item has an answer
    assert board["spent"] == pytest.approx(0.30) and board["budget"] == 10.0
    assert board["alpha"] is not None and -1.0 <= board["alpha"] <= 1.0
    table = {row["worker_id"]: row for row in board["workers"]}
    banned = table[int(workers[0][0]["id"])]
    assert banned["banned"] and banned["last_ban_event"] == "ban: answers against the crowd"
    assert banned["answers"] == 2 and banned["mean_seconds"] == pytest.approx(3.0)
    assert banned["hourly_pay"] == pytest.approx(0.10 / (6 / 3600))


def test_the_worker_table_counts_skipped_tasks_and_tasks_left_to_run_out_with_the_gold_among_them(server):
    """A gold task left until its lease ran out was counted nowhere: not as a missed gold answer
    (a break looks the same), and not in anything the requester could see."""
    import time

    owner, project = _project(server, texts=3, lease_seconds=5, gold_share=0.1)
    owner.import_items(project, [{"data": {"text": "control"}, "gold_label": "yes"}])
    (skipper_user, skipper), (waiter_user, waiter) = server.user("skipper", "worker"), server.user("waiter", "worker")
    assert waiter.next_task(project)["data"] == {"text": "control"}  # a newcomer's first task is gold
    for _ in range(2):
        assert _post(skipper, f"/assignments/{skipper.next_task(project)['assignment_id']}/skip").status_code == 204
    time.sleep(5.5)  # the waiter's gold lease runs out
    table = {row["worker_id"]: row for row in owner.workers(project)}
    waited, skipped = table[int(waiter_user["id"])], table[int(skipper_user["id"])]
    assert (waited["skipped"], waited["expired"], waited["expired_gold"]) == (0, 1, 1)
    assert waited["gold_answers"] == 0  # not a missed gold answer
    assert skipped["skipped"] == 2 and skipped["expired"] == 0
    board = {row["worker_id"]: row for row in owner._call("GET", f"/projects/{project}/dashboard")["workers"]}
    assert board[int(waiter_user["id"])]["expired_gold"] == 1


def test_saving_settings_merges_rules_and_refuses_a_cleared_required_field(server):
    owner, project = _project(server, aggregation_method="ds", rules={"min_gold_accuracy": 0.8, "max_skips_in_row": 4})
    assert owner.project(project)["aggregation_method"] == "dawid_skene"  # the registry name the form offers
    saved = owner.update_project(project, confidence_target=0.9, budget=None, aggregation_method="MajorityVote",
                                 rules={"hold_back_quantile": 0.5, "max_skips_in_row": None})  # fmt: skip
    assert saved["confidence_target"] == 0.9 and saved["budget"] is None
    assert saved["aggregation_method"] == "majority_vote"
    rules = saved["rules"]  # a rule left out keeps its value; null turns one off
    assert (
        rules["min_gold_accuracy"] == 0.8 and rules["hold_back_quantile"] == 0.5 and rules["max_skips_in_row"] is None
    )
    for field in ({"min_overlap": None}, {"rules": None}, {"rules": {"hold_back_quantile": 1.0}}):
        refused = owner._http.patch(f"/projects/{project}", json={"max_overlap": 7, **field})
        assert refused.status_code == 422, field
        assert next(iter(field)) in refused.json()["detail"]
    after = owner.project(project)
    assert after["max_overlap"] == 3 and after["min_overlap"] == 1 and after["rules"] == rules  # nothing half-saved


def test_closing_a_project_hides_it_from_workers_without_access_and_a_new_lease_length_applies(server):
    owner, project = _project(server, lease_seconds=600)
    granted, kept = server.user("kept", "worker")
    _, dropped = server.user("dropped", "worker")
    held = kept.next_task(project)  # taken under the old lease length
    owner.grant_access(project, int(granted["id"]))  # before closing, which ends the leases of the rest
    saved = owner.update_project(project, open_to_all=False, lease_seconds=60)
    assert saved["open_to_all"] is False and saved["lease_seconds"] == 60
    with pytest.raises(NotFoundError):
        dropped.next_task(project)  # the project is gone from their view, not merely empty
    fresh = kept.next_task(project)
    assert fresh["assignment_id"] == held["assignment_id"]  # the lease already held is kept as it was
    kept.submit(held["assignment_id"], "yes")
    following = kept.next_task(project)
    expires = datetime.fromisoformat(following["expires_at"].replace("Z", "+00:00"))
    left = (expires if expires.tzinfo else expires.replace(tzinfo=UTC)) - datetime.now(UTC)
    assert timedelta(seconds=50) < left <= timedelta(seconds=60)  # the new length, not the old 600 s
    refused = owner._http.patch(f"/projects/{project}", json={"lease_seconds": 1})
    assert refused.status_code == 422 and "lease_seconds" in refused.text
    as_worker = kept.project(project)
    assert as_worker["lease_seconds"] is None and as_worker["open_to_all"] is None  # a requester's settings


def _answer_all(worker: Any, project: int) -> list[dict[str, Any]]:
    """The items (their data) ``worker`` is given, answering each, until none is left for them."""
    items = []
    while (task := worker.next_task(project)) is not None:
        items.append(task["data"])
        worker.submit(task["assignment_id"], "no")
    return items


def test_a_worker_closed_out_cannot_answer_the_task_they_hold_and_its_item_goes_to_others(server):
    owner, project = _project(server, texts=3, max_overlap=1)
    _, outsider = server.user("outsider", "worker")
    answered = outsider.next_task(project)
    outsider.submit(answered["assignment_id"], "no")
    held = outsider.next_task(project)
    created, insider = server.user("insider", "worker")
    owner.update_project(project, open_to_all=False)
    owner.grant_access(project, int(created["id"]))
    with pytest.raises(PermissionDeniedError, match="no longer open to you; the answer was not recorded"):
        outsider.submit(held["assignment_id"], "yes")
    with pytest.raises(PermissionDeniedError, match="no longer open to you; your answer stands"):
        outsider.undo(answered["assignment_id"])  # which would have handed them a lease back
    assert held["data"] in _answer_all(insider, project)  # closing freed the lease's item at once
    assert owner.status(project)["answers"] == 3  # the outsider's first, then the insider's two


def test_a_banned_worker_cannot_answer_the_tasks_fetched_ahead_and_they_go_to_others(server):
    owner, project = _project(server, texts=4, max_overlap=1)
    row, worker = server.user("banned", "worker")
    answered = worker.next_task(project)
    worker.submit(answered["assignment_id"], "no")
    ahead = worker.next_tasks(project, count=2)
    owner.ban(project, int(row["id"]), "copies answers")
    for task in ahead:
        with pytest.raises(PermissionDeniedError, match="banned from this project; the answer was not recorded"):
            worker.submit(task["assignment_id"], "yes")
    with pytest.raises(PermissionDeniedError, match="banned from this project; your answer stands"):
        worker.undo(answered["assignment_id"])  # which would have handed them a lease back
    _, fresh = server.user("fresh", "worker")
    assert len(_answer_all(fresh, project)) == 3  # both leases fetched ahead were released
    assert owner.status(project)["answers"] == 4  # the banned worker's first answer stands


def test_the_review_queue_puts_disagreement_first_and_a_decision_becomes_gold(server):
    owner, project = _project(server, texts=3, min_overlap=2, max_overlap=2, confidence_target=0.99)
    votes = {}
    for index in range(2):
        _, worker = server.user(f"rev{index}", "worker")
        for _ in range(3):
            task = worker.next_task(project)
            label = "yes" if index == 0 or task["data"]["text"] != "sentence 1" else "no"
            worker.submit(task["assignment_id"], label)
            votes.setdefault(item_id_of(owner, project, task), []).append(label)
    queue = owner._call("GET", f"/projects/{project}/review")
    contested = next(item for item, labels in votes.items() if len(set(labels)) == 2)
    assert queue[0]["item_id"] == contested and queue[0]["disagreement"] == 0.5
    assert sorted(answer["label"] for answer in queue[0]["answers"]) == ["no", "yes"]
    assert [entry["doubt"] for entry in queue] == sorted((entry["doubt"] for entry in queue), reverse=True)
    decided = owner._call("POST", f"/projects/{project}/review/{contested}", json={"label": "no", "explanation": "why"})
    assert decided == {"item_id": contested, "label": "no", "gold": True, "method": "review"}
    item = next(row for row in owner.items(project) if row["id"] == contested)
    assert item["is_gold"] and item["gold_label"] == "no"
    labels = owner.export(project, "labels", "jsonl").decode()
    assert '"method": "review"' in labels or '"method":"review"' in labels
    assert contested not in {entry["item_id"] for entry in owner._call("GET", f"/projects/{project}/review")}
    with pytest.raises(UnknownLabelError):
        owner._call("POST", f"/projects/{project}/review/{contested}", json={"label": "maybe"})
    _, stranger = server.user("other", "requester")
    with pytest.raises(NotFoundError):
        stranger._call("POST", f"/projects/{project}/review/{contested}", json={"label": "no"})


def test_the_review_queue_finds_a_disputed_item_however_sure_the_aggregator_is(server):
    """The queue read five candidates a place by confidence, then ranked them by doubt; the default
    aggregator is sure (1.0) of a 2-1 item, so a disputed item past the first candidates by id
    never reached the page."""
    owner, project = _project(server, texts=8, min_overlap=3, max_overlap=3, confidence_target=1.0)
    _, everywhere = server.user("rank-all", "worker")
    _answer_all(everywhere, project)
    disputed = set()
    for index in range(2):
        _, worker = server.user(f"rank{index}", "worker")
        task = worker.next_task(project)
        worker.submit(task["assignment_id"], "yes")  # against the first worker's "no"
        disputed.add(item_id_of(owner, project, task))
    owner.aggregate(project)
    top = owner.review_queue(project, limit=1)
    assert [entry["item_id"] for entry in top] == [min(disputed)] and top[0]["doubt"] > 0
    whole = owner.review_queue(project, limit=200)
    assert [entry["doubt"] for entry in whole] == sorted((entry["doubt"] for entry in whole), reverse=True)
    assert {entry["item_id"] for entry in whole if entry["disagreement"] > 0} == disputed


def test_a_decision_is_announced_and_on_the_last_open_item_finishes_the_project(server):
    """A decision sent no ``item.labeled``, so a consumer syncing labels from the webhook never
    learnt it; deciding the last open item left the project active with nothing to hand out."""
    owner, project = _project(server, texts=2, min_overlap=2, max_overlap=2, confidence_target=0.99)
    owner.add_webhook(project, "http://127.0.0.1:9/review-hook", ["item.labeled", "project.finished"])
    _, everywhere = server.user("finish-all", "worker")
    _answer_all(everywhere, project)
    _, other = server.user("finish-one", "worker")
    task = other.next_task(project)
    other.submit(task["assignment_id"], "yes")  # against "no": that item has its two answers
    other.skip(other.next_task(project)["assignment_id"])
    (open_item,) = [item["id"] for item in owner.items(project) if not item["done"]]
    assert _events(owner, project) == ["item.labeled"]  # the item the crowd settled
    owner.decide(project, open_item, "yes")
    owner.decide(project, open_item, "yes")  # a retry announces nothing twice
    assert owner.project(project)["status"] == "finished"
    assert _events(owner, project) == ["item.labeled", "item.labeled", "project.finished"]
    deadline = time.monotonic() + 60
    while (hook := owner.webhooks(project)[0])["failures"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert hook["failures"] >= 1 and hook["retry_at"] is not None  # nobody listens on port 9: it backs off
    assert hook["failing_since"] is not None and hook["failing_since"] <= hook["retry_at"]


def _events(owner: Any, project: int) -> list[str]:
    """The events of the project's webhook deliveries, oldest first."""
    return [delivery["event"] for delivery in sorted(owner.deliveries(project), key=lambda d: d["id"])]


def test_a_decision_against_a_gold_label_is_refused(server):
    """A decision silently rewrote an imported gold label, by which workers' gold answers had been
    judged (their accuracy was not recomputed), while an import of the same contradiction was refused."""
    owner, project = _project(server, texts=1, gold_share=0.5)
    owner.import_items(project, [{"data": {"text": "control"}, "gold_label": "yes"}])
    _, worker = server.user("gold-judged", "worker")
    task = worker.next_task(project)  # the gold item, first
    worker.submit(task["assignment_id"], "yes")
    item_id = item_id_of(owner, project, task)
    with pytest.raises(ConflictError, match="item .* is gold already, with label 'yes', not 'no'"):
        owner.decide(project, item_id, "no")
    assert next(item for item in owner.items(project) if item["id"] == item_id)["gold_label"] == "yes"
    assert owner.decide(project, item_id, "yes")["label"] == "yes"  # agreeing with it is fine


def test_progress_counts_the_items_decided_in_review(server):
    """A decision makes its item gold and not done, so deciding items took them out of "items_done"
    and progress went backwards on the dashboard."""
    owner, project = _project(server, texts=3, min_overlap=2, max_overlap=2, aggregation_method="majority_vote")
    owner.import_items(project, [{"data": {"text": "control"}, "gold_label": "yes"}])
    for label in ("no", "yes"):
        _, worker = server.user(f"progress-{label}", "worker")
        while (task := worker.next_task(project)) is not None:
            worker.submit(task["assignment_id"], label)
    owner.aggregate(project)
    keys = ("items", "gold_items", "items_done", "items_reviewed")
    assert {key: owner.status(project)[key] for key in keys} == dict(zip(keys, (4, 1, 3, 0), strict=True))
    for entry in owner.review_queue(project):
        owner.decide(project, entry["item_id"], "yes")
    after = dict(zip(keys, (4, 1, 3, 3), strict=True))
    assert {key: owner.status(project)[key] for key in keys} == after
    assert {key: owner.dashboard(project)[key] for key in keys} == after
