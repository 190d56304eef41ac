"""The web UI in headless Chromium over a real server: the worker's keyboard loop, the requester's
form, import and live dashboard, escaping of item content, and project isolation by URL."""

from __future__ import annotations

import statistics
from typing import Any

from ui_support import SCREENSHOTS, sign_in, wait_until

from support import item_id_of

GOLD_EXPLANATION = "The sentence says it plainly."


def _project(owner: Any, texts: list[str], **spec: Any) -> int:
    values = {"name": "sentiment", "labels": ["negative", "positive"], "max_overlap": 3, "price": 0.02, "budget": 5.0,
              "instructions": "Is the sentence positive or negative?"}  # fmt: skip
    project = owner.create_project(**(values | spec))
    owner.import_items(project["id"], [{"data": {"text": text}} for text in texts])
    return int(project["id"])


def _worker_on(server: Any, context: Any, user: Any, project: int) -> tuple[Any, int, Any]:
    """A new worker, signed in, on the project's labeling page: (page, worker id, SDK client)."""
    worker_id, token, worker_sdk = user("worker")
    page = context.new_page()
    sign_in(page, server.url, token)
    page.goto(f"{server.url}/ui/work.html?project={project}")
    return page, worker_id, worker_sdk


def _shown(page: Any) -> str:
    return str(page.inner_text("#item .item"))


def _answer_with_key(page: Any, key: str, previous: str) -> str:
    """Press ``key`` on the item shown, then wait for the next one; the text that was answered."""
    page.keyboard.press(key)
    wait_until(page, lambda: page.inner_text("#item") != previous, "the next item")
    return previous


def test_a_worker_labels_with_the_keyboard_and_the_answers_are_stored(server, context, user):
    _, _, owner = user("requester")
    texts = [f"review number {i}: the food was {'great' if i % 2 else 'awful'}" for i in range(14)]
    project = _project(owner, texts, gold_share=0.1)
    owner.import_items(project, [{"data": {"text": "A wonderful, happy day."}, "gold_label": "positive",
                                  "gold_explanation": GOLD_EXPLANATION}])  # fmt: skip
    owner.start(project)
    page, _, worker_sdk = _worker_on(server, context, user, project)
    page.wait_for_selector("#item .item")
    # the first task is the gold item: answered wrong, the right answer and the explanation show
    assert _shown(page) == "A wonderful, happy day."
    page.wait_for_timeout(300)  # the worker reads; the next task is fetched meanwhile
    _answer_with_key(page, "1", _shown(page))
    page.wait_for_selector("#feedback:not([hidden])")
    assert "positive" in page.inner_text("#feedback") and GOLD_EXPLANATION in page.inner_text("#feedback")
    assert 'to "A wonderful, happy day."' in page.inner_text("#feedback")  # the item it is about, now gone
    wait_until(page, lambda: page.inner_text("#accuracy") == "0%", "the accuracy on gold")
    answered: dict[str, str] = {}
    for index in range(8):
        text = _shown(page)
        page.wait_for_timeout(250)
        key = "2" if "great" in text else "1"
        answered[text] = ["negative", "positive"][int(key) - 1]
        _answer_with_key(page, key, text)
        if index == 0:  # the next answer hides the feedback: it stayed over unrelated items
            assert page.locator("#feedback").is_hidden()
        if index == 3:  # undo the answer just given: its item comes back, and is answered again
            page.keyboard.press("u")
            wait_until(page, lambda text=text: text in page.inner_text("#item"), "the undone item")
            page.wait_for_selector("#message:has-text('Undone')")
            page.wait_for_timeout(250)
            answered[text] = "negative" if answered[text] == "positive" else "positive"
            _answer_with_key(page, "2" if answered[text] == "positive" else "1", text)
    wait_until(page, lambda: page.inner_text("#answers") == str(len(answered) + 1), "every answer counted")
    page.screenshot(path=str(SCREENSHOTS / "worker.png"))
    # A timing is taken when the next item is painted, which may come after the count when the last
    # answer found no item queued and the next one came from a refill.
    every_timing = len(answered) + 2  # every answer and the undo's re-answer
    wait_until(page, lambda: len(page.evaluate("window.crowdloopTimings")) >= every_timing, "every timing")
    timings = page.evaluate("window.crowdloopTimings")
    assert len(timings) == every_timing
    print(f"\nkey press -> next item painted: p50 {statistics.median(timings):.1f} ms, max {max(timings):.1f} ms")
    stored = {row["text"]: row["label"] for row in _answers(owner, project)}
    assert {text: stored.get(text) for text in answered} == answered
    assert len(_answers(owner, project)) == len(answered) + 1  # the undone answer is gone
    assert worker_sdk.standing(project)["answers"] == len(answered) + 1


