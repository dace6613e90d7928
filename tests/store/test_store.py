"""Tests of the job store on a real SQLite file: writes, counters and atomicity."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.exc import IntegrityError

from labelloop.store import JobStore

CLASSES = ["cat", "dog", "bird"]


def make_store(tmp_path: Path, *, n_items: int = 5, failures: int = 1) -> JobStore:
    """Create a job with ``n_items`` readable items and ``failures`` failed lines."""
    store = JobStore(f"sqlite:///{(tmp_path / 'job.db').as_posix()}")
    items = [
        (line, {"source": f"text {line}", "true-label": "cat"}, None, f"text {line}")
        for line in range(1, n_items + 1)
    ]
    failed = [
        (n_items + offset, f"line is not JSON ({offset})")
        for offset in range(1, failures + 1)
    ]
    store.create_job(
        name="pets",
        task_type="text-classification",
        class_names=CLASSES,
        config={"seed": 3},
        items=items,
        failures=failed,
    )
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    job_store = make_store(tmp_path)
    yield job_store
    job_store.close()


def item_ids(store: JobStore) -> list[int]:
    return [item.id for item in store.items()]


def test_create_job_stores_items_and_failures(store: JobStore) -> None:
    job = store.job()
    items = store.items()
    failed = store.items(status="failed")

    assert job is not None
    assert job.name == "pets"
    assert job.class_names == CLASSES
    assert job.config == {"seed": 3}
    assert job.status == "running"
    assert [item.line for item in items] == [1, 2, 3, 4, 5]
    assert items[0].record == {"source": "text 1", "true-label": "cat"}
    assert items[0].text == "text 1"
    assert [item.line for item in failed] == [6]
    assert failed[0].error == "line is not JSON (1)"
    assert failed[0].record is None
    assert [event.message for event in store.events("item-failed")] == [
        "line 6: line is not JSON (1)"
    ]


def test_counters_follow_labels(store: JobStore) -> None:
    ids = item_ids(store)
    assert store.counters() == {
        "HumanLabeled": 0,
        "MachineLabeled": 0,
        "TotalLabeled": 0,
        "Unlabeled": 5,
        "FailedNonRetryableError": 1,
    }

    store.start_round(1, validation_ids=ids[:2], query_ids=[], plan={})
    store.write_human_labels(
        1, [(ids[0], {"class": 0}, 1.0), (ids[1], {"class": 1}, 0.9)]
    )
    store.finish_round(1, machine_labels=[(ids[2], {"class": 2}, 0.97)], stats={})
    store.fail_item(ids[4], "image does not decode")

    assert store.counters() == {
        "HumanLabeled": 2,
        "MachineLabeled": 1,
        "TotalLabeled": 3,
        "Unlabeled": 1,
        "FailedNonRetryableError": 2,
    }


def test_fail_item_marks_once(store: JobStore) -> None:
    target = item_ids(store)[1]

    store.fail_item(target, "image does not decode")
    store.fail_item(target, "second reason")

    failed = {item.id: item for item in store.items(status="failed")}
    assert failed[target].error == "image does not decode"
    events = [event for event in store.events("item-failed") if event.item_id == target]
    assert [event.message for event in events] == ["line 2: image does not decode"]


def test_fail_unknown_item_ignored(store: JobStore) -> None:
    store.fail_item(9999, "no such item")

    assert len(store.items(status="failed")) == 1


def test_start_round_posts_tasks(store: JobStore) -> None:
    ids = item_ids(store)
    store.start_round(1, validation_ids=ids[:2], query_ids=ids[2:3], plan={"n": 3})

    tasks = store.tasks(round_number=1)
    rounds = store.rounds()

    assert [(task.item_id, task.purpose) for task in tasks] == [
        (ids[0], "validation"),
        (ids[1], "validation"),
        (ids[2], "query"),
    ]
    assert all(task.status == "open" for task in tasks)
    assert [(row.number, row.status, row.stats) for row in rounds] == [
        (1, "collecting", {"plan": {"n": 3}})
    ]


def test_start_round_reposts_expired_tasks(store: JobStore) -> None:
    ids = item_ids(store)
    store.start_round(1, validation_ids=ids[:2], query_ids=[], plan={})
    (expired, answered) = store.tasks(round_number=1)
    store.write_human_labels(
        1, [(ids[1], {"class": 0}, 1.0)], expired_task_ids=[expired.id]
    )

    # A task that did not expire cannot be posted again, and the round
    # that requests it is not opened.
    with pytest.raises(
        ValueError, match=f"item {ids[1]} has no expired validation task"
    ):
        store.start_round(
            2, validation_ids=[], query_ids=[], plan={}, reposted_ids=[ids[1]]
        )
    assert [row.number for row in store.rounds()] == [1]

    store.start_round(
        2, validation_ids=ids[2:3], query_ids=[], plan={}, reposted_ids=[ids[0]]
    )
    tasks = store.tasks()
    (event,) = store.events("tasks-reposted")

    # The item keeps its one task, now open in round 2 and posted anew.
    assert [(t.id, t.item_id, t.round, t.status) for t in tasks] == [
        (expired.id, ids[0], 2, "open"),
        (answered.id, ids[1], 1, "complete"),
        (tasks[2].id, ids[2], 2, "open"),
    ]
    assert tasks[0].created_at > expired.created_at
    assert event.data == {"round": 2, "item_ids": [ids[0]], "earlier_rounds": [1]}
    assert event.message == "round 2: 1 expired task posted again"


def test_start_round_reposts_tasks_by_purpose(store: JobStore) -> None:
    ids = item_ids(store)
    store.start_round(1, validation_ids=ids[:1], query_ids=ids[1:2], plan={})
    (validation, query) = store.tasks(round_number=1)
    store.write_human_labels(1, [], expired_task_ids=[validation.id, query.id])

    # A query task never comes back as a validation task, nor the reverse.
    with pytest.raises(
        ValueError, match=f"item {ids[1]} has no expired validation task"
    ):
        store.start_round(
            2, validation_ids=[], query_ids=[], plan={}, reposted_ids=[ids[1]]
        )
    with pytest.raises(ValueError, match=f"item {ids[0]} has no expired query task"):
        store.start_round(
            2, validation_ids=[], query_ids=[], plan={}, reposted_query_ids=[ids[0]]
        )
    assert [row.number for row in store.rounds()] == [1]

    store.start_round(
        2,
        validation_ids=[],
        query_ids=[],
        plan={},
        reposted_ids=[ids[0]],
        reposted_query_ids=[ids[1]],
    )
    (event,) = store.events("tasks-reposted")

    assert [(t.id, t.purpose, t.round, t.status) for t in store.tasks()] == [
        (validation.id, "validation", 2, "open"),
        (query.id, "query", 2, "open"),
    ]
    assert event.message == "round 2: 2 expired tasks posted again"
    assert event.data == {
        "round": 2,
        "item_ids": [ids[0], ids[1]],
        "earlier_rounds": [1, 1],
    }


def test_add_answers_skips_duplicates(store: JobStore) -> None:
    ids = item_ids(store)
    store.ensure_worker("w1", kind="simulated")
    store.ensure_worker("w2", kind="simulated")
    store.start_round(1, validation_ids=ids[:2], query_ids=[], plan={})
    task_ids = [task.id for task in store.tasks(round_number=1)]

    first = store.add_answers(
        [
            (task_ids[0], ids[0], "w1", {"class": 0}, 4.0),
            (task_ids[0], ids[0], "w2", {"class": 1}, 5.0),
            # The same worker twice in one call.
            (task_ids[1], ids[1], "w1", {"class": 2}, None),
            (task_ids[1], ids[1], "w1", {"class": 0}, None),
        ]
    )
    second = store.add_answers([(task_ids[0], ids[0], "w1", {"class": 2}, 1.0)])

    answers = store.answers()
    assert first == 3
    assert second == 0
    assert [(a.item_id, a.worker_id, a.value) for a in answers] == [
        (ids[0], "w1", {"class": 0}),
        (ids[0], "w2", {"class": 1}),
        (ids[1], "w1", {"class": 2}),
    ]
    assert store.answer_counts(1) == {task_ids[0]: 2, task_ids[1]: 1}
    assert [a.worker_id for a in store.answers([ids[1]])] == ["w1"]


def test_answer_needs_known_worker(store: JobStore) -> None:
    ids = item_ids(store)

    with pytest.raises(IntegrityError):
        store.add_answers([(None, ids[0], "nobody", {"class": 0}, None)])

    assert store.answers() == []


def test_human_label_written_once(store: JobStore) -> None:
    ids = item_ids(store)
    store.start_round(1, validation_ids=ids[:3], query_ids=[], plan={})
    expired = store.tasks(round_number=1)[2].id

    store.write_human_labels(
        1,
        [(ids[0], {"class": 0}, 1.0), (ids[1], {"class": 1}, 0.6)],
        expired_task_ids=[expired],
    )
    store.start_round(2, validation_ids=ids[3:4], query_ids=[], plan={})
    store.write_human_labels(
        2, [(ids[0], {"class": 2}, 1.0), (ids[3], {"class": 1}, 1.0)]
    )

    labels = store.labels()
    assert labels[ids[0]].value == {"class": 0}
    assert labels[ids[0]].round == 1
    assert labels[ids[1]].confidence == 0.6
    assert labels[ids[3]].round == 2
    assert {label.origin for label in labels.values()} == {"human"}
    assert [task.status for task in store.tasks(round_number=1)] == [
        "complete",
        "complete",
        "expired",
    ]
    assert [row.status for row in store.rounds()] == ["labeled", "labeled"]


def test_machine_label_keeps_human_label(store: JobStore) -> None:
    ids = item_ids(store)
    store.start_round(1, validation_ids=ids[:1], query_ids=[], plan={})
    store.write_human_labels(1, [(ids[0], {"class": 0}, 1.0)])

    store.finish_round(
        1,
        machine_labels=[(ids[0], {"class": 2}, 0.99), (ids[1], {"class": 1}, 0.98)],
        stats={"machine": 2},
    )

    labels = store.labels()
    assert (labels[ids[0]].origin, labels[ids[0]].value) == ("human", {"class": 0})
    assert (labels[ids[1]].origin, labels[ids[1]].value) == ("machine", {"class": 1})


def test_replacing_machine_labels_keeps_human_labels(store: JobStore) -> None:
    ids = item_ids(store)
    store.start_round(1, validation_ids=ids[:1], query_ids=[], plan={})
    store.write_human_labels(1, [(ids[0], {"class": 0}, 1.0)])
    store.finish_round(
        1,
        machine_labels=[(ids[1], {"class": 1}, 0.9), (ids[2], {"class": 1}, 0.9)],
        stats={},
    )
    store.start_round(2, validation_ids=ids[1:2], query_ids=[], plan={})
    store.write_human_labels(2, [(ids[1], {"class": 2}, 1.0)])

    store.finish_round(
        2,
        machine_labels=[(ids[0], {"class": 2}, 0.99), (ids[3], {"class": 2}, 0.95)],
        stats={},
        replace_machine_labels=True,
    )

    labels = store.labels()
    by_origin = {
        origin: sorted(i for i, lab in labels.items() if lab.origin == origin)
        for origin in ("human", "machine")
    }
    assert by_origin == {"human": [ids[0], ids[1]], "machine": [ids[3]]}
    assert labels[ids[1]].value == {"class": 2}
    assert labels[ids[3]].round == 2
    assert labels[ids[0]].confidence == 1.0


def test_finish_round_writes_stats(store: JobStore) -> None:
    ids = item_ids(store)
    store.start_round(1, validation_ids=ids[:1], query_ids=[], plan={"query": 0})

    store.finish_round(
        1, machine_labels=[(ids[2], {"class": 1}, 0.97)], stats={"threshold": 0.9}
    )

    (row,) = store.rounds()
    assert row.status == "done"
    assert row.stats == {"plan": {"query": 0}, "threshold": 0.9}
    assert row.finished_at is not None
    assert [event.message for event in store.events("round-done")] == [
        "round 1: 1 machine labels"
    ]


def test_finish_round_all_or_nothing(store: JobStore) -> None:
    ids = item_ids(store)
    store.start_round(1, validation_ids=ids[:1], query_ids=[], plan={"n": 1})

    # The second label points at no item, so its foreign key fails at commit.
    with pytest.raises(IntegrityError):
        store.finish_round(
            1,
            machine_labels=[(ids[2], {"class": 1}, 0.97), (9999, {"class": 0}, 0.99)],
            stats={"threshold": 0.9},
        )

    assert store.labels() == {}
    (row,) = store.rounds()
    assert row.status == "collecting"
    assert row.stats == {"plan": {"n": 1}}
    assert row.finished_at is None
    assert store.events("round-done") == []
    assert store.counters()["MachineLabeled"] == 0


def test_finish_unknown_round_writes_nothing(store: JobStore) -> None:
    ids = item_ids(store)

    with pytest.raises(LookupError, match="round 4 does not exist"):
        store.finish_round(4, machine_labels=[(ids[0], {"class": 1}, 0.97)], stats={})

    assert store.labels() == {}
    assert store.events("round-done") == []


def test_features_round_trip_float32(store: JobStore) -> None:
    ids = item_ids(store)
    rng = np.random.default_rng(0)
    vectors = {
        ids[0]: rng.normal(size=8),
        ids[1]: rng.normal(size=8).astype(np.float32),
    }

    store.put_features("minilm", vectors)
    found = store.features("minilm", ids)

    assert set(found) == {ids[0], ids[1]}
    for item_id, vector in vectors.items():
        assert found[item_id].dtype == np.float32
        np.testing.assert_array_equal(found[item_id], vector.astype(np.float32))
    assert store.features("other-extractor", ids) == {}


def test_features_replaced_and_chunked(tmp_path: Path) -> None:
    store = make_store(tmp_path, n_items=1000, failures=0)
    ids = item_ids(store)
    store.put_features("hash", {item_id: np.full(3, item_id) for item_id in ids})
    store.put_features("hash", {ids[0]: np.zeros(3)})

    found = store.features("hash", ids)
    store.close()

    assert len(found) == 1000
    np.testing.assert_array_equal(found[ids[0]], np.zeros(3, dtype=np.float32))
    np.testing.assert_array_equal(found[ids[-1]], np.full(3, ids[-1], np.float32))


def test_set_job_status_completed(store: JobStore) -> None:
    store.set_job_status("completed")
    job = store.job()

    assert job is not None
    assert job.status == "completed"
    assert job.finished_at is not None


WRITER = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path

    from labelloop.store import JobStore

    url, folder, task_id, item_id = sys.argv[1:]
    store = JobStore(url)
    for index in range(3):
        store.add_answers(
            [(int(task_id), int(item_id), f"w{index}", {"class": index}, 1.0)]
        )
        go = Path(folder) / f"go-{index}"
        deadline = time.monotonic() + 60
        while not go.exists():
            if time.monotonic() > deadline:
                sys.exit(f"timed out waiting for {go}")
            time.sleep(0.02)
    store.close()
    """
)


def test_second_process_sees_commits(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    ids = item_ids(store)
    for index in range(3):
        store.ensure_worker(f"w{index}", kind="web")
    store.start_round(1, validation_ids=ids[:1], query_ids=[], plan={})
    task_id = store.tasks(round_number=1)[0].id
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            store.url,
            str(tmp_path),
            str(task_id),
            str(ids[0]),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for index in range(3):
            # The writer waits after each commit until this process has seen it.
            deadline = time.monotonic() + 60
            while len(store.answers()) < index + 1:
                assert writer.poll() is None, writer.stderr.read()
                assert time.monotonic() < deadline, "answer never became visible"
                time.sleep(0.02)
            answers = store.answers()
            assert [a.worker_id for a in answers] == [f"w{i}" for i in range(index + 1)]
            assert answers[-1].value == {"class": index}
            assert store.answer_counts(1) == {task_id: index + 1}
            (tmp_path / f"go-{index}").touch()
        _, errors = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        store.close()

    assert writer.returncode == 0, errors
