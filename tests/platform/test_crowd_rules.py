"""The crowd's rules hold against a worker who games them, over a real server on both databases.

Each test is a way an audit found to get round a rule: gold skipped until it ran out, a claimed
answer time, an unban that did not last, an answer after the lease
or on a finished project, a price raised under open leases, a review decision a later
aggregation overwrote.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from crowdloop.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from support import item_id_of


def _project(server: Any, texts: int = 10, gold: int = 0, **settings: Any) -> tuple[Any, int]:
    _, owner = server.user("rules-owner", "requester")
    spec = {"name": "rules", "labels": ["0", "1"], "min_overlap": 1, "max_overlap": 1, "price": 0.1} | settings
    project = owner.create_project(**spec)["id"]
    rows = [{"data": {"text": f"sentence {i}"}} for i in range(texts)]
    rows += [{"data": {"text": f"control {i}"}, "gold_label": "1"} for i in range(gold)]
    owner.import_items(project, rows)
    owner.start(project)
    return owner, project


def _gold_ids(owner: Any, project: int) -> set[int]:
    return {item["id"] for item in owner.items(project, limit=1000) if item["is_gold"]}


def _answer_in_turn(owner: Any, worker: Any, project: int, gold_ids: set[int], tasks: int) -> list[bool]:
    """``tasks`` tasks answered "1" one after the other: whether each was gold."""
    gold = []
    for _ in range(tasks):
        task = worker.next_task(project)
        gold.append(item_id_of(owner, project, task) in gold_ids)
        worker.submit(task["assignment_id"], "1")
    return gold


def _standing(owner: Any, project: int, worker_id: int) -> dict[str, Any]:
    return next(w for w in owner.workers(project) if w["worker_id"] == worker_id)


def test_a_skipped_gold_task_counts_as_missed(server):
    """Skipping gold until the gold ran out let a worker answer everything else unchecked."""
    owner, project = _project(server, texts=10, gold=10, gold_share=0.5)
    gold_ids = _gold_ids(owner, project)
    made, skipper = server.user("rules-skipper", "worker")
    skipped_gold = 0
    for _ in range(2):
        task = skipper.next_task(project)
        skipped_gold += item_id_of(owner, project, task) in gold_ids
        skipper.skip(task["assignment_id"])
    assert skipped_gold >= 1  # the first task is gold
    standing = _standing(owner, project, int(made["id"]))
    assert standing["gold_answers"] == skipped_gold  # each skipped control counts, and none was right


def test_the_speed_rule_times_answers_by_the_servers_clock(server):
    owner, project = _project(server, rules={"min_answer_seconds": 5, "ban_after_fast_answers": 2})
    _, worker = server.user("rules-fast", "worker")
    with pytest.raises(PermissionDeniedError, match="banned"):
        for _ in range(3):
            task = worker.next_task(project)
            worker.submit(task["assignment_id"], "1", seconds=30.0)  # claimed; sent at once
    assert "2 answers faster than 5" in owner.bans(project)[-1]["reason"]


def test_an_unban_is_a_fresh_start_for_the_rules(server):
    owner, project = _project(server, texts=10, rules={"min_answer_seconds": 5, "ban_after_fast_answers": 2})
    made, worker = server.user("rules-unban", "worker")
    with pytest.raises(PermissionDeniedError, match="banned"):
        for _ in range(3):
            worker.submit(worker.next_task(project)["assignment_id"], "1", seconds=1.0)
    owner.unban(project, int(made["id"]), "second chance")
    worker.submit(worker.next_task(project)["assignment_id"], "1", seconds=1.0)  # one: it used to ban again
    assert _standing(owner, project, int(made["id"]))["banned"] is False
    assert [ban["action"] for ban in owner.bans(project)] == ["ban", "unban"]


def test_no_answer_after_the_lease_ran_out_or_once_the_project_is_finished(server):
    owner, project = _project(server, texts=3, lease_seconds=5, max_overlap=2)
    _, worker = server.user("rules-late", "worker")
    late = worker.next_task(project)
    time.sleep(5.5)  # nobody asked for a task meanwhile, so the lease's row still says "leased"
    with pytest.raises(ConflictError, match="has expired"):
        worker.submit(late["assignment_id"], "1")
    held = worker.next_task(project)
    owner.update_project(project, status="finished")
    with pytest.raises(ConflictError, match="is finished; the answer was not recorded"):
        worker.submit(held["assignment_id"], "1")
    assert owner.status(project)["answers"] == 0


def test_a_skip_after_the_lease_ran_out_is_refused_and_counts_nothing(server):
    """A late skip was accepted where a late answer is not: it counted in the skips in a row (here
    a ban) and, on a gold task, as a missed gold answer, for an item already back in the pool."""
    owner, project = _project(server, texts=3, gold=3, gold_share=0.5, lease_seconds=5,
                              rules={"max_skips_in_row": 1})  # fmt: skip
    made, worker = server.user("rules-late-skip", "worker")
    late = worker.next_task(project)  # the first task is gold
    time.sleep(5.5)  # nobody asked for a task meanwhile, so the lease's row still says "leased"
    with pytest.raises(ConflictError, match=f"the lease of assignment {late['assignment_id']} has expired"):
        worker.skip(late["assignment_id"])
    standing = _standing(owner, project, int(made["id"]))
    assert standing["gold_answers"] == 0 and standing["banned"] is False and owner.bans(project) == []
    worker.submit(worker.next_task(project)["assignment_id"], "1")  # still free to work


def test_a_price_the_open_leases_would_push_over_budget_is_refused(server):
    owner, project = _project(server, texts=6, price=0.1, budget=0.5)
    _, worker = server.user("rules-money", "worker")
    worker.next_tasks(project, count=3)
    with pytest.raises(ConflictError, match=r"the 3 open lease\(s\) would take the spend to 3.00, over the budget"):
        owner.update_project(project, price=1.0)
    with pytest.raises(ConflictError, match="over the budget of 0.20"):
        owner.update_project(project, budget=0.2)
    assert owner.project(project)["price"] == 0.1 and owner.project(project)["budget"] == 0.5  # nothing changed
    owner.update_project(project, price=0.15)  # 0.45: still fits


def test_a_review_decision_outlives_the_next_aggregation(server):
    owner, project = _project(server, texts=2, max_overlap=2, min_overlap=2, confidence_target=0.99)
    for name in ("rev-a", "rev-b"):
        _, worker = server.user(name, "worker")
        while (task := worker.next_task(project)) is not None:
            worker.submit(task["assignment_id"], "1")
    owner.aggregate(project)
    item = owner.items(project)[0]["id"]
    owner.decide(project, item, "0")
    owner.aggregate(project)  # the crowd still says "1"
    labels = {row["item_id"]: row for row in _labels(owner, project)}
    assert labels[item]["label"] == "0" and labels[item]["method"] == "review"


def _labels(owner: Any, project: int) -> list[dict[str, Any]]:
    import json

    text = owner.export(project, "labels", "jsonl").decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_gold_comes_at_places_a_worker_cannot_count(server):
    """At a share of 0.2 the fixed schedule gave every worker gold at tasks 1, 6, 11, ...; a worker
    who counted knew which answers were checked. Now only the first is fixed, and the rate holds."""
    owner, project = _project(server, texts=40, gold=20, gold_share=0.2, min_overlap=6, max_overlap=6)
    gold_ids = _gold_ids(owner, project)
    schedules = []
    for w in range(6):
        _, worker = server.user(f"rules-gold-{w}", "worker")
        gold = _answer_in_turn(owner, worker, project, gold_ids, 25)
        schedules.append([place for place, is_gold in enumerate(gold) if is_gold])
    assert all(places[0] == 0 for places in schedules)  # a newcomer is checked at once
    assert all(5 - 2 <= len(places) <= 5 + 2 for places in schedules)  # 0.2 of 25, within the band
    assert len({tuple(places) for places in schedules}) > 1, schedules
    assert any(places != [0, 5, 10, 15, 20] for places in schedules), schedules


def test_tasks_leased_ahead_are_not_all_gold(server):
    """The web page leases three tasks ahead; each used to be chosen as if it were the first, so a
    newcomer got three gold tasks in a row."""
    owner, project = _project(server, texts=10, gold=10, gold_share=0.1)
    gold_ids = _gold_ids(owner, project)
    _, worker = server.user("rules-ahead", "worker")
    tasks = worker.next_tasks(project, count=3)
    gold = [item_id_of(owner, project, task) in gold_ids for task in tasks]
    assert len(tasks) == 3 and gold[0] and sum(gold) <= 2  # the second may be gold (one in ten), never both


def test_skipping_gold_is_judged_at_the_skip(server):
    """A skipped gold task counted as missed, but the gold rule was only checked at the next answer,
    so a worker who skipped every gold task and answered nothing was never judged."""
    owner, project = _project(server, texts=40, gold=10, gold_share=0.5,
                              rules={"min_gold_accuracy": 0.5, "min_gold_answers": 2})  # fmt: skip
    _, skipper = server.user("rules-gold-skipper", "worker")
    with pytest.raises(PermissionDeniedError, match="banned"):
        for _ in range(12):
            skipper.skip(skipper.next_task(project)["assignment_id"])
    assert owner.bans(project)[-1]["reason"] == "gold accuracy 0.00 below 0.5 after 2 gold answers"


def test_a_retried_wrong_gold_answer_brings_its_feedback_again(server):
    """When the first answer's response was lost, the retry said "duplicate" without the training
    feedback: the worker never saw it, and undo then said the answer was already corrected."""
    _, project = _project(server, texts=3, gold=3, gold_share=0.5, rules={"training_feedback": True})
    _, worker = server.user("rules-retry", "worker")
    task = worker.next_task(project)  # the first task is gold, with label "1"
    first = worker.submit(task["assignment_id"], "0")
    again = worker.submit(task["assignment_id"], "0")
    assert first["feedback"] is not None and again["duplicate"]
    assert again["feedback"] == first["feedback"]


def test_a_qualification_test_comes_first_and_can_fail_a_worker(server):
    """With ``qualification_gold`` a worker's first tasks are gold (here with no gold share at all),
    and the gold rule bans one who fails the test before they label a single real item."""
    rules = {"qualification_gold": 4, "min_gold_accuracy": 0.5, "min_gold_answers": 4}
    owner, project = _project(server, texts=20, gold=6, max_overlap=3, rules=rules)
    gold_ids = _gold_ids(owner, project)
    _, passing = server.user("rules-test-pass", "worker")
    order = _answer_in_turn(owner, passing, project, gold_ids, 8)  # right on every gold task
    assert order == [True] * 4 + [False] * 4  # the test, then only real items: the gold share is 0
    made, failing = server.user("rules-test-fail", "worker")
    with pytest.raises(PermissionDeniedError, match="banned"):
        for _ in range(5):
            task = failing.next_task(project)
            assert item_id_of(owner, project, task) in gold_ids  # never a real item before the test is over
            failing.submit(task["assignment_id"], "0")
    assert owner.bans(project)[-1]["reason"] == "gold accuracy 0.00 below 0.5 after 4 gold answers"
    assert _standing(owner, project, int(made["id"]))["answers"] == 4


def test_a_qualification_test_gives_way_when_gold_runs_out(server):
    """A worker who has answered every gold task gets real items, not nothing."""
    owner, project = _project(server, texts=5, gold=2, max_overlap=2, rules={"qualification_gold": 4})
    gold_ids = _gold_ids(owner, project)
    _, worker = server.user("rules-test-short", "worker")
    assert _answer_in_turn(owner, worker, project, gold_ids, 5) == [True, True, False, False, False]


def test_a_tied_vote_goes_to_the_label_listed_first(server):
    """The aggregators sort classes as text, so on a 1..10 scale a 2-against-10 tie went to "10";
    the simulator, and the requester's label list, put 2 first."""
    owner, project = _project(server, texts=1, labels=[str(n) for n in range(1, 11)], max_overlap=2, min_overlap=2,
                              aggregation_method="majority_vote")  # fmt: skip
    for name, label in (("rules-tie-a", "10"), ("rules-tie-b", "2")):
        _, worker = server.user(name, "worker")
        worker.submit(worker.next_task(project)["assignment_id"], label)
    owner.aggregate(project)
    assert [row["label"] for row in _labels(owner, project)] == ["2"]