def _answers(owner: Any, project: int) -> list[dict[str, Any]]:
    import json

    lines = owner.export(project, "answers", "jsonl").decode().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    items = {item["id"]: item["data"]["text"] for item in owner.items(project, limit=1000)}
    return [{"text": items[row["item_id"]], "label": row["label"]} for row in rows]


def test_no_answer_is_lost_when_the_connection_drops(server, context, user):
    _, _, owner = user("requester")
    project = _project(owner, [f"offline sentence {i}" for i in range(6)])
    owner.start(project)
    page, _, _ = _worker_on(server, context, user, project)
    page.wait_for_selector("#item .item")
    page.wait_for_timeout(300)
    context.set_offline(True)
    first = _answer_with_key(page, "2", _shown(page))  # the prefetched item shows even offline
    page.wait_for_selector("#connection:has-text('Connection problem')")
    assert "Nothing is lost" in page.inner_text("#connection")
    page.route("**/answer", lambda route: route.abort())  # the server stays unreachable for answers...
    context.set_offline(False)
    page.reload()  # ...and a reload keeps the waiting answer: it is saved in the browser
    page.wait_for_selector("#connection:has-text('Connection problem')")
    assert first not in [row["text"] for row in _answers(owner, project)]
    page.unroute("**/answer")
    wait_until(page, lambda: "problem" not in page.inner_text("#connection"), "the answer sent", timeout=20)
    page.wait_for_selector("#item .item")
    assert {"text": first, "label": "positive"} in _answers(owner, project)


