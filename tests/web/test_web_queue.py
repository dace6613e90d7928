"""Task queue of the web workforce, against a real SQLite job database."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from labelloop.store.schema import Answer, Assignment, Task, utcnow
from labelloop.web import add_worker
from labelloop.web.errors import WebRequestError
from labelloop.web.queue import EXPIRED, TaskQueue

from web_support import Job, build_job


def make_queue(job: Job, *, time_limit: float = 60.0) -> TaskQueue:
    return TaskQueue(
        job.store,
        job.config.label_categories,
        workers_per_item=job.config.workers_per_item,
        time_limit_seconds=time_limit,
        availability_seconds=job.config.task_availability_lifetime_seconds,
    )


def test_queue_item_goes_to_distinct_workers(text_job: Job) -> None:
    queue = make_queue(text_job)
    for name in ("w1", "w2", "w3"):
        add_worker(text_job.store, name)

    first = queue.next_task("w1")
    second = queue.next_task("w2")
    third = queue.next_task("w3")

    assert first is not None and second is not None and third is not None
    assert first.task_id == second.task_id
    assert third.task_id != first.task_id


def test_queue_repeats_held_assignment(text_job: Job) -> None:
    queue = make_queue(text_job)
    add_worker(text_job.store, "w1")

    first = queue.next_task("w1")
    again = queue.next_task("w1")

    assert first is not None and again is not None
    assert again.assignment_id == first.assignment_id


def test_queue_never_repeats_answered_item(text_job: Job) -> None:
    queue = make_queue(text_job)
    add_worker(text_job.store, "w1")

    seen = []
    while (task := queue.next_task("w1")) is not None:
        seen.append(task.item_id)
        queue.submit("w1", task.assignment_id, "World")

    assert sorted(seen) == sorted(text_job.item_ids)
    assert queue.finished_count("w1") == len(text_job.item_ids)


def test_queue_expired_assignment_frees_slot(text_job: Job) -> None:
    queue = make_queue(text_job, time_limit=30)
    for name in ("w1", "w2", "w3"):
        add_worker(text_job.store, name)
    now = utcnow()

    held_1 = queue.next_task("w1", now=now)
    held_2 = queue.next_task("w2", now=now)
    assert held_1 is not None and held_2 is not None
    blocked = queue.next_task("w3", now=now)
    assert blocked is not None
    assert blocked.task_id != held_1.task_id

    later = now + timedelta(seconds=31)
    queue.skip("w3", blocked.assignment_id, now=now)
    retaken = queue.next_task("w3", now=later)
    assert retaken is not None
    assert retaken.task_id == held_1.task_id

    with pytest.raises(WebRequestError) as raised:
        queue.submit("w1", held_1.assignment_id, "World", now=later)
    assert raised.value.status_code == 409
    assert "expired" in raised.value.detail

    queue.next_task("w1", now=later)
    with text_job.store.session() as session:
        status = session.get(Assignment, held_1.assignment_id).status
    assert status == EXPIRED


def test_queue_skipped_task_comes_last(text_job: Job) -> None:
    queue = make_queue(text_job)
    add_worker(text_job.store, "w1")

    first = queue.next_task("w1")
    assert first is not None
    queue.skip("w1", first.assignment_id)

    order = []
    while (task := queue.next_task("w1")) is not None:
        order.append(task.task_id)
        queue.submit("w1", task.assignment_id, "Sports")

    assert order[-1] == first.task_id
    assert len(order) == len(text_job.task_ids)


def test_queue_rejects_foreign_assignment(text_job: Job) -> None:
    queue = make_queue(text_job)
    add_worker(text_job.store, "w1")
    add_worker(text_job.store, "w2")
    task = queue.next_task("w1")
    assert task is not None

    with pytest.raises(WebRequestError) as raised:
        queue.submit("w2", task.assignment_id, "World")

    assert raised.value.status_code == 403
    assert text_job.store.answers() == []


def test_queue_skips_closed_and_old_tasks(tmp_path: Path, shared_data: Path) -> None:
    job = build_job(tmp_path, n_items=3)
    queue = make_queue(job)
    add_worker(job.store, "w1")
    with job.store.session() as session:
        tasks = list(session.scalars(select(Task).order_by(Task.id)))
        tasks[0].status = "complete"
        tasks[1].created_at = utcnow() - timedelta(
            seconds=job.config.task_availability_lifetime_seconds + 1
        )

    offered = queue.next_task("w1")

    assert offered is not None
    assert offered.task_id == tasks[2].id
    job.store.close()


def test_queue_concurrent_workers_keep_limits(
    tmp_path: Path, shared_data: Path
) -> None:
    job = build_job(tmp_path, n_items=10, workers_per_item=3)
    queue = make_queue(job)
    names = [f"w{index}" for index in range(24)]
    for name in names:
        add_worker(job.store, name)
    errors: list[BaseException] = []
    stored: list[tuple[str, int]] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        try:
            while (task := queue.next_task(name)) is not None:
                queue.submit(name, task.assignment_id, "Business")
                with lock:
                    stored.append((name, task.item_id))
        except BaseException as error:  # reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    answers = job.store.answers()
    per_task = Counter(answer.task_id for answer in answers)
    assert sorted((a.worker_id, a.item_id) for a in answers) == sorted(stored)
    assert len(answers) == 10 * 3
    assert max(per_task.values()) == 3
    assert len({(a.worker_id, a.item_id) for a in answers}) == len(answers)
    with job.store.session() as session:
        assert session.scalar(select(Answer.id).where(Answer.task_id.is_(None))) is None
    job.store.close()