def test_correcting_a_gold_label_judges_again_the_answers_it_judged(server):
    """A wrong gold label could not be put right: an honest worker kept the wrong gold answers it
    gave them (and a ban that rested on them), and an import or a decision against it was refused."""
    owner, project, wrong, made = _gold_answered_by_three(server, "gold-fix", ("honest", "echo"))
    owner.aggregate(project)
    assert _label_of(owner, project, wrong) == "1"

    def others() -> set[str]:  # when the other items were labeled (the correction relabels its own)
        return {row["aggregated_at"] for row in _labels(owner, project) if row["item_id"] != wrong}

    aggregated = others()
    first = owner.gold_report(project)[0]  # where the wrong label shows: the crowd misses it
    assert (first["item_id"], first["missed"], first["answers"], first["votes"]) == (wrong, 2, 3, {"0": 2, "1": 1})

    result = owner.correct_gold(project, wrong, "0", explanation="it is a zero")
    assert (result["label"], result["previous_label"], result["explanation"]) == ("0", "1", "it is a zero")
    tallies = {row["worker_id"]: (row["gold_answers"], row["gold_correct"]) for row in result["workers"]}
    assert tallies == {made["honest"]: (2, 1), made["echo"]: (2, 1)}  # the restarted worker's answer no longer counts
    for name, expected in (("honest", (2, 0.5)), ("echo", (2, 0.5)), ("restarted", (0, None))):
        standing = _standing(owner, project, made[name])
        assert (standing["gold_answers"], standing["gold_accuracy"]) == expected
    item = next(item for item in owner.items(project) if item["id"] == wrong)
    assert item["gold_label"] == "0" and _label_of(owner, project, wrong) == "0"
    assert owner.correct_gold(project, wrong, "0")["workers"] == []  # a retry judges nothing twice
    # the project is aggregated again with no new answer: a run found nothing to do and the labels
    # and reliabilities stayed those of the wrong gold label
    deadline = time.monotonic() + 60
    while others() == aggregated and time.monotonic() < deadline:
        time.sleep(0.5)
    assert others() != aggregated
    assert [row["item_id"] for row in owner.gold_report(project)][-1] == wrong  # missed once now, by "echo"
    assert _standing(owner, project, made["honest"])["gold_answers"] == 2