def test_a_requester_creates_a_project_imports_and_watches_the_dashboard(server, context, user, tmp_path):
    _, token, owner = user("requester")
    page = context.new_page()
    sign_in(page, server.url, token)
    page.click("#new-project")
    page.fill("input[name=name]", "movie reviews")
    page.fill("input[name=labels]", "negative, positive")
    page.fill("textarea[name=instructions]", "Read the review. Is it positive?")
    page.fill("input[name=min_overlap]", "2")
    page.fill("input[name=max_overlap]", "3")
    page.fill("input[name=gold_share]", "0")
    page.fill("input[name=price]", "0.05")
    page.fill("input[name=budget]", "20")
    page.select_option("select[name=aggregation_method]", "dawid_skene")
    page.fill("input[name=min_gold_accuracy]", "0.75")
    page.fill("input[name=hold_back_quantile]", "0.5")
    page.click("button[type=submit]")
    page.wait_for_url("**/project.html?project=*")
    project = int(page.url.rsplit("=", 1)[1])
    created = owner.project(project)
    assert created["labels"] == ["negative", "positive"] and created["budget"] == 20.0
    assert created["aggregation_method"] == "dawid_skene" and created["rules"]["min_gold_accuracy"] == 0.75
    assert created["rules"]["hold_back_quantile"] == 0.5 and created["rules"]["max_skips_in_row"] is None
    _change_settings(page, owner, project)
    rows = [f"movie {i} was {'superb' if i % 2 else 'dull'}" for i in range(10)]
    csv = tmp_path / "items.csv"
    csv.write_text("text,gold_label\n" + "\n".join(f"{row}," for row in rows) + f"\n{rows[0]},\nbad row,maybe\n")
    page.set_input_files("#items-file", str(csv))
    page.click("#upload-form button")
    page.wait_for_selector("#import-summary")
    summary = page.inner_text("#import-report")
    assert (
        "12 rows received: 10 items created, 0 items made gold, 1 duplicates merged, 1 rejected" in summary
        and "maybe" in summary
    )
    page.click("#start")
    page.wait_for_selector("#status:has-text('active')")
    page.wait_for_selector("#message:has-text('Started: 10 items want answers.')")
    page.click("#pause")
    page.wait_for_selector("#status:has-text('paused')")
    assert owner.project(project)["status"] == "paused"
    assert page.inner_text("#start") == "Resume"
    page.click("#start")
    page.wait_for_selector("#message:has-text('Resumed: 10 items want answers.')")
    page.wait_for_selector("#progress-text:has-text('0 / 10 items done')")
    page.wait_for_selector("#status:has-text('active')")
    crowd = [user("worker") for _ in range(3)]
    for index, (_, _, worker) in enumerate(crowd):
        for _ in range(10 if index < 2 else 4):
            task = worker.next_task(project)
            if task is None:
                break
            good = "superb" in task["data"]["text"]
            label = "positive" if good != (index == 2) else "negative"  # the third worker disagrees
            worker.submit(task["assignment_id"], label, seconds=4.0)
    done = owner.status(project)["items_done"]
    assert done > 0
    page.wait_for_selector(f"#progress-text:has-text('{done} / 10 items done')")
    wait_until(page, lambda: page.inner_text("#alpha") != "–", "the agreement")
    page.click("#aggregate")  # labels from truth inference: cost per label and reliability appear
    page.wait_for_selector("#message:has-text('Aggregated 24 answers')")
    wait_until(page, lambda: page.inner_text("#cost").startswith("$"), "the cost per label")
    assert page.locator("#workers-body tr").count() == 3
    assert (
        page.locator("#timeline svg rect.bar").count() == 30 and page.locator("#histogram svg rect.bar").count() == 10
    )
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
    _export(page, owner, project)
    _ban_from_the_table(page, owner, project, crowd[2][0])
    _review(page, server, owner, project)


def _change_settings(page: Any, owner: Any, project: int) -> None:
    """The dashboard's settings form: a cleared rule is turned off; a refusal says why and changes nothing."""
    page.click("#settings summary")
    page.wait_for_selector("#settings input[name=confidence_target]")
    assert page.input_value("#settings input[name=min_gold_accuracy]") == "0.75"
    page.fill("#settings input[name=confidence_target]", "0.9")
    page.fill("#settings input[name=min_gold_accuracy]", "")
    assert page.input_value("#settings input[name=lease_seconds]") == "600" and page.is_checked(
        "#settings [name=open_to_all]"
    )
    page.fill("#settings input[name=lease_seconds]", "120")
    page.uncheck("#settings input[name=open_to_all]")
    assert page.input_value("#settings input[name=fields]") == ""  # no import yet has declared them
    page.fill("#settings input[name=fields]", "text, source")
    page.click("#settings button[type=submit]")
    page.wait_for_selector("#settings-message:has-text('Settings saved')")
    saved = owner.project(project)
    assert saved["confidence_target"] == 0.9 and saved["rules"]["min_gold_accuracy"] is None
    assert saved["lease_seconds"] == 120 and saved["open_to_all"] is False
    assert saved["fields"] == ["text", "source"]
    page.check("#settings input[name=open_to_all]")  # open again for the crowd below
    page.evaluate("document.querySelector('#settings-message').textContent = ''")
    page.click("#settings button[type=submit]")
    # the notice comes after the form is drawn again from the answer: fields filled before it would be
    # overwritten by that redraw (under CI's load the next step's values were, and saved as valid)
    page.wait_for_selector("#settings-message:has-text('Settings saved')")
    assert owner.project(project)["open_to_all"] is True
    assert saved["rules"]["hold_back_quantile"] == 0.5 and saved["aggregation_method"] == "dawid_skene"
    page.fill("#settings input[name=min_overlap]", "3")
    page.fill("#settings input[name=max_overlap]", "2")
    page.click("#settings button[type=submit]")
    page.wait_for_selector("#settings-message:has-text('max_overlap must be at least min_overlap')")
    assert (owner.project(project)["min_overlap"], owner.project(project)["max_overlap"]) == (2, 3)
    page.reload()  # the form shows what is stored
    page.click("#settings summary")
    assert page.input_value("#settings input[name=max_overlap]") == "3"
    page.click("#settings summary")  # folded again, as a requester leaves it


