"""Worker quality inside whole jobs: simulated workers on a slice of the digits."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

from scipy.stats import binom

from labelloop.quality import gold_quota
from labelloop.store import JobStore
from labelloop.store.schema import GOLD_PURPOSE, Answer

FIVE = ["0", "1", "2", "3", "4"]


def answers_by_item(store: JobStore) -> dict[int, list[Answer]]:
    grouped: dict[int, list[Answer]] = defaultdict(list)
    for answer in store.answers():
        grouped[answer.item_id].append(answer)
    return grouped


def rows_by_worker(report: dict) -> dict[str, dict]:
    return {row["worker_id"]: row for row in report["workers"]}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_worker_without_answers_listed(digits_job) -> None:
    job, report = digits_job(max_rounds=1, workforce={"error_rates": [0.1, 0.2]})
    assert report["status"] == "running"
    job.store.ensure_worker("idle-worker", kind="web")

    report = job.rerun()

    rows = rows_by_worker(report)
    assert report["status"] == "completed"
    assert set(rows) == {"idle-worker", "simulated-1", "simulated-2"}
    idle = rows["idle-worker"]
    assert idle["answers"] == 0
    assert idle["n_answers"] == 0
    assert idle["excluded"] is False
    assert idle["gold_answers"] == 0
    assert idle["gold_accuracy"] is None
    # A worker without answers gets the consolidator's prior estimate.
    assert 0.0 < idle["estimated_accuracy"] < 1.0
    assert len(idle["confusion"]) == 10
    estimates = job.store.worker_estimates()
    assert estimates["idle-worker"].n_answers == 0


def test_class_nobody_chose_kept(digits_job) -> None:
    job, report = digits_job(
        classes=FIVE,
        categories=[*FIVE, "unused"],
        limit=200,
        workers_per_item=2,
        consolidation="dawid-skene",
        workforce={"error_rates": [0.0, 0.0, 0.0]},
    )

    assert report["status"] == "completed"
    assert report["counters"]["Unlabeled"] == 0
    assert report["human_labels"]["measured_accuracy"] == 1.0
    assert all(answer.value["class"] != 5 for answer in job.store.answers())
    for row in report["workers"]:
        confusion = row["confusion"]
        assert len(confusion) == 6
        assert all(len(line) == 6 for line in confusion)
        assert all(math.isclose(sum(line), 1.0) for line in confusion)
        assert all(math.isfinite(value) for line in confusion for value in line)
        assert 0.5 < row["estimated_accuracy"] <= 1.0
    output = read_jsonl(Path(report["outputs"]["manifest"]))
    assert {line["digit-metadata"]["class-name"] for line in output} <= set(FIVE)


def test_exactly_two_workers_job(digits_job) -> None:
    job, report = digits_job(
        workers_per_item=2,
        consolidation="dawid-skene",
        workforce={"error_rates": [0.05, 0.35]},
    )

    grouped = answers_by_item(job.store)
    rows = rows_by_worker(report)
    n_items = len(job.truth)
    assert report["counters"]["HumanLabeled"] == n_items
    assert all(len(answers) == 2 for answers in grouped.values())
    assert set(rows) == {"simulated-1", "simulated-2"}
    assert rows["simulated-1"]["n_answers"] == n_items
    assert rows["simulated-2"]["n_answers"] == n_items
    assert (
        rows["simulated-1"]["estimated_accuracy"]
        > (rows["simulated-2"]["estimated_accuracy"])
    )
    # Dawid-Skene trusts the better worker where the two disagree, so the labels
    # beat the weaker worker's accuracy of 0.65 by far.
    assert report["human_labels"]["measured_accuracy"] >= 0.85


def test_all_workers_disagree_item(digits_job) -> None:
    job, report = digits_job(
        classes=FIVE,
        limit=250,
        workers_per_item=3,
        workforce={"error_rates": [0.6, 0.6, 0.6]},
    )

    labels = job.store.labels()
    split = {
        item_id: answers
        for item_id, answers in answers_by_item(job.store).items()
        if len({answer.value["class"] for answer in answers}) == 3
    }
    assert report["status"] == "completed"
    assert len(split) >= 5
    for item_id, answers in split.items():
        label = labels[item_id]
        assert label.origin == "human"
        assert label.value["class"] in {answer.value["class"] for answer in answers}
        assert math.isclose(label.confidence, 1 / 3)


def test_removed_label_answer_skipped(digits_job) -> None:
    job, report = digits_job(max_rounds=1, workforce={"error_rates": [0.0]})
    first_task = job.store.tasks(round_number=1)[0]
    job.store.ensure_worker("former-worker", kind="web")
    stored = job.store.add_answers(
        [(first_task.id, first_task.item_id, "former-worker", {"class": 12}, 4.0)]
    )
    assert stored == 1

    report = job.rerun()

    rows = rows_by_worker(report)
    skipped_events = job.store.events("answers-skipped")
    responses = read_jsonl(Path(report["outputs"]["worker_responses"]))
    assert report["status"] == "completed"
    assert report["counters"]["Unlabeled"] == 0
    assert report["human_labels"]["skipped_answers"] == 1
    assert len(skipped_events) == 1
    assert skipped_events[0].data["skipped"] == 1
    assert rows["former-worker"]["answers"] == 1
    assert rows["former-worker"]["n_answers"] == 0
    assert (
        job.store.labels()[first_task.item_id].value["class"]
        == (job.truth[first_task.item_id])
    )
    removed = [row for row in responses if row["worker-id"] == "former-worker"]
    assert removed == [removed[0]]
    assert removed[0]["class"] == 12
    assert removed[0]["class-name"] is None


def test_gold_accuracy_per_worker(digits_job) -> None:
    rates = {"simulated-1": 0.0, "simulated-2": 0.3, "simulated-3": 0.5}
    settings = {"gold_label_key": "gold-label", "gold_per_worker": 40}
    job, first = digits_job(
        gold=40,
        human_batch_size=30,
        max_rounds=1,
        workforce={"error_rates": list(rates.values())},
        worker_quality=settings,
    )
    gold = job.store.gold_classes()
    after_first = Counter(
        answer.worker_id for answer in job.store.answers() if answer.item_id in gold
    )

    report = job.rerun()

    assert len(gold) == 40
    # A third of the gold goes out in the first round.
    assert after_first == {worker: gold_quota(1, 40) for worker in rates}
    gold_answers = [a for a in job.store.answers() if a.item_id in gold]
    rows = rows_by_worker(report)
    for worker, rate in rates.items():
        mine = [a for a in gold_answers if a.worker_id == worker]
        correct = sum(a.value["class"] == gold[a.item_id] for a in mine)
        assert len(mine) == 40
        assert len({a.item_id for a in mine}) == 40
        assert rows[worker]["gold_answers"] == 40
        assert rows[worker]["gold_accuracy"] == correct / 40
        low, high = binom.ppf([0.0005, 0.9995], 40, 1.0 - rate)
        assert low <= correct <= high
    assert rows["simulated-1"]["gold_accuracy"] == 1.0
    assert report["human_labels"]["gold_items"] == 40
    assert first["human_labels"]["gold_items"] == 40


def test_gold_items_in_output_manifest(digits_job) -> None:
    job, report = digits_job(
        gold=30,
        workforce={"error_rates": [0.2, 0.2]},
        worker_quality={"gold_label_key": "gold-label", "gold_per_worker": 6},
    )

    gold = job.store.gold_classes()
    tasks = job.store.tasks()
    output = read_jsonl(Path(report["outputs"]["manifest"]))
    gold_lines = [line for line in output if "gold-label" in line]
    assert len(gold_lines) == 30
    for line in gold_lines:
        metadata = line["digit-metadata"]
        assert metadata["class-name"] == line["gold-label"]
        assert metadata["human-annotated"] == "yes"
        assert metadata["confidence"] == 1.0
    gold_tasks = [t for t in tasks if t.purpose == GOLD_PURPOSE]
    assert {t.item_id for t in gold_tasks} == set(gold)
    assert all(t.round == 0 for t in gold_tasks)
    # The finished job closes its gold tasks.
    assert all(t.status == "complete" for t in gold_tasks)
    # Gold items are never sent out as validation or query items.
    assert not {t.item_id for t in tasks if t.purpose != GOLD_PURPOSE} & set(gold)
    assert report["human_labels"]["count"] == len(job.truth) - 30
    page = Path(report["outputs"]["report_html"]).read_text(encoding="utf-8")
    assert "Estimated human-label accuracy" in page
    assert "Gold accuracy" in page


def test_gold_stays_out_of_certification(digits_job) -> None:
    job, report = digits_job(
        limit=400,
        gold=40,
        human_batch_size=None,
        workforce={"error_rates": [0.0, 0.0]},
        worker_quality={"gold_label_key": "gold-label", "gold_per_worker": 20},
        automated_labeling={
            "min_items": 100,
            "validation_size": 100,
            "target_accuracy": 0.85,
        },
    )

    gold = set(job.store.gold_classes())
    labels = job.store.labels()
    covered: set[int] = set()
    for round_row in job.store.rounds():
        covered.update(round_row.stats.get("covered_validation_ids", []))
    validation = {
        task.item_id for task in job.store.tasks() if task.purpose == "validation"
    }
    assert report["status"] == "completed"
    assert report["counters"]["MachineLabeled"] > 0
    assert all(labels[item_id].origin == "human" for item_id in gold)
    assert all(labels[item_id].confidence == 1.0 for item_id in gold)
    assert not gold & covered
    assert not gold & validation


def test_random_guesser_excluded_in_job(digits_job) -> None:
    job, report = digits_job(
        classes=FIVE,
        limit=300,
        workers_per_item=3,
        consolidation="dawid-skene",
        workforce={"error_rates": [0.05, 0.05, 0.1, 0.9]},
        worker_quality={"min_worker_accuracy": 0.5},
    )

    events = job.store.events("worker-excluded")
    workers = {worker.id: worker for worker in job.store.workers()}
    rows = rows_by_worker(report)
    assert [event.data["worker_id"] for event in events] == ["simulated-4"]
    assert events[0].data["estimated_accuracy"] < 0.5
    assert events[0].data["n_answers"] >= 20
    assert "simulated-4" in events[0].message
    assert workers["simulated-4"].active is False
    assert rows["simulated-4"]["excluded"] is True
    assert all(not rows[w]["excluded"] for w in ("simulated-1", "simulated-2"))

    # Items consolidated after the exclusion have three answers from the others.
    excluded_round = events[0].data["round"]
    grouped = answers_by_item(job.store)
    for task in job.store.tasks():
        counted = [a for a in grouped[task.item_id] if a.worker_id != "simulated-4"]
        assert len(counted) == 3
        if task.round > excluded_round:
            assert len(grouped[task.item_id]) == 3
    assert report["human_labels"]["measured_accuracy"] >= 0.95


def test_too_few_workers_left_logged(digits_job) -> None:
    # With two workers only gold items tell which one of them is wrong.
    job, report = digits_job(
        classes=FIVE,
        limit=250,
        gold=30,
        workers_per_item=2,
        consolidation="dawid-skene",
        workforce={"error_rates": [0.05, 0.9]},
        worker_quality={
            "min_worker_accuracy": 0.5,
            "gold_label_key": "gold-label",
            "gold_per_worker": 30,
        },
    )

    short = job.store.events("workforce-short")
    grouped = answers_by_item(job.store)
    excluded_round = job.store.events("worker-excluded")[0].data["round"]
    later = [t.item_id for t in job.store.tasks() if t.round > excluded_round]
    assert report["status"] == "completed"
    assert report["counters"]["Unlabeled"] == 0
    assert len(short) == 1
    assert "1 active workers remain" in short[0].message
    assert later
    assert all(
        [a.worker_id for a in grouped[item_id]] == ["simulated-1"] for item_id in later
    )


def test_adaptive_redundancy_saves_answers(digits_job) -> None:
    common = {
        "classes": FIVE,
        "limit": 300,
        "workers_per_item": 3,
        "consolidation": "dawid-skene",
        "workforce": {"error_rates": [0.05, 0.1, 0.15, 0.1]},
    }
    fixed, fixed_report = digits_job(name="fixed", **common)
    adaptive, adaptive_report = digits_job(
        name="adaptive",
        worker_quality={"adaptive_redundancy": True, "confidence": 0.9},
        **common,
    )

    n_fixed = fixed.store.count_answers()
    n_adaptive = adaptive.store.count_answers()
    per_item = Counter(len(a) for a in answers_by_item(adaptive.store).values())
    assert n_fixed == 3 * len(fixed.truth)
    assert n_adaptive < 0.8 * n_fixed
    assert set(per_item) <= {2, 3}
    assert per_item[3] > 0
    assert (
        adaptive_report["human_labels"]["measured_accuracy"]
        >= fixed_report["human_labels"]["measured_accuracy"]
    )
    # An item stops at two answers only when they agree, and then its label is
    # the one that three answers give.
    fixed_labels = fixed.store.labels()
    for item_id, answers in answers_by_item(adaptive.store).items():
        if len(answers) == 2:
            assert answers[0].value == answers[1].value
            assert fixed_labels[item_id].value == answers[0].value
