"""A whole job with the web workforce: the loop runs while two browsers label."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_support import CHROMIUM, CHROMIUM_ARGS, LiveServer

from labelloop.config import AutomatedLabeling, JobConfig, TaskType, WebWorkforce
from labelloop.importers import TRUE_LABEL_KEY, import_ag_news
from labelloop.store import JobStore
from labelloop.store.schema import Item
from labelloop.web import add_worker, create_app, issue_admin_token
from labelloop.web.workers import admin_login_url, login_url

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

N_ITEMS = 60
# Upper bound on the whole job: feature extraction, three rounds, final outputs.
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
    """Answer the page's task with the item's true class and wait for the next."""
    task = page.locator("#task")
    assignment = task.get_attribute("data-assignment-id")
    item_id = int(task.get_attribute("data-item-id"))
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


@pytest.mark.slow
def test_whole_job_labeled_in_browsers(
    tmp_path: Path, shared_data: Path, browser
) -> None:
    imported = import_ag_news(tmp_path / "import", limit=N_ITEMS, seed=3)
    config = JobConfig(
        job_name="web-whole-job",
        task_type=TaskType.TEXT_CLASSIFICATION,
        label_attribute_name="topic",
        label_categories=tuple(imported.class_names),
        input_manifest=imported.manifest,
        output_path=tmp_path / "output",
        workforce=WebWorkforce(poll_seconds=0.2),
        workers_per_item=2,
        human_batch_size=20,
        automated_labeling=AutomatedLabeling(enabled=False),
    )
    config.output_path.mkdir(parents=True)
    store = JobStore(config.database)
    server = LiveServer(create_app(config, store))
    server.start()
    failures: list[BaseException] = []

    def run_loop() -> None:
        from labelloop.loop import run_job

        try:
            run_job(config)
        except BaseException as error:  # reported by the assert below
            failures.append(error)

    loop_thread = threading.Thread(target=run_loop, daemon=True)
    loop_thread.start()
    contexts = []
    try:
        pages = []
        for name in ("mouse-worker", "key-worker"):
            context = browser.new_context(viewport={"width": 1024, "height": 760})
            contexts.append(context)
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(login_url(server.base_url, add_worker(store, name)))
            pages.append(page)

        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while loop_thread.is_alive():
            assert time.monotonic() < deadline, "the job did not finish in time"
            answered = False
            for page, by_keyboard in zip(pages, (False, True), strict=True):
                if page.locator("#task").is_visible():
                    answer_current_task(page, store, by_keyboard=by_keyboard)
                    answered = True
            if not answered:
                time.sleep(0.3)
        loop_thread.join()
        assert failures == []

        for page in pages:
            expect(page.locator("#status")).to_contain_text(
                "The job is finished", timeout=15_000
            )
        admin = contexts[0].new_page()
        admin.goto(admin_login_url(server.base_url, issue_admin_token(store)))
        expect(admin.locator("#report-link")).to_be_visible()
        expect(admin.locator("#rounds tbody tr")).to_have_count(3)
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

    assert len(records) == N_ITEMS
    for record in records:
        metadata = record["topic-metadata"]
        assert metadata["human-annotated"] == "yes"
        assert metadata["class-name"] == record[TRUE_LABEL_KEY]
    per_worker = {"mouse-worker": 0, "key-worker": 0}
    for answer in answers:
        per_worker[answer.worker_id] += 1
    assert per_worker == {"mouse-worker": N_ITEMS, "key-worker": N_ITEMS}