def _export(page: Any, owner: Any, project: int) -> None:
    """The dashboard downloads what the API exports: nothing on the web did."""
    with page.expect_download() as labels:
        page.click("#exports button:has-text('Labels (CSV)')")
    path = labels.value.path()
    assert labels.value.suggested_filename == f"project-{project}-labels.csv"
    assert path.read_bytes() == owner.export(project, "labels", "csv")
    with page.expect_download() as payouts:
        page.click("#exports button:has-text('Payouts (CSV)')")
    assert payouts.value.path().read_text().startswith("worker_id,name,answers,answer_pay,bonuses,total")


def _ban_from_the_table(page: Any, owner: Any, project: int, worker_id: int) -> None:
    row = page.locator(f"#workers-body tr[data-worker='{worker_id}']")
    row.locator("input").fill("disagrees with everyone")
    row.locator("button").click()
    page.wait_for_selector(
        f"#workers-body tr[data-worker='{worker_id}'] td.ban:has-text('ban: disagrees with everyone')"
    )
    assert [ban["reason"] for ban in owner.bans(project)] == ["disagrees with everyone"]


def _review(page: Any, server: Any, owner: Any, project: int) -> None:
    page.click("#review-link")
    page.wait_for_selector("article.review")
    first = page.locator("article.review").first
    item_id = int(first.get_attribute("data-item") or 0)
    assert first.locator("tbody tr").count() >= 2  # every answer is shown
    page.screenshot(path=str(SCREENSHOTS / "review.png"))
    first.locator("button", has_text="positive").click()
    page.wait_for_selector(f"article.review[data-item='{item_id}']:has-text('now gold')")
    item = next(row for row in owner.items(project) if row["id"] == item_id)
    assert item["is_gold"] and item["gold_label"] == "positive"
    # the decided item is gold now, but no answer on it was judged as gold: none was missed
    page.reload()
    page.wait_for_selector("#gold p.muted, #gold article.gold")
    assert page.locator(f"article.gold[data-item='{item_id}']").count() == 0


def test_a_requester_corrects_a_missed_gold_label_then_takes_it_out_of_gold(server, context, user):
    _, owner_token, owner = user("requester")
    project = _project(owner, ["plain one", "plain two"], gold_share=0.5, max_overlap=2)
    owner.import_items(project, [{"data": {"text": "a control"}, "gold_label": "positive"}])
    owner.start(project)
    gold_item = next(item["id"] for item in owner.items(project) if item["is_gold"])
    for _ in range(2):  # a newcomer's first task is gold: both say "negative"
        _, _, worker = user("worker")
        task = worker.next_task(project)
        assert item_id_of(owner, project, task) == gold_item
        worker.submit(task["assignment_id"], "negative")
    page = context.new_page()
    sign_in(page, server.url, owner_token)
    page.goto(f"{server.url}/ui/review.html?project={project}")
    missed = page.locator(f"article.gold[data-item='{gold_item}']")
    missed.wait_for()
    assert "gold label positive, missed by 2 of 2" in missed.inner_text()
    missed.locator("button", has_text="Correct to negative").click()
    page.wait_for_selector(
        f"article.gold[data-item='{gold_item}']:has-text('gold is now \"negative\" (was \"positive\")')"
    )
    assert missed.inner_text().count(": 1/1 gold answers right") == 2  # whose tallies moved, and to what
    assert next(row for row in owner.items(project) if row["id"] == gold_item)["gold_label"] == "negative"
    # on second thoughts the item is too ambiguous to judge workers by: it leaves gold
    owner.correct_gold(project, gold_item, "positive")  # missed again, so it is listed
    page.reload()
    missed.wait_for()
    missed.locator("button", has_text="Not gold").click()
    page.wait_for_selector(f"article.gold[data-item='{gold_item}']:has-text('no longer gold (was \"positive\")')")
    item = next(row for row in owner.items(project) if row["id"] == gold_item)
    assert (item["is_gold"], item["gold_label"]) == (False, None)


XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def test_item_content_is_shown_as_text_never_run(server, context, user):
    _, owner_token, owner = user("requester")
    project = _project(owner, [XSS, "a pair"], max_overlap=2, fields=["text", "premise", "hypothesis"])
    report = owner.import_items(project, [{"data": {"premise": XSS, "hypothesis": "<b>bold?</b>"}}])
    assert report["created"] == 1, report
    owner.start(project)
    page, _, _ = _worker_on(server, context, user, project)
    seen = set()
    for _ in range(3):
        page.wait_for_selector("#item .item")
        seen.add(_shown(page))
        assert page.locator("#item img, #item script, #item b").count() == 0
        page.wait_for_timeout(200)
        _answer_with_key(page, "1", str(page.inner_text("#item")))
        if page.locator("#item .loading").count() or page.locator("#item .notice").count():
            break
    assert XSS in seen and any("<b>bold?</b>" in text and XSS in text for text in seen)
    assert page.evaluate("window.__xss") is None
    review = context.new_page()
    sign_in(review, server.url, owner_token)
    review.goto(f"{server.url}/ui/review.html?project={project}")
    review.wait_for_selector("article.review")
    assert XSS in review.inner_text("#queue") and review.locator("#queue script, #queue img").count() == 0
    assert review.evaluate("window.__xss") is None


def test_a_worker_cannot_open_another_projects_item_by_changing_the_url(server, context, user):
    _, _, owner = user("requester")
    _, _, other = user("requester")
    mine = _project(owner, ["an item for everyone"])
    owner.start(mine)
    closed = _project(other, ["SECRET closed-project item"], open_to_all=False)
    other.start(closed)
    draft = _project(other, ["SECRET draft item"])
    _, token, worker = user("worker")
    page = context.new_page()
    sign_in(page, server.url, token)
    assert page.locator(f"#projects-body a[href='work.html?project={mine}']").count() == 1
    assert page.locator(f"#projects-body a[href='work.html?project={closed}']").count() == 0
    for project in (closed, draft, 999_999):
        page.goto(f"{server.url}/ui/work.html?project={project}")
        page.wait_for_selector("#item .notice.error")
        assert "No such project" in page.inner_text("#item")
        assert "SECRET" not in page.content()
    assert worker.standing(mine)["answers"] == 0


def test_a_banned_worker_keys_answer_nothing_and_home_says_banned(server, context, user):
    """Banned mid-session, the keys still "answered" the leased items no longer shown, each a
    refusal; and the home page offered the project with a Start button."""
    _, _, owner = user("requester")
    project = _project(owner, [f"sentence {i}" for i in range(6)])
    owner.start(project)
    page, worker_id, worker = _worker_on(server, context, user, project)
    page.wait_for_selector("#item .item")
    page.wait_for_timeout(250)
    _answer_with_key(page, "1", _shown(page))
    wait_until(page, lambda: worker.standing(project)["answers"] == 1, "the first answer stored")
    owner.ban(project, worker_id, "testing")
    page.keyboard.press("2")  # refused: the page learns of the ban and stops
    page.wait_for_selector("#item .notice.error")
    said = page.inner_text("#message")
    for key in ("1", "2", "1"):
        page.keyboard.press(key)
    page.wait_for_timeout(1000)
    assert page.inner_text("#message") == said and page.locator("#labels").is_hidden()
    page.goto(f"{server.url}/ui/")
    page.wait_for_selector("#projects-body tr")
    assert page.locator(f"#projects-body a[href='work.html?project={project}']").count() == 0
    assert "banned" in page.inner_text("#projects-body")


