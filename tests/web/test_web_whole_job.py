"""Whole jobs with the web workforce: the loop runs while two browsers label.

One job labels AG News texts and one MNIST digits. Each item goes to both browser
workers, who answer with the item's true class; the output manifest must mark
every label as human-annotated.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labelloop.config import TaskType
from labelloop.importers import (
    TRUE_LABEL_KEY,
    ImportResult,
    import_ag_news,
    import_mnist,
)
from labelloop.store import JobStore
from labelloop.store.schema import Item
from labelloop.web import add_worker, issue_admin_token
from labelloop.web.workers import admin_login_url, login_url

from web_support import CHROMIUM, CHROMIUM_ARGS, start_web_loop

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

# Screenshots go to docs/ only when asked for, so a test run leaves the
# tracked files alone; otherwise they go to a temporary folder.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("LABELLOOP_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "labelloop-screenshots"
)
WORKERS = ("mouse-worker", "key-worker")
BATCH_SIZE = 20
# Upper bound on a whole job: feature extraction, its rounds, final outputs.
JOB_TIMEOUT_SECONDS = 600


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}; install Debian's 'chromium' package")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def true_class(store: JobStore, item_id: int) -> str:
    with store.session() as session:
        return session.get(Item, item_id).record[TRUE_LABEL_KEY]


def answer_current_task(page, store: JobStore, *, by_keyboard: bool) -> None:
    """Answer the page's task with the item's true class and wait for the next.

    An image task is answered only once the browser has decoded its image.
    """
    task = page.locator("#task")
    assignment = task.get_attribute("data-assignment-id")
    item_id = int(task.get_attribute("data-item-id"))
    if page.locator("#item-image").is_visible():
        page.wait_for_function(
            """() => {
                const image = document.getElementById('item-image');
                return image.complete && image.naturalWidth > 0;
            }"""
        )
    name = true_class(store, item_id)
    button = page.get_by_role("button", name=name, exact=True)
    if by_keyboard:
        page.keyboard.press(button.get_attribute("aria-keyshortcuts"))
        expect(button).to_have_attribute("aria-pressed", "true")
        page.keyboard.press("Enter")
    else:
        button.click()
        page.locator("#submit").click()
    page.wait_for_function(
        """(previous) => {
            const task = document.getElementById('task');
            return task.hidden || task.dataset.assignmentId !== previous;
        }""",
        arg=assignment,
        timeout=30_000,
    )


def run_job_in_browsers(
    browser,
    imported: ImportResult,
    *,
    folder: Path,
    task_type: TaskType,
    job_name: str,
    attribute: str,
    rounds: int,
    screenshot_prefix: str | None = None,
) -> None:
    """Run a job with two browser workers to its end and check its outputs.

    The loop runs in a thread beside a live server. One worker answers by mouse
    and one by keyboard, both with each item's true class. With
    ``screenshot_prefix``, the worker page and the finished dashboard are saved
    to the documentation's screenshots.
    """
    n_items = len(imported.manifest.read_text().splitlines())
    web_loop = start_web_loop(
        folder,
        imported,
        job_name=job_name,
        task_type=task_type,
        attribute=attribute,
        poll_seconds=0.2,
        human_batch_size=BATCH_SIZE,
    )
    config, store, server = web_loop.config, web_loop.store, web_loop.server
    contexts = []
    try:
        pages = []
        for name in WORKERS:
            context = browser.new_context(viewport={"width": 1024, "height": 760})
            contexts.append(context)
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(login_url(server.base_url, add_worker(store, name)))
            pages.append(page)

        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        answered_by_first = 0
        while web_loop.thread.is_alive():
            assert time.monotonic() < deadline, "the job did not finish in time"
            answered = False
            for page, by_keyboard in zip(pages, (False, True), strict=True):
                if not page.locator("#task").is_visible():
                    continue
                if screenshot_prefix and page is pages[0] and answered_by_first == 1:
                    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                    page.screenshot(
                        path=str(SCREENSHOTS / f"{screenshot_prefix}-task.png")
                    )
                answer_current_task(page, store, by_keyboard=by_keyboard)
                answered_by_first += page is pages[0]
                answered = True
            if not answered:
                time.sleep(0.3)
        web_loop.thread.join()
        assert web_loop.failures == []

        for page in pages:
            expect(page.locator("#status")).to_contain_text(
                "The job is finished", timeout=15_000
            )
        admin = contexts[0].new_page()
        admin.goto(admin_login_url(server.base_url, issue_admin_token(store)))
        expect(admin.locator("#report-link")).to_be_visible()
        expect(admin.locator("#rounds tbody tr")).to_have_count(rounds)
        expect(admin.locator("#workers tbody tr")).to_have_count(len(WORKERS))
        expect(admin.locator("#job-status")).to_have_text("completed")
        if screenshot_prefix:
            admin.screenshot(
                path=str(SCREENSHOTS / f"{screenshot_prefix}-dashboard.png"),
                full_page=True,
            )
        admin.locator("#report-link").click()
        expect(admin).to_have_url(server.base_url + "/admin/report/report.html")
        assert admin.title()
    finally:
        for context in contexts:
            context.close()
        server.stop()

    manifest = config.output_path / "manifests" / "output" / "output.manifest"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    answers = store.answers()
    store.close()

    assert len(records) == n_items
    for record in records:
        metadata = record[f"{attribute}-metadata"]
        assert metadata["human-annotated"] == "yes"
        assert metadata["class-name"] == record[TRUE_LABEL_KEY]
        assert record[attribute] == imported.class_names.index(record[TRUE_LABEL_KEY])
    per_worker = dict.fromkeys(WORKERS, 0)
    for answer in answers:
        per_worker[answer.worker_id] += 1
    assert per_worker == dict.fromkeys(WORKERS, n_items)


@pytest.mark.slow
def test_whole_text_job_in_browsers(tmp_path: Path, shared_data: Path, browser) -> None:
    imported = import_ag_news(tmp_path / "import", limit=60, seed=3)

    run_job_in_browsers(
        browser,
        imported,
        folder=tmp_path,
        task_type=TaskType.TEXT_CLASSIFICATION,
        job_name="web-ag-news",
        attribute="topic",
        rounds=3,
    )


@pytest.mark.slow
def test_whole_image_job_in_browsers(
    tmp_path: Path, shared_data: Path, browser
) -> None:
    if not (shared_data / "mnist").is_dir():
        pytest.skip(f"MNIST not found under {shared_data}")
    imported = import_mnist(tmp_path / "import", limit=40, seed=5)

    run_job_in_browsers(
        browser,
        imported,
        folder=tmp_path,
        task_type=TaskType.IMAGE_CLASSIFICATION,
        job_name="web-mnist",
        attribute="digit",
        rounds=2,
        screenshot_prefix="whole-job-mnist",
    )
