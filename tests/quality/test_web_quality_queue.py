"""Worker quality in the web workforce: exclusion, gold tasks, required answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labelloop.config import JobConfig, TaskType, WebWorkforce, WorkerQualitySettings
from labelloop.consolidation import get_consolidator
from labelloop.manifest import write_manifest
from labelloop.quality import WorkerQualityTracker
from labelloop.store import JobStore
from labelloop.store.schema import GOLD_PURPOSE
from labelloop.web import add_worker
from labelloop.web.context import WebContext
from labelloop.web.dashboard import worker_activity
from labelloop.web.errors import WebRequestError
from labelloop.web.queue import CANCELLED, TaskQueue

CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
TEXTS = [
    ("Parliament votes on the new budget after a long night", "World"),
    ("The striker scored twice in the cup final", "Sports"),
    ("Shares rose after the bank reported record profits", "Business"),
    ("A new chip doubles battery life of phones", "Sci/Tech"),
    ("Talks between the two countries resume in Geneva", "World"),
    ("The coach was sacked after five straight losses", "Sports"),
    ("Oil prices fell for the third week in a row", "Business"),
    ("Astronomers find water vapour on a distant planet", "Sci/Tech"),
]
N_GOLD = 3


class WebJob:
    """A web job with its first round posted and the last items marked gold."""

    def __init__(self, folder: Path, *, workers_per_item: int, **quality: object):
        manifest = folder / "manifest.jsonl"
        records = [{"source": text} for text, _ in TEXTS]
        for record, (_, label) in zip(records[-N_GOLD:], TEXTS[-N_GOLD:], strict=True):
            record["known-topic"] = label
        write_manifest(manifest, records)
        self.config = JobConfig(
            job_name="web-quality",
            task_type=TaskType.TEXT_CLASSIFICATION,
            label_attribute_name="topic",
            label_categories=tuple(CLASSES),
            input_manifest=manifest,
            output_path=folder / "out",
            workforce=WebWorkforce(),
            workers_per_item=workers_per_item,
            worker_quality=WorkerQualitySettings(
                gold_label_key="known-topic", **quality
            ),
        )
        self.config.output_path.mkdir(parents=True)
        self.store = JobStore(self.config.database)
        self.store.create_job(
            name=self.config.job_name,
            task_type=self.config.task_type.value,
            class_names=CLASSES,
            config=self.config.model_dump(mode="json"),
            items=[(line, r, None, r["source"]) for line, r in enumerate(records, 1)],
            failures=[],
        )
        self.tracker = WorkerQualityTracker(
            self.config, self.store, consolidator=get_consolidator("majority-vote")
        )
        self.gold_ids = self.tracker.prepare_gold()
        ids = [item.id for item in self.store.items() if item.id not in self.gold_ids]
        self.store.start_round(1, validation_ids=ids, query_ids=[], plan={})
        self.queue = TaskQueue(
            self.store,
            CLASSES,
            workers_per_item=self.config.initial_answers_per_item,
            time_limit_seconds=60,
            availability_seconds=self.config.task_availability_lifetime_seconds,
            gold_per_worker=self.config.worker_quality.gold_per_worker,
        )

    def task_purpose(self, task_id: int) -> str:
        return next(t.purpose for t in self.store.tasks() if t.id == task_id)


@pytest.fixture
def web_job(tmp_path: Path) -> Iterator[WebJob]:
    job = WebJob(tmp_path, workers_per_item=1, gold_per_worker=0)
    yield job
    job.store.close()


def test_prepare_gold_posts_round_free_tasks(web_job: WebJob) -> None:
    gold_tasks = [t for t in web_job.store.tasks() if t.purpose == GOLD_PURPOSE]
    labels = web_job.store.labels()

    assert len(web_job.gold_ids) == N_GOLD
    assert web_job.tracker.prepare_gold() == []
    assert sorted(t.item_id for t in gold_tasks) == sorted(web_job.gold_ids)
    assert all(t.round == 0 and t.status == "open" for t in gold_tasks)
    assert all(labels[i].origin == "human" for i in web_job.gold_ids)
    assert all(labels[i].confidence == 1.0 for i in web_job.gold_ids)


def test_excluded_worker_loses_assignment(web_job: WebJob) -> None:
    add_worker(web_job.store, "w1")
    add_worker(web_job.store, "w2")
    held = web_job.queue.next_task("w1")
    assert held is not None

    cancelled = web_job.store.exclude_worker(
        "w1", message="worker w1 excluded", data={"estimated_accuracy": 0.1}
    )

    assert cancelled == 1
    assert web_job.queue.next_task("w1") is None
    with pytest.raises(WebRequestError) as caught:
        web_job.queue.submit("w1", held.assignment_id, "World")
    assert caught.value.status_code == 409
    assert CANCELLED in str(caught.value)
    # The task that w1 held goes to the next worker.
    taken = web_job.queue.next_task("w2")
    assert taken is not None
    assert taken.task_id == held.task_id
    event = web_job.store.events("worker-excluded")[0]
    assert event.data["worker_id"] == "w1"
    assert event.data["estimated_accuracy"] == 0.1


def test_required_answers_raise_task_cap(web_job: WebJob) -> None:
    for name in ("w1", "w2", "w3"):
        add_worker(web_job.store, name)
    first = web_job.queue.next_task("w1")
    assert first is not None
    web_job.queue.submit("w1", first.assignment_id, "World")
    web_job.store.set_required_answers({first.task_id: 2})

    second = web_job.queue.next_task("w2")
    assert second is not None
    web_job.queue.submit("w2", second.assignment_id, "World")
    third = web_job.queue.next_task("w3")

    assert second.task_id == first.task_id
    assert third is not None
    assert third.task_id != first.task_id


def test_gold_tasks_follow_quota(tmp_path: Path) -> None:
    job = WebJob(tmp_path, workers_per_item=1, gold_per_worker=N_GOLD)
    for name in ("w1", "w2"):
        add_worker(job.store, name)

    served = []
    for _ in range(2):
        task = job.queue.next_task("w1")
        assert task is not None
        served.append(task)
        job.queue.submit("w1", task.assignment_id, "World")
    other = job.queue.next_task("w2")
    job.store.close()

    # The round-1 quota is one gold answer, served first.
    assert [job.task_purpose(t.task_id) for t in served] == [GOLD_PURPOSE, "validation"]
    assert served[0].item_id in job.gold_ids
    assert other is not None
    assert job.task_purpose(other.task_id) == GOLD_PURPOSE


def test_gold_quota_grows_next_round(tmp_path: Path) -> None:
    job = WebJob(tmp_path, workers_per_item=1, gold_per_worker=N_GOLD)
    add_worker(job.store, "w1")
    first = job.queue.next_task("w1")
    assert first is not None
    job.queue.submit("w1", first.assignment_id, "World")
    round_1 = [t.id for t in job.store.tasks(round_number=1)]
    job.store.write_human_labels(1, [])
    job.store.finish_round(1, machine_labels=[], stats={})
    between = job.queue.next_task("w1")
    job.store.start_round(2, validation_ids=[], query_ids=[], plan={})

    second = job.queue.next_task("w1")
    job.store.close()

    assert round_1
    # No gold task goes out while no round is collecting.
    assert between is None
    assert second is not None
    assert job.task_purpose(second.task_id) == GOLD_PURPOSE
    assert second.item_id != first.item_id


def test_excluded_answers_replaced_by_web(web_job: WebJob) -> None:
    add_worker(web_job.store, "w1")
    add_worker(web_job.store, "w2")
    task = web_job.queue.next_task("w1")
    assert task is not None
    web_job.queue.submit("w1", task.assignment_id, "Sports")
    web_job.store.exclude_worker("w1", message="excluded", data={})
    result = web_job.tracker.update(1)

    required = web_job.tracker.more_answers(1, result, expired=set())

    # Only the answered task lost its answer; w2 can give one more.
    assert required == {task.task_id: 2}


def test_dashboard_shows_worker_quality(web_job: WebJob) -> None:
    add_worker(web_job.store, "w1")
    add_worker(web_job.store, "w2")
    task = web_job.queue.next_task("w1")
    assert task is not None
    web_job.queue.submit("w1", task.assignment_id, "World")
    web_job.tracker.update(1)
    context = WebContext(
        config=web_job.config,
        store=web_job.store,
        queue=web_job.queue,
        secure_cookies=False,
        session_lifetime_seconds=3600,
    )

    rows = {row.worker_id: row for row in worker_activity(context)}

    assert rows["w1"].tasks_done == 1
    assert rows["w1"].estimated_accuracy is not None
    assert rows["w1"].excluded is False
    assert rows["w1"].gold_answers == 0
    assert rows["w1"].gold_accuracy is None
    assert rows["w2"].tasks_done == 0
    assert rows["w2"].estimated_accuracy is not None