def test_an_answer_a_second_tab_gave_first_is_said_to_stand(server, context, user):
    """Two tabs show the same leased item; the second tab's answer on it was dropped without a word."""
    _, _, owner = user("requester")
    project = _project(owner, [f"sentence {i}" for i in range(4)])
    owner.start(project)
    first, _, worker = _worker_on(server, context, user, project)
    token = first.evaluate("sessionStorage.getItem('crowdloop.token')")
    second = context.new_page()
    sign_in(second, server.url, token)
    second.goto(f"{server.url}/ui/work.html?project={project}")
    for page in (first, second):
        page.wait_for_selector("#item .item")
    shown = _shown(first)
    assert _shown(second) == shown
    first.wait_for_timeout(250)
    _answer_with_key(first, "1", shown)
    wait_until(first, lambda: worker.standing(project)["answers"] == 1, "the first tab's answer stored")
    second.wait_for_timeout(250)
    second.keyboard.press("2")
    second.wait_for_selector("#message:has-text('was already answered \"negative\"')")
    assert 'your "positive" was not recorded' in second.inner_text("#message")
    assert {"text": shown, "label": "negative"} in _answers(owner, project)


def test_the_dashboard_drops_its_warning_once_it_refreshes_again(server, context, user):
    _, token, owner = user("requester")
    project = _project(owner, ["one"])
    page = context.new_page()
    sign_in(page, server.url, token)
    page.goto(f"{server.url}/ui/project.html?project={project}")
    page.wait_for_selector("#status:has-text('draft')")
    page.route("**/dashboard", lambda route: route.abort())
    page.wait_for_selector("#message:has-text('Cannot refresh the dashboard')")
    page.unroute("**/dashboard")
    page.wait_for_selector("#message", state="hidden")  # it stayed, over a dashboard that was fresh again
    page.click("#start")
    page.wait_for_selector("#status:has-text('active')")
    wait_until(page, lambda: page.evaluate("document.activeElement.id") == "pause", "the keyboard on Pause")


def test_opening_a_project_says_when_workers_would_find_nothing(server, context, user):
    _, token, owner = user("requester")
    project = owner.create_project(name="empty", labels=["a", "b"])["id"]
    page = context.new_page()
    sign_in(page, server.url, token)
    page.goto(f"{server.url}/ui/project.html?project={project}")
    page.wait_for_selector("#status:has-text('draft')")
    page.click("#start")
    page.wait_for_selector("#message:has-text('active but has no items: import items')")
    assert "warn" in page.get_attribute("#message", "class")
    owner.import_items(project, [{"data": {"text": "one"}}])
    owner.update_project(project, status="finished")
    page.wait_for_selector("#start:has-text('Reopen')")
    page.click("#start")
    page.wait_for_selector("#message:has-text('Reopened: 1 item wants answers.')")
    assert owner.project(project)["status"] == "active"


def test_the_import_report_names_near_duplicates_as_the_file_does(server, context, user, tmp_path):
    _, token, owner = user("requester")
    project = owner.create_project(name="near", labels=["a", "b"])["id"]
    owner.import_items(
        project,
        [{"data": {"text": "The quick brown fox jumps over the lazy dog by the river"}, "external_id": "old-1"}],
    )
    csv = tmp_path / "near.csv"
    csv.write_text(
        "id,text\nnew-1,The quick brown fox jumps over the lazy dog by the river!\nnew-2,Nothing like it at all and a different line\n"
    )
    page = context.new_page()
    sign_in(page, server.url, token)
    page.goto(f"{server.url}/ui/project.html?project={project}")
    page.set_input_files("#items-file", str(csv))
    page.click("#upload-form button")
    page.wait_for_selector("#import-report p")
    assert page.query_selector("#import-report ul.near"), page.inner_text("#import-report")
    line = page.inner_text("#import-report ul.near li")
    old = owner.items(project)[0]["id"]
    assert line.startswith(f"row 1 (id new-1) is like item {old} (id old-1) (similarity 0."), line


