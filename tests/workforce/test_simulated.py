"""Tests of simulated workers: error rates, distinct workers, seeds, bad items."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import binom, chisquare

from labelloop.config import JobConfig, parse_job_config
from labelloop.errors import ConfigError
from labelloop.store import JobStore
from labelloop.workforce import SimulatedWorkers, make_workforce

CLASSES = ["ant", "bee", "cricket", "dragonfly"]


def job_config(
    tmp_path: Path,
    *,
    error_rates: list[float],
    workers_per_item: int = 1,
    seed: int = 0,
) -> JobConfig:
    raw = {
        "job_name": "insects",
        "task_type": "image-classification",
        "label_attribute_name": "insect",
        "label_categories": CLASSES,
        "input_manifest": "input.manifest",
        "output_path": "out",
        "workforce": {"type": "simulated", "error_rates": error_rates},
        "workers_per_item": workers_per_item,
        "seed": seed,
    }
    return parse_job_config(raw, base_dir=tmp_path, source="inline job")


def store_with_items(folder: Path, records: list[dict[str, Any]]) -> JobStore:
    """Create a job whose items are ``records`` and post them all in round 1."""
    folder.mkdir(parents=True, exist_ok=True)
    store = JobStore(f"sqlite:///{(folder / 'job.db').as_posix()}")
    store.create_job(
        name="insects",
        task_type="image-classification",
        class_names=CLASSES,
        config={},
        items=[(line, record, None, None) for line, record in enumerate(records, 1)],
        failures=[],
    )
    ids = [item.id for item in store.items()]
    store.start_round(1, validation_ids=ids, query_ids=[], plan={})
    return store


def truth_records(n_items: int, *, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {"source-ref": f"s3://bucket/{index}.jpg", "true-label": CLASSES[label]}
        for index, label in enumerate(rng.integers(0, len(CLASSES), size=n_items))
    ]


def collect_answers(
    tmp_path: Path, config: JobConfig, records: list[dict[str, Any]], *, name: str
) -> tuple[JobStore, list[tuple[int, str, int]]]:
    """Run the workforce on a fresh store; return it and (line, worker, class) rows."""
    store = store_with_items(tmp_path / name, records)
    workers = SimulatedWorkers(config=config, class_names=CLASSES)

    expired = workers.collect(store, 1)

    assert expired == []
    lines = {item.id: item.line for item in store.items()}
    rows = [
        (lines[answer.item_id], answer.worker_id, answer.value["class"])
        for answer in store.answers()
    ]
    return store, rows


def test_error_free_worker_answers_truth(tmp_path: Path) -> None:
    records = truth_records(300, seed=1)
    config = job_config(tmp_path, error_rates=[0.0])

    store, rows = collect_answers(tmp_path, config, records, name="job")

    assert len(rows) == 300
    for line, worker, answer in rows:
        assert worker == "simulated-1"
        assert CLASSES[answer] == records[line - 1]["true-label"]
    answers = store.answers()
    tasks = {task.item_id: task.id for task in store.tasks(round_number=1)}
    assert all(answer.task_id == tasks[answer.item_id] for answer in answers)
    assert all(answer.seconds == 10.0 for answer in answers)
    store.close()


def test_error_rate_gives_uniform_mistakes(tmp_path: Path) -> None:
    n_items, rate = 2000, 0.3
    records = truth_records(n_items, seed=2)
    config = job_config(tmp_path, error_rates=[rate], seed=5)

    store, rows = collect_answers(tmp_path, config, records, name="job")
    store.close()
    truth = np.array(
        [CLASSES.index(records[line - 1]["true-label"]) for line, _, _ in rows]
    )
    answers = np.array([answer for _, _, answer in rows])
    wrong = answers != truth

    assert len(rows) == n_items
    # The wrong count lies in the central 99.9% of Binomial(2000, 0.3).
    assert (
        binom.ppf(0.0005, n_items, rate)
        <= wrong.sum()
        <= binom.ppf(0.9995, n_items, rate)
    )
    # A wrong answer is any other class with equal probability, for every truth.
    for true_class in range(len(CLASSES)):
        mistakes = answers[wrong & (truth == true_class)]
        assert true_class not in mistakes
        counts = [int((mistakes == other).sum()) for other in range(len(CLASSES))]
        del counts[true_class]
        assert chisquare(counts).pvalue > 0.001, (true_class, counts)


def test_workers_distinct_per_item(tmp_path: Path) -> None:
    records = truth_records(200, seed=3)
    config = job_config(
        tmp_path, error_rates=[0.0, 0.1, 0.2, 0.3, 0.4], workers_per_item=3, seed=1
    )

    _, rows = collect_answers(tmp_path, config, records, name="job")
    workers_by_line: dict[int, list[str]] = {}
    for line, worker, _ in rows:
        workers_by_line.setdefault(line, []).append(worker)

    assert len(workers_by_line) == 200
    assert all(len(workers) == 3 for workers in workers_by_line.values())
    assert all(len(set(workers)) == 3 for workers in workers_by_line.values())
    # Every worker gets about 3 / 5 of the items.
    usage = Counter(worker for _, worker, _ in rows)
    assert set(usage) == {f"simulated-{index}" for index in range(1, 6)}
    assert all(80 <= count <= 160 for count in usage.values())


def test_same_seed_same_answers(tmp_path: Path) -> None:
    records = truth_records(150, seed=4)
    rates = [0.2, 0.4, 0.5]

    _, first = collect_answers(
        tmp_path,
        job_config(tmp_path, error_rates=rates, workers_per_item=2, seed=9),
        records,
        name="first",
    )
    _, second = collect_answers(
        tmp_path,
        job_config(tmp_path, error_rates=rates, workers_per_item=2, seed=9),
        records,
        name="second",
    )
    _, other = collect_answers(
        tmp_path,
        job_config(tmp_path, error_rates=rates, workers_per_item=2, seed=10),
        records,
        name="other",
    )

    assert first == second
    assert first != other


def test_collect_again_adds_nothing(tmp_path: Path) -> None:
    records = truth_records(50, seed=5)
    config = job_config(tmp_path, error_rates=[0.3, 0.3], workers_per_item=2)
    store = store_with_items(tmp_path / "job", records)
    workers = SimulatedWorkers(config=config, class_names=CLASSES)

    workers.collect(store, 1)
    before = [(a.item_id, a.worker_id, a.value) for a in store.answers()]
    workers.collect(store, 1)
    after = [(a.item_id, a.worker_id, a.value) for a in store.answers()]
    store.close()

    assert len(before) == 100
    assert after == before


def test_true_label_index_accepted(tmp_path: Path) -> None:
    records = [{"source": "x", "true-label": index} for index in (0, 3, 1)]
    config = job_config(tmp_path, error_rates=[0.0])

    store, rows = collect_answers(tmp_path, config, records, name="job")
    store.close()

    assert [answer for _, _, answer in rows] == [0, 3, 1]


def test_bad_truth_fails_item_alone(tmp_path: Path) -> None:
    records = truth_records(6, seed=6)
    records[1] = {"source-ref": "s3://bucket/1.jpg"}
    records[3] = {"source-ref": "s3://bucket/3.jpg", "true-label": "moth"}
    records[4] = {"source-ref": "s3://bucket/4.jpg", "true-label": True}
    config = job_config(tmp_path, error_rates=[0.0])

    store, rows = collect_answers(tmp_path, config, records, name="job")
    failed = {item.line: item.error for item in store.items(status="failed")}
    events = [event.message for event in store.events("item-failed")]
    store.close()

    assert sorted(line for line, _, _ in rows) == [1, 3, 6]
    assert set(failed) == {2, 4, 5}
    assert "has no 'true-label' key" in failed[2]
    assert "'true-label' = 'moth'" in failed[4]
    assert "not one of the label categories" in failed[4]
    assert "'true-label' = True" in failed[5]
    assert len(events) == 3
    assert events[0].startswith("line 2: ")


def test_custom_true_label_key_named(tmp_path: Path) -> None:
    raw = job_config(tmp_path, error_rates=[0.0]).model_dump(mode="json")
    raw["workforce"]["true_label_key"] = "gold"
    config = parse_job_config(raw, base_dir=tmp_path, source="inline job")
    records = [{"source": "a", "gold": "bee"}, {"source": "b", "true-label": "bee"}]

    store, rows = collect_answers(tmp_path, config, records, name="job")
    failed = store.items(status="failed")
    store.close()

    assert rows == [(1, "simulated-1", 1)]
    assert len(failed) == 1
    assert "has no 'gold' key" in failed[0].error


def test_too_few_workers_rejected(tmp_path: Path) -> None:
    config = job_config(tmp_path, error_rates=[0.1, 0.2], workers_per_item=3)

    with pytest.raises(ConfigError) as caught:
        SimulatedWorkers(config=config, class_names=CLASSES)
    message = str(caught.value)

    assert "workers_per_item is 3" in message
    assert "has 2 workers" in message
    assert "workforce.error_rates" in message


def test_make_workforce_builds_simulated(tmp_path: Path) -> None:
    config = job_config(tmp_path, error_rates=[0.1, 0.2])

    workforce = make_workforce(config, CLASSES)

    assert isinstance(workforce, SimulatedWorkers)
    assert workforce.worker_ids == ["simulated-1", "simulated-2"]
