"""Tests of the web workforce's wait for answers: complete, expired and failed tasks."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

from labelloop.config import JobConfig, parse_job_config
from labelloop.store import JobStore
from labelloop.store.schema import Task, utcnow
from labelloop.workforce import make_workforce
from labelloop.workforce.web import WebWorkers

CLASSES = ["cat", "dog"]
LIFETIME_SECONDS = 60


def web_config(tmp_path: Path) -> JobConfig:
    raw = {
        "job_name": "pets",
        "task_type": "text-classification",
        "label_attribute_name": "pet",
        "label_categories": CLASSES,
        "input_manifest": "input.manifest",
        "output_path": "out",
        "workforce": {"type": "web", "poll_seconds": 0.05},
        "workers_per_item": 2,
        "task_availability_lifetime_seconds": LIFETIME_SECONDS,
    }
    return parse_job_config(raw, base_dir=tmp_path, source="inline job")


def store_with_round(folder: Path, n_items: int) -> tuple[JobStore, list[Task]]:
    """Create a job of ``n_items`` texts and post them all in round 1."""
    folder.mkdir(parents=True, exist_ok=True)
    store = JobStore(f"sqlite:///{(folder / 'job.db').as_posix()}")
    store.create_job(
        name="pets",
        task_type="text-classification",
        class_names=CLASSES,
        config={},
        items=[
            (line, {"source": f"text {line}"}, None, f"text {line}")
            for line in range(1, n_items + 1)
        ],
        failures=[],
    )
    ids = [item.id for item in store.items()]
    store.start_round(1, validation_ids=ids, query_ids=[], plan={})
    for name in ("ann", "ben"):
        store.ensure_worker(name, kind="web")
    return store, store.tasks(round_number=1)


def answer(store: JobStore, task: Task, *workers: str) -> None:
    store.add_answers(
        (task.id, task.item_id, worker, {"class": 0}, 1.0) for worker in workers
    )


def post_earlier(store: JobStore, task: Task, seconds: float) -> None:
    """Move a task's posting time into the past, as if that time had passed."""
    with store.session() as session:
        session.get(Task, task.id).created_at = utcnow() - timedelta(seconds=seconds)


def collect_in_thread(
    workers: WebWorkers, store: JobStore
) -> tuple[threading.Thread, list[list[int]]]:
    results: list[list[int]] = []
    thread = threading.Thread(
        target=lambda: results.append(workers.collect(store, 1)), daemon=True
    )
    thread.start()
    return thread, results


def test_web_workforce_is_registered(tmp_path: Path) -> None:
    workforce = make_workforce(web_config(tmp_path), CLASSES)

    assert isinstance(workforce, WebWorkers)


def test_collect_returns_expired_tasks(tmp_path: Path) -> None:
    store, tasks = store_with_round(tmp_path / "job", 4)
    answer(store, tasks[0], "ann", "ben")
    answer(store, tasks[1], "ann")
    answer(store, tasks[3], "ann", "ben")
    post_earlier(store, tasks[1], LIFETIME_SECONDS + 1)
    post_earlier(store, tasks[2], LIFETIME_SECONDS + 1)
    post_earlier(store, tasks[3], LIFETIME_SECONDS + 1)

    expired = WebWorkers(config=web_config(tmp_path), class_names=CLASSES).collect(
        store, 1
    )

    assert sorted(expired) == [tasks[1].id, tasks[2].id]
    store.close()


def test_collect_waits_for_missing_answers(tmp_path: Path) -> None:
    store, tasks = store_with_round(tmp_path / "job", 2)
    answer(store, tasks[0], "ann", "ben")
    answer(store, tasks[1], "ann")
    workers = WebWorkers(config=web_config(tmp_path), class_names=CLASSES)

    thread, results = collect_in_thread(workers, store)
    time.sleep(0.5)
    waiting = thread.is_alive()
    answer(store, tasks[1], "ben")
    thread.join(timeout=10)

    assert waiting
    assert not thread.is_alive()
    assert results == [[]]
    store.close()


def test_collect_expires_task_while_waiting(tmp_path: Path) -> None:
    store, tasks = store_with_round(tmp_path / "job", 2)
    answer(store, tasks[0], "ann", "ben")
    workers = WebWorkers(config=web_config(tmp_path), class_names=CLASSES)

    thread, results = collect_in_thread(workers, store)
    time.sleep(0.3)
    waiting = thread.is_alive()
    post_earlier(store, tasks[1], LIFETIME_SECONDS + 1)
    thread.join(timeout=10)

    assert waiting
    assert not thread.is_alive()
    assert results == [[tasks[1].id]]
    store.close()


def test_collect_skips_tasks_of_failed_items(tmp_path: Path) -> None:
    store, tasks = store_with_round(tmp_path / "job", 3)
    answer(store, tasks[0], "ann", "ben")
    answer(store, tasks[2], "ann", "ben")
    store.fail_item(tasks[1].item_id, "image cannot be decoded")
    workers = WebWorkers(config=web_config(tmp_path), class_names=CLASSES)

    thread, results = collect_in_thread(workers, store)
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert results == [[]]
    store.close()