def test_the_worker_page_fits_a_phone(server, browser, user):
    _, _, owner = user("requester")
    shapes = ["text", "premise", "hypothesis", "image_url", "question"]  # a project of items of three shapes
    project = _project(owner, ["Two texts, side by side on a desktop and stacked on a phone."], fields=shapes)
    owner.import_items(
        project, [{"data": {"premise": "A man plays a guitar on stage.", "hypothesis": "A person makes music."}}]
    )
    owner.import_items(project, [{"data": {"image_url": f"{server.url}/ui/img/icon.svg", "question": "A logo?"}}])
    owner.start(project)
    _, token, _ = user("worker")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = phone.new_page()
    sign_in(page, server.url, token)
    page.goto(f"{server.url}/ui/work.html?project={project}")
    page.wait_for_selector("#item .item")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    kinds = set()
    for answered in range(1, 4):  # a text, a pair (stacked at this width), an image by URL
        page.wait_for_selector("#item .item")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        kind = _check_shown_kind(page)
        kinds.add(kind)
        if kind == "pair":
            page.screenshot(path=str(SCREENSHOTS / "worker-phone.png"), full_page=True)
        if answered < 3:
            page.locator("button.label").first.tap()
            wait_until(page, lambda n=answered: page.inner_text("#answers") == str(n), "the answer counted")
    assert kinds == {"text", "pair", "image"}
    phone.close()