def test_a_gold_correction_is_refused_where_it_does_not_apply(server):
    owner, project = _project(server, texts=1, gold=1, gold_share=0.5)
    gold = min(_gold_ids(owner, project))
    regular = next(item["id"] for item in owner.items(project) if not item["is_gold"])
    with pytest.raises(InvalidInputError, match=r"label 'maybe' is not one of \['0', '1'\]"):
        owner.correct_gold(project, gold, "maybe")
    with pytest.raises(ConflictError, match=f"item {regular} is not gold"):
        owner.correct_gold(project, regular, "0")
    with pytest.raises(NotFoundError, match=f"no item 999999 in project {project}"):
        owner.correct_gold(project, 999999, "0")
    _, worker = server.user("gold-fix-worker", "worker")
    with pytest.raises(PermissionDeniedError):
        worker.correct_gold(project, gold, "0")
    _, stranger = server.user("gold-fix-stranger", "requester")
    with pytest.raises(NotFoundError):
        stranger.correct_gold(project, gold, "0")
    assert next(item for item in owner.items(project) if item["id"] == gold)["gold_label"] == "1"


def test_an_ambiguous_gold_item_can_be_taken_out_of_gold(server):
    """An item no label is fair to judge workers by (ambiguous, not wrong) could only be given
    another label, which judged them again just as unfairly. Now it becomes a regular item: its
    gold answers leave every tally, and the crowd labels it."""
    owner, project, ambiguous, made = _gold_answered_by_three(server, "gold-out", ("zero", "one"))

    result = owner.remove_gold(project, ambiguous)
    assert (result["item_id"], result["previous_label"], result["done"]) == (ambiguous, "1", True)
    tallies = {row["worker_id"]: (row["gold_answers"], row["gold_correct"]) for row in result["workers"]}
    assert tallies == {made["zero"]: (1, 0), made["one"]: (1, 1)}  # the restarted worker's answer was not counted
    assert _standing(owner, project, made["restarted"])["gold_answers"] == 0
    item = next(item for item in owner.items(project) if item["id"] == ambiguous)
    assert (item["is_gold"], item["gold_label"]) == (False, None)
    assert ambiguous not in {row["item_id"] for row in owner.gold_report(project)}
    owner.aggregate(project)
    labels = {row["item_id"]: (row["label"], row["confidence"]) for row in _labels(owner, project)}
    regular = [item["id"] for item in owner.items(project) if item["id"] < ambiguous]
    assert labels[ambiguous][1] < 1.0  # no longer clamped to a gold label
    assert {labels[item_id] for item_id in regular} == {labels[ambiguous]}  # labeled as items with the same answers
    answers = [json.loads(line) for line in owner.export(project, "answers", "jsonl").decode().splitlines()]
    assert sum(answer["item_id"] == ambiguous for answer in answers) == 3  # the answers stay, as regular ones
    with pytest.raises(ConflictError, match=f"item {ambiguous} is not gold"):
        owner.remove_gold(project, ambiguous)  # and a repeat changes nothing
    assert _standing(owner, project, made["zero"])["gold_answers"] == 1


