"""Worker page and dashboard in a real Chromium driven by Playwright."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from labelloop.web import add_worker, issue_admin_token
from labelloop.web.workers import admin_login_url, login_url

from web_support import CHROMIUM, CHROMIUM_ARGS, Job, build_job, build_text_job

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

# Screenshots go to docs/ only when asked for, so a test run leaves the
# tracked files alone; otherwise they go to a temporary folder.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("LABELLOOP_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "labelloop-screenshots"
)
DESKTOP = {"width": 1024, "height": 760}
PHONE = {"width": 375, "height": 740}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}; install Debian's 'chromium' package")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser) -> Iterator[object]:
    """Open a page in a fresh browser context (own cookies) of a given size."""
    contexts = []

    def open_(viewport: dict[str, int] = DESKTOP, **options: object):
        context = browser.new_context(viewport=viewport, **options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield open_
    for context in contexts:
        context.close()


def worker_page(open_page, server, job: Job, name: str, **options: object):
    page = open_page(**options)
    page.goto(login_url(server.base_url, add_worker(job.store, name)))
    expect(page).to_have_url(server.base_url + "/")
    expect(page.locator("#task")).to_be_visible()
    return page


def current_item(page) -> int:
    return int(page.locator("#task").get_attribute("data-item-id"))


def wait_for_next_task(page, assignment_id: str) -> None:
    """Wait until the page shows another assignment or no task at all."""
    page.wait_for_function(
        """(previous) => {
            const task = document.getElementById('task');
            return task.hidden || task.dataset.assignmentId !== previous;
        }""",
        arg=assignment_id,
    )


def answers_by(job: Job, worker_id: str) -> dict[int, dict]:
    return {a.item_id: a.value for a in job.store.answers() if a.worker_id == worker_id}


def test_workers_label_images_by_mouse_and_keys(
    tmp_path: Path, shared_data: Path, serve, open_page
) -> None:
    job = build_job(tmp_path, dataset="mnist", n_items=3, workers_per_item=2)
    server = serve(job)
    mouse = worker_page(open_page, server, job, "mouse-worker")
    keys = worker_page(open_page, server, job, "key-worker")
    expected_mouse: dict[int, dict] = {}
    expected_keys: dict[int, dict] = {}

    for step in range(3):
        expect(mouse.locator("#item-image")).to_be_visible()
        item = current_item(mouse)
        assignment = mouse.locator("#task").get_attribute("data-assignment-id")
        mouse.get_by_role("button", name="4", exact=True).click()
        expect(mouse.get_by_role("button", name="4", exact=True)).to_have_attribute(
            "aria-pressed", "true"
        )
        mouse.locator("#submit").click()
        expected_mouse[item] = {"class": 4}
        expect(mouse.locator("#finished-count")).to_have_text(str(step + 1))
        wait_for_next_task(mouse, assignment)

        item = current_item(keys)
        assignment = keys.locator("#task").get_attribute("data-assignment-id")
        keys.keyboard.press("8")
        keys.keyboard.press("Enter")
        expected_keys[item] = {"class": 7}
        expect(keys.locator("#finished-count")).to_have_text(str(step + 1))
        wait_for_next_task(keys, assignment)

    expect(mouse.locator("#status")).to_contain_text("No task is open")
    expect(keys.locator("#task")).to_be_hidden()
    assert answers_by(job, "mouse-worker") == expected_mouse
    assert answers_by(job, "key-worker") == expected_keys
    assert sorted(expected_mouse) == sorted(job.item_ids)
    job.store.close()


def test_worker_letter_shortcut_and_skip(
    tmp_path: Path, shared_data: Path, serve, open_page
) -> None:
    job = build_job(tmp_path, dataset="cifar10", n_items=3, workers_per_item=1)
    server = serve(job)
    page = worker_page(open_page, server, job, "alice")
    expect(page.locator("#item-image")).to_be_visible()
    page.wait_for_function("document.getElementById('item-image').naturalWidth > 0")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "worker-image-task.png"))

    skipped = current_item(page)
    page.keyboard.press("Escape")
    expect(page.locator("#task")).not_to_have_attribute("data-item-id", str(skipped))

    item = current_item(page)
    page.keyboard.press("a")
    expect(page.get_by_role("button", name="truck", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    page.keyboard.press("Enter")
    expect(page.locator("#finished-count")).to_have_text("1")

    assert answers_by(job, "alice") == {item: {"class": 9}}
    job.store.close()


def test_worker_page_escapes_item_text(tmp_path: Path, serve, open_page) -> None:
    texts = [
        "<script>window.injected = 'script'</script>Markets rally",
        '<img src="x" onerror="window.injected = \'img\'"> Storm warning',
    ]
    categories = ["<b>news</b>", '<img src="y" onerror="window.injected = 1">']
    job = build_text_job(tmp_path, texts, categories)
    server = serve(job)
    page = worker_page(open_page, server, job, "alice")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))

    names = page.locator(".category .category-name")
    assert names.all_text_contents() == categories
    assert page.locator("#categories b, #categories img").count() == 0

    shown = []
    for _ in texts:
        expect(page.locator("#item-text")).to_be_visible()
        shown.append(page.locator("#item-text").text_content())
        assert page.locator("#item-text *").count() == 0
        assignment = page.locator("#task").get_attribute("data-assignment-id")
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        expect(page.locator("#finished-count")).to_have_text(str(len(shown)))
        wait_for_next_task(page, assignment)

    assert sorted(shown) == sorted(texts)
    assert page.evaluate("window.injected === undefined")
    assert dialogs == []
    job.store.close()


def test_worker_page_fits_phone_width(text_job: Job, serve, open_page) -> None:
    server = serve(text_job)
    page = worker_page(
        open_page,
        server,
        text_job,
        "alice",
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    expect(page.locator("#item-text")).to_be_visible()

    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    boxes = [
        page.locator(selector).bounding_box()
        for selector in ("#item-text", "#submit", "#skip")
    ]
    boxes += [button.bounding_box() for button in page.locator(".category").all()]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(SCREENSHOTS / "worker-text-task-phone.png"), full_page=True
    )

    assert scroll_width <= PHONE["width"]
    for box in boxes:
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= PHONE["width"]
    for button in page.locator(".category").all():
        assert button.bounding_box()["height"] >= 44

    page.locator(".category").nth(1).tap()
    page.locator("#submit").tap()
    expect(page.locator("#finished-count")).to_have_text("1")
    assert [a.value for a in text_job.store.answers()] == [{"class": 1}]


def test_worker_page_keyboard_only_phone(text_job: Job, serve, open_page) -> None:
    server = serve(text_job)
    page = worker_page(
        open_page, server, text_job, "alice", viewport=PHONE, device_scale_factor=2
    )
    categories = list(text_job.config.label_categories)
    expected: dict[int, dict] = {}

    def focused_name() -> str | None:
        return page.evaluate(
            "document.activeElement && document.activeElement.getAttribute("
            "'aria-label') || document.activeElement.id"
        )

    def tab_to(name: str) -> None:
        """Press Tab until the element named ``name`` has the focus."""
        for _ in range(12):
            page.keyboard.press("Tab")
            if focused_name() == name:
                left, right = page.evaluate(
                    "(() => { const box = document.activeElement"
                    ".getBoundingClientRect(); return [box.left, box.right]; })()"
                )
                assert 0 <= left < right <= PHONE["width"], (name, left, right)
                return
        raise AssertionError(f"Tab never reached {name!r}")

    def finish(step: int, assignment: str) -> None:
        expect(page.locator("#finished-count")).to_have_text(str(step))
        wait_for_next_task(page, assignment)

    # Tab to the third category, Enter chooses and submits it.
    assignment = page.locator("#task").get_attribute("data-assignment-id")
    expected[current_item(page)] = {"class": 2}
    tab_to(categories[2])
    expect(page.locator(".category").nth(2)).to_have_css("outline-style", "solid")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "worker-keyboard-phone.png"))
    page.keyboard.press("Enter")
    finish(1, assignment)

    # A second Enter right away does not answer the new task unseen.
    page.keyboard.press("Enter")
    page.wait_for_timeout(500)
    expect(page.locator("#finished-count")).to_have_text("1")

    # A number key chooses and focuses its category, Enter submits it.
    assignment = page.locator("#task").get_attribute("data-assignment-id")
    expected[current_item(page)] = {"class": 3}
    page.keyboard.press("4")
    assert focused_name() == categories[3]
    page.keyboard.press("Enter")
    finish(2, assignment)

    # Tab to Skip, Enter gives the task back.
    assignment = page.locator("#task").get_attribute("data-assignment-id")
    skipped = current_item(page)
    tab_to("skip")
    page.keyboard.press("Enter")
    wait_for_next_task(page, assignment)
    assert current_item(page) != skipped

    # Tab onto the first category, then a number key moves the choice and the
    # focus to another one; Enter submits the one the key chose.
    assignment = page.locator("#task").get_attribute("data-assignment-id")
    expected[current_item(page)] = {"class": 1}
    tab_to(categories[0])
    page.keyboard.press("2")
    expect(page.locator(".category").nth(1)).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Enter")
    finish(3, assignment)

    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert answers_by(text_job, "alice") == expected


def test_worker_page_text_screenshot(text_job: Job, serve, open_page) -> None:
    server = serve(text_job)
    page = worker_page(open_page, server, text_job, "alice")
    expect(page.locator("#item-text")).to_be_visible()
    page.keyboard.press("2")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "worker-text-task.png"))

    expect(page.locator(".category").nth(1)).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#submit")).to_be_enabled()


def test_worker_page_without_login(text_job: Job, serve, open_page) -> None:
    server = serve(text_job)
    page = open_page()

    page.goto(server.base_url + "/")

    expect(page.locator("#status")).to_contain_text("not logged in")
    expect(page.locator("#task")).to_be_hidden()


def test_dashboard_shows_rounds_and_workers(text_job: Job, serve, open_page) -> None:
    server = serve(text_job)
    worker = worker_page(open_page, server, text_job, "alice")
    for count in (1, 2):
        assignment = worker.locator("#task").get_attribute("data-assignment-id")
        worker.keyboard.press("1")
        worker.keyboard.press("Enter")
        expect(worker.locator("#finished-count")).to_have_text(str(count))
        wait_for_next_task(worker, assignment)
    answered = sorted(answers_by(text_job, "alice"))
    unanswered = [
        task for task in text_job.store.tasks() if task.item_id not in answered
    ]
    text_job.store.write_human_labels(
        1,
        [(answered[0], {"class": 0}, 1.0), (answered[1], {"class": 1}, 1.0)],
        expired_task_ids=[task.id for task in unanswered],
    )
    text_job.store.finish_round(
        1,
        machine_labels=[],
        stats={
            "threshold": 0.74,
            "validation_accuracy": 0.9,
            "certified_error_bound": 0.05,
            "machine_labeled": 0,
        },
    )
    text_job.store.start_round(2, validation_ids=[], query_ids=[], plan={})
    text_job.store.finish_round(
        2,
        machine_labels=[(task.item_id, {"class": 3}, 0.97) for task in unanswered[:3]],
        stats={
            "threshold": 0.62,
            "validation_accuracy": 0.95,
            "certified_error_bound": 0.04,
            "machine_labeled": 3,
        },
    )

    page = open_page()
    page.goto(admin_login_url(server.base_url, issue_admin_token(text_job.store)))
    expect(page).to_have_url(server.base_url + "/admin")
    expect(page.locator("#dashboard")).to_be_visible()

    expect(page.locator("#quality-chart polyline")).to_have_count(3)
    bars = page.locator("#volume-chart rect.bar title")
    expect(bars).to_have_count(4)
    assert sorted(bars.all_text_contents()) == [
        "human labeled, round 1: 2",
        "human labeled, round 2: 0",
        "machine labeled, round 1: 0",
        "machine labeled, round 2: 3",
    ]
    expect(page.locator("#rounds tbody tr")).to_have_count(2)
    workers = page.locator("#workers tbody tr")
    expect(workers).to_have_count(1)
    expect(workers.first).to_contain_text("alice")
    expect(workers.first).to_contain_text("50.0 %")
    expect(page.locator("#report")).to_contain_text("when the job ends")
    expired = page.locator(".counter", has=page.locator("dt", has_text="Expired"))
    expect(expired.locator("dd")).to_have_text(str(len(unanswered)))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    report_dir = text_job.config.output_path / "report"
    report_dir.mkdir()
    (report_dir / "report.html").write_text("<h1>Job report</h1>", encoding="utf-8")
    expect(page.locator("#report-link")).to_be_visible(timeout=15_000)
    page.locator("#report-link").click()
    expect(page.locator("h1")).to_have_text("Job report")