def _check_shown_kind(page: Any) -> str:
    if page.locator("#item .item-pair").count():
        sides = page.locator("#item .item-side").all()
        assert sides[0].bounding_box()["y"] < sides[1].bounding_box()["y"]  # stacked, one above the other
        return "pair"
    if page.locator("#item img").count():
        image = page.locator("#item img")
        wait_until(page, lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"), "the image loaded")
        return "image"
    return "text"


def _queued(page: Any, key: str) -> int:
    import json

    return len(json.loads(page.evaluate(f"localStorage.getItem('{key}')") or "[]"))


def test_answers_waiting_in_the_browser_outlive_a_refused_token(server, context, user):
    """A 401 dropped every answer waiting to be sent, right after the page said nothing was lost;
    and the queue was the project's, not the worker's, so the next worker on the browser sent it."""
    _, _, owner = user("requester")
    project = _project(owner, [f"queued sentence {i}" for i in range(4)])
    owner.start(project)
    worker_id, token, worker_sdk = user("worker")
    page = context.new_page()
    sign_in(page, server.url, token)
    page.goto(f"{server.url}/ui/work.html?project={project}")
    page.wait_for_selector("#item .item")
    key = f"crowdloop.outbox.{worker_id}.{project}"
    context.set_offline(True)
    page.keyboard.press("2")
    wait_until(page, lambda: _queued(page, key) == 1, "the answer kept in the browser")
    page.evaluate("sessionStorage.setItem('crowdloop.token', 'cl_revoked'); "
                  "localStorage.setItem('crowdloop.token', 'cl_revoked')")  # fmt: skip
    context.set_offline(False)
    page.wait_for_timeout(2500)  # the queue is tried against the refused token
    assert _queued(page, key) == 1
    sign_in(page, server.url, token)
    page.goto(f"{server.url}/ui/work.html?project={project}")
    wait_until(page, lambda: _queued(page, key) == 0, "the kept answer sent once signed in")
    assert worker_sdk.standing(project)["answers"] == 1


def test_an_item_whose_lease_ran_out_waits_for_the_worker_and_nothing_is_leased_meanwhile(server, context, user):
    """A tab left open past the lease showed items whose answers were refused, two of them; then it
    leased two new items every lease period, for ever, with nobody there to answer them."""
    _, _, owner = user("requester")
    # 12 s: after Enter, the new item must be answered before the page stops trusting its lease (3 s
    # early), on a loaded machine
    project = _project(owner, [f"leased sentence {i}" for i in range(8)], lease_seconds=12)
    owner.start(project)
    page, _, worker_sdk = _worker_on(server, context, user, project)
    page.wait_for_selector("#item .item")
    batches: list[str] = []
    page.on("request", lambda request: batches.append(request.url) if "/tasks/batch" in request.url else None)
    page.wait_for_selector("#back", timeout=30_000)  # the item on screen ran out (12 s, less the 3 s margin)
    assert page.locator("#labels").is_hidden() and "ran out" in page.inner_text("#item")
    taken = len(batches)
    page.keyboard.press("2")  # a label key answers nothing while away
    page.wait_for_timeout(3000)  # the item held ahead runs out too
    assert len(batches) == taken, "items were leased while the worker was away"
    assert worker_sdk.standing(project)["answers"] == 0
    page.keyboard.press("Enter")
    page.wait_for_selector("#item .item")
    assert len(batches) > taken
    page.wait_for_timeout(300)
    page.keyboard.press("2")
    wait_until(page, lambda: worker_sdk.standing(project)["answers"] == 1, "the answer accepted")
    assert "expired" not in page.inner_text("#message")


def test_a_requester_bans_with_the_keyboard_alone(server, context, user):
    """The worker table was redrawn every 2 s: a reason being typed lost its focus, and a focused
    Ban button was replaced before Enter reached it."""
    _, owner_token, owner = user("requester")
    project = _project(owner, [f"banned sentence {i}" for i in range(3)])
    owner.start(project)
    worker_id, _, worker_sdk = user("worker")
    assert worker_sdk.next_task(project) is not None  # enrolled: the worker is in the table
    page = context.new_page()
    sign_in(page, server.url, owner_token)
    page.goto(f"{server.url}/ui/project.html?project={project}")
    reason = f"#workers-body tr[data-worker='{worker_id}'] input"
    page.wait_for_selector(reason)
    page.click(reason)
    page.keyboard.type("too")
    page.wait_for_timeout(2500)  # a refresh of the table passes
    page.keyboard.type(" fast")
    assert page.input_value(reason) == "too fast"
    page.keyboard.press("Enter")
    wait_until(page, lambda: any(b["action"] == "ban" for b in owner.bans(project)), "the ban")
    assert owner.bans(project)[-1]["reason"] == "too fast"


def test_a_paused_project_is_said_so_and_work_comes_back_by_itself(server, context, user):
    """The page said "Nothing left to do" for a paused project and never looked again."""
    _, _, owner = user("requester")
    project = _project(owner, [f"paused sentence {i}" for i in range(3)])
    owner.start(project)
    owner.update_project(project, status="paused")
    page, _, _ = _worker_on(server, context, user, project)
    page.wait_for_selector("#item:has-text('This project is paused')")
    owner.start(project)
    page.wait_for_selector("#item .item", timeout=90_000)  # the page asks again within 30 s
    assert not page.is_hidden("#labels")


def test_an_undo_while_offline_says_it_waits_then_happens(server, context, user):
    """An undo pressed offline did nothing visible, then fired seconds after the connection came back."""
    _, _, owner = user("requester")
    project = _project(owner, [f"offline sentence {i}" for i in range(4)])
    owner.start(project)
    page, _, worker_sdk = _worker_on(server, context, user, project)
    page.wait_for_selector("#item .item")
    context.set_offline(True)
    answered = _answer_with_key(page, "2", _shown(page))
    page.wait_for_selector("#connection:has-text('saved on this device')")
    page.keyboard.press("u")
    page.wait_for_selector("#message:has-text('Undo waits for the connection')")
    context.set_offline(False)
    page.wait_for_selector("#message:has-text('Undone')", timeout=20_000)
    assert answered in page.inner_text("#item") and worker_sdk.standing(project)["answers"] == 0