def test_an_item_taken_out_of_gold_gets_the_answers_it_still_needs(server):
    owner, project = _project(server, texts=0, gold=1, gold_share=0.5, min_overlap=2, max_overlap=3)
    control = min(_gold_ids(owner, project))
    _, first = server.user("gold-out-first", "worker")
    first.submit(first.next_task(project)["assignment_id"], "1")
    assert owner.remove_gold(project, control)["done"] is False  # one answer; the project wants two
    _, second = server.user("gold-out-second", "worker")
    task = second.next_task(project)
    assert task is not None and item_id_of(owner, project, task) == control
    second.submit(task["assignment_id"], "1")
    item = next(item for item in owner.items(project) if item["id"] == control)
    assert (item["answers"], item["is_gold"]) == (2, False)


def test_a_gold_explanation_is_kept_unless_cleared(server):
    owner, project = _project(server, texts=0, gold=1, gold_share=0.5)
    control = min(_gold_ids(owner, project))
    assert owner.correct_gold(project, control, "0", explanation="a zero")["explanation"] == "a zero"
    assert owner.correct_gold(project, control, "1")["explanation"] == "a zero"  # not given: kept
    assert owner.correct_gold(project, control, "1", explanation="")["explanation"] is None  # "": cleared


def test_taking_an_item_out_of_gold_is_refused_where_it_does_not_apply(server):
    owner, project = _project(server, texts=1, gold=1, gold_share=0.5)
    gold = min(_gold_ids(owner, project))
    regular = next(item["id"] for item in owner.items(project) if not item["is_gold"])
    with pytest.raises(ConflictError, match=f"item {regular} is not gold"):
        owner.remove_gold(project, regular)
    with pytest.raises(NotFoundError, match=f"no item 999999 in project {project}"):
        owner.remove_gold(project, 999999)
    _, worker = server.user("gold-out-worker", "worker")
    with pytest.raises(PermissionDeniedError):
        worker.remove_gold(project, gold)
    _, stranger = server.user("gold-out-stranger", "requester")
    with pytest.raises(NotFoundError):
        stranger.remove_gold(project, gold)
    assert next(item for item in owner.items(project) if item["id"] == gold)["is_gold"] is True


def _gold_answered_by_three(server: Any, prefix: str, names: tuple[str, str]) -> tuple[Any, int, int, dict[str, int]]:
    """Two gold items (both "1") and two texts, answered by three workers, each on every item with
    one label: the first named "0", the second "1", and "restarted" "0", then banned and unbanned
    (an unban starts the gold counters afresh). The owner, project, first gold item and worker ids."""
    owner, project = _project(server, texts=2, gold=2, max_overlap=3, rules={"qualification_gold": 2})
    first_gold = min(_gold_ids(owner, project))  # each worker answers both gold items first
    made = {}
    for name, label in ((names[0], "0"), (names[1], "1"), ("restarted", "0")):
        user, worker = server.user(f"{prefix}-{name}", "worker")
        made[name] = int(user["id"])
        while (task := worker.next_task(project)) is not None:
            worker.submit(task["assignment_id"], label)
    owner.ban(project, made["restarted"], "checking")
    owner.unban(project, made["restarted"], "an unban starts the counters afresh")
    return owner, project, first_gold, made


def _label_of(owner: Any, project: int, item_id: int) -> str | None:
    rows = owner.export(project, "labels", "jsonl").decode().splitlines()
    labels = {record["item_id"]: record["label"] for record in map(json.loads, rows)}
    return labels.get(item_id)


def test_a_claimed_answer_time_longer_than_a_day_is_refused(server):
    """``seconds`` had no upper bound: 1e300 made the worker table's mean time and hourly pay nonsense."""
    owner, project = _project(server)
    made, worker = server.user("rules-slow-clock", "worker")
    task = worker.next_task(project)
    with pytest.raises(InvalidInputError, match="seconds"):
        worker.submit(task["assignment_id"], "1", seconds=1e300)
    worker.submit(task["assignment_id"], "1", seconds=86_400.0)  # a day, the longest lease, is taken
    assert _standing(owner, project, int(made["id"]))["answers"] == 1
