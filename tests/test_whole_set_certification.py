"""Certified jobs test their whole machine-labeled set, not one round's band."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labelloop.config import JobConfig, load_job_config
from labelloop.importers import import_digits
from labelloop.importers.common import TRUE_LABEL_KEY
from labelloop.job import open_job
from labelloop.loop import LabelingLoop
from labelloop.report.data import build_report
from labelloop.store import JobStore
from labelloop.web.context import WebContext
from labelloop.web.dashboard import round_history
from labelloop.web.queue import TaskQueue

from jobs_support import write_job


@pytest.fixture(scope="module")
def digits_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("digits")
    imported = import_digits(folder, limit=600, seed=11)
    return imported.manifest, folder / "class-labels.json"


def _digits_job(
    folder: Path, digits_slice: tuple[Path, Path], **fields: object
) -> JobConfig:
    """Write and load a job file on the digits slice with a simulated worker."""
    manifest, categories = digits_slice
    job_file = write_job(
        folder,
        task_type="image-classification",
        features="image-mid",
        label_category_file=str(categories),
        input_manifest=str(manifest),
        workforce={"type": "simulated", "error_rates": [0.0]},
        **fields,
    )
    return load_job_config(job_file)


def _planned_first_round(
    folder: Path,
    digits_slice: tuple[Path, Path],
    *,
    job_name: str,
    validation_size: int,
) -> tuple[JobConfig, JobStore, LabelingLoop]:
    """Open a digits job whose first round has posted its validation tasks."""
    config = _digits_job(
        folder,
        digits_slice,
        job_name=job_name,
        automated_labeling={"min_items": 100, "validation_size": validation_size},
    )
    store = open_job(config)
    loop = LabelingLoop(config, store)
    loop.plan_round(1)
    return config, store, loop


def _manual_job(
    folder: Path, digits_slice: tuple[Path, Path], job_name: str, batch_size: int
) -> JobConfig:
    """Return a digits job without automated labeling: humans label every item."""
    return _digits_job(
        folder,
        digits_slice,
        job_name=job_name,
        human_batch_size=batch_size,
        automated_labeling={"enabled": False},
    )


def _answer_all_but(
    config: JobConfig, store: JobStore, number: int, expired: set[int]
) -> None:
    """Close a round: the tasks of ``expired`` expire, the rest get true labels."""
    class_of = {name: k for k, name in enumerate(config.label_categories)}
    truth = {item.id: class_of[item.record[TRUE_LABEL_KEY]] for item in store.items()}
    tasks = store.tasks(round_number=number)
    store.write_human_labels(
        number,
        [
            (task.item_id, {"class": truth[task.item_id]}, 1.0)
            for task in tasks
            if task.item_id not in expired
        ],
        expired_task_ids=[task.id for task in tasks if task.item_id in expired],
    )


def _after_round_one(
    folder: Path,
    digits_slice: tuple[Path, Path],
    *,
    method: str,
    human_batch_size: int = 160,
    **fields: object,
) -> tuple[LabelingLoop, JobStore, set[int]]:
    """Open a job whose first round labeled 100 items and machine-labeled 250.

    The first round is written by hand, so that the second round's draw can be
    checked against a machine-labeled set of known size. ``fields`` sets
    further job file fields.
    """
    config = _digits_job(
        folder,
        digits_slice,
        job_name="whole-set",
        human_batch_size=human_batch_size,
        **fields,
        automated_labeling={
            "min_items": 100,
            "validation_size": 100,
            "threshold_method": method,
        },
    )
    store = open_job(config)
    loop = LabelingLoop(config, store)
    ids = [item.id for item in store.items()]
    store.start_round(1, validation_ids=ids[:100], query_ids=[], plan={})
    store.write_human_labels(
        1, [(item_id, {"class": item_id % 10}, 1.0) for item_id in ids[:100]]
    )
    machine = ids[100:350]
    store.finish_round(
        1,
        machine_labels=[(item_id, {"class": 0}, 0.99) for item_id in machine],
        stats={"machine_labeled": len(machine)},
    )
    return loop, store, set(machine)


@pytest.fixture
def round_one_job(
    tmp_path: Path, digits_slice: tuple[Path, Path]
) -> Iterator[Callable[[str], tuple[LabelingLoop, JobStore, set[int]]]]:
    """Open jobs as ``_after_round_one`` does, by threshold method, and close them."""
    stores: list[JobStore] = []

    def open_job_after_round_one(
        method: str,
    ) -> tuple[LabelingLoop, JobStore, set[int]]:
        loop, store, machine = _after_round_one(tmp_path, digits_slice, method=method)
        stores.append(store)
        return loop, store, machine

    yield open_job_after_round_one
    for store in stores:
        store.close()


def test_validation_drawn_from_machine_labels_too(round_one_job) -> None:
    loop, store, machine = round_one_job("certified")
    loop.plan_round(2)
    tasks = store.tasks(round_number=2)
    validation = [t.item_id for t in tasks if t.purpose == "validation"]
    query = [t.item_id for t in tasks if t.purpose != "validation"]

    # 40 random items out of 500 that humans have not labeled, 250 of
    # which are machine-labeled: 20 expected, standard deviation about 3.
    drawn = sum(item_id in machine for item_id in validation)
    assert len(validation) == 40
    assert 8 <= drawn <= 32
    assert not machine & set(query)

    loop.collect(2)
    labels = store.labels()
    assert {labels[item_id].origin for item_id in validation} == {"human"}
    assert store.counters()["MachineLabeled"] == 250 - drawn


def test_reference_method_draws_only_unlabeled_items(round_one_job) -> None:
    loop, store, machine = round_one_job("empirical")
    loop.plan_round(2)
    drawn = {task.item_id for task in store.tasks(round_number=2)}
    assert len(drawn) == 160
    assert not machine & drawn


def test_round_in_progress_shows_labels_in_force(round_one_job) -> None:
    loop, store, _ = round_one_job("certified")
    loop.plan_round(2)
    queue = TaskQueue(
        store,
        loop.config.label_categories,
        workers_per_item=1,
        time_limit_seconds=60,
        availability_seconds=3600,
    )
    context = WebContext(
        config=loop.config,
        store=store,
        queue=queue,
        secure_cookies=False,
        session_lifetime_seconds=3600,
    )

    report = build_report(loop.config, store, timing={})
    history = round_history(context)

    assert [entry["status"] for entry in report["rounds"]] == [
        "done",
        "collecting",
    ]
    assert [entry["machine_labeled"] for entry in report["rounds"]] == [250, 250]
    assert [row.stats["machine_labeled"] for row in history] == [250.0, 250.0]


def test_unanswered_validation_items_count_as_errors(
    tmp_path: Path, digits_slice: tuple[Path, Path]
) -> None:
    config, store, loop = _planned_first_round(
        tmp_path, digits_slice, job_name="unanswered", validation_size=300
    )
    try:
        # Three tasks expire unanswered, and the rest get the true label.
        expired = {task.item_id for task in store.tasks(round_number=1)[::100]}
        _answer_all_but(config, store, 1, expired)
        stats = loop.train_and_label(1)
        report = build_report(config, store, timing={})
        human = {i for i, label in store.labels().items() if label.origin == "human"}
    finally:
        store.close()

    assert stats["unanswered_validation_items"] == len(expired) == 3
    assert stats["validation_items"] == 297
    assert stats["machine_labeled"] > 0
    # The threshold covers expired items, which only the unanswered count
    # puts in the sample, and each of them is an error above it.
    unanswered_above = set(stats["covered_validation_ids"]) & set(expired)
    assert unanswered_above
    assert stats["validation_errors_above_threshold"] >= len(unanswered_above)
    assert "3 validation items whose tasks expired unanswered" in stats["stop_reason"]
    assert not expired & human
    assert "expired unanswered counts as an error" in report["guarantee"]


def test_expired_validation_items_posted_again(
    tmp_path: Path, digits_slice: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    config, store, loop = _planned_first_round(
        tmp_path, digits_slice, job_name="posted-again", validation_size=300
    )
    try:
        expired = [task.item_id for task in store.tasks(round_number=1)[::60]]
        _answer_all_but(config, store, 1, set(expired))
        first = loop.train_and_label(1)
        with caplog.at_level(logging.INFO, logger="labelloop.loop"):
            assert loop.plan_round(2)
        posted = store.tasks(round_number=2)
        plan = store.rounds()[1].stats["plan"]
        # The simulated worker answers every task of the round.
        loop.collect(2)
        second = loop.train_and_label(2)
        labels = store.labels()
        truth = {
            item.id: config.label_categories.index(item.record[TRUE_LABEL_KEY])
            for item in store.items()
        }
    finally:
        store.close()

    assert len(expired) == 5
    assert first["unanswered_validation_items"] == 5
    # They go out first, as validation tasks, and no new draw repeats them.
    assert [task.item_id for task in posted[:5]] == expired
    assert {task.purpose for task in posted[:5]} == {"validation"}
    assert not set(expired) & {task.item_id for task in posted[5:]}
    assert plan["reposted_validation"] == 5
    assert len(posted) == plan["validation"] + plan["query"]
    expected = "5 validation items whose tasks expired unanswered are posted again"
    assert expected in plan["reason"]
    assert any(expected in record.getMessage() for record in caplog.records)
    # Answered now, they count with their human labels instead of as errors.
    assert all(labels[i].origin == "human" for i in expired)
    assert all(labels[i].value["class"] == truth[i] for i in expired)
    assert second["unanswered_validation_items"] == 0
    assert second["validation_items"] == 295 + plan["validation"]
    assert "expired unanswered" not in second["stop_reason"]


def test_expired_validation_items_posted_three_times(
    tmp_path: Path, digits_slice: tuple[Path, Path]
) -> None:
    # Without automated labeling every task is a validation task, and no
    # machine label covers the expired items, so the job runs long enough.
    config = _manual_job(tmp_path, digits_slice, "posted-three-times", 100)
    store = open_job(config)
    try:
        loop = LabelingLoop(config, store)
        expired: list[int] = []
        posted = {}
        for number in (1, 2, 3, 4):
            assert loop.plan_round(number)
            posted[number] = {task.item_id for task in store.tasks(round_number=number)}
            if number == 1:
                expired = sorted(posted[1])[::20]
            _answer_all_but(config, store, number, set(expired))
            loop.train_and_label(number)
        labels = store.labels()
    finally:
        store.close()

    assert len(expired) == 5
    assert set(expired) <= posted[1] & posted[2] & posted[3]
    # Posted three times, they take no fourth task and stay unlabeled.
    assert not set(expired) & posted[4]
    assert len(posted[4]) == 100
    assert not set(expired) & set(labels)


def test_reposts_spend_human_budget(
    tmp_path: Path, digits_slice: tuple[Path, Path]
) -> None:
    config = _digits_job(
        tmp_path,
        digits_slice,
        job_name="posted-again-budget",
        stopping_conditions={"max_human_labeled_object_count": 103},
        automated_labeling={"min_items": 100, "validation_size": 100},
    )
    store = open_job(config)
    try:
        loop = LabelingLoop(config, store)
        loop.plan_round(1)
        expired = [task.item_id for task in store.tasks(round_number=1)[::20]]
        _answer_all_but(config, store, 1, set(expired))
        loop.train_and_label(1)
        assert loop.plan_round(2)
        posted = store.tasks(round_number=2)
        plan = store.rounds()[1].stats["plan"]
        # The items posted again expire again.
        _answer_all_but(config, store, 2, set(expired))
        second = loop.train_and_label(2)
        goes_on = loop.plan_round(3)
        stop = store.events("job-stop")
    finally:
        store.close()

    # 100 tasks of round 1 leave 3 of the budget of 103, for 3 of the 5 items
    # and no new draw.
    assert len(expired) == 5
    assert [task.item_id for task in posted] == expired[:3]
    assert {task.purpose for task in posted} == {"validation"}
    assert plan["reposted_validation"] == 3
    assert plan["validation"] == 3
    assert plan["query"] == 0
    assert (
        "3 of the 5 validation items whose tasks expired unanswered are posted "
        "again, as many as the human budget allows"
    ) in plan["reason"]
    # Until a human labels them, all five count as errors.
    assert second["unanswered_validation_items"] == 5
    assert "5 validation items whose tasks expired" in second["stop_reason"]
    assert not goes_on
    assert "max_human_labeled_object_count=103 is spent" in stop[-1].message


def test_expired_query_items_chosen_again(
    tmp_path: Path, digits_slice: tuple[Path, Path]
) -> None:
    loop, store, _ = _after_round_one(
        tmp_path,
        digits_slice,
        method="certified",
        stopping_conditions={"max_human_labeled_object_count": 330},
    )
    try:
        assert loop.plan_round(2)
        second = store.tasks(round_number=2)
        # Every task of round 2 expires unanswered, so round 3 trains on the
        # same human labels and the strategy ranks the items as it did then.
        store.write_human_labels(2, [], expired_task_ids=[t.id for t in second])
        store.finish_round(2, machine_labels=[], stats={})
        assert loop.plan_round(3)
        third = store.tasks(round_number=3)
        plan = store.rounds()[2].stats["plan"]
        (event,) = store.events("tasks-reposted")
        budget_left = loop._human_budget_left()
        goes_on = loop.plan_round(4)
        stop = store.events("job-stop")
    finally:
        store.close()

    first_query_tasks = {t.item_id: t.id for t in second if t.purpose == "query"}
    validation_items = {t.item_id for t in third if t.purpose == "validation"}
    query_tasks = [t for t in third if t.purpose == "query"]
    reposted = [t for t in query_tasks if t.item_id in first_query_tasks]
    assert len(first_query_tasks) == 120
    # Round 3 has a budget of 330 - 260 = 70: the 40 expired validation
    # items, then 8 new validation items and 22 chosen by the strategy. The
    # 22 rank highest among the 120 it chose in round 2.
    assert len(validation_items) == 48
    assert len(query_tasks) == 22
    assert len(reposted) == 22
    # Each keeps its one task row, open again in round 3 as a query task.
    assert all(t.id == first_query_tasks[t.item_id] for t in reposted)
    assert {(t.round, t.status) for t in reposted} == {(3, "open")}
    assert not validation_items & set(first_query_tasks)
    assert plan["reposted_query"] == 22
    assert plan["query"] == 22
    assert plan["reposted_validation"] == 40
    assert (
        "22 query items whose tasks expired unanswered are posted again"
        in (plan["reason"])
    )
    assert set(event.data["item_ids"]) >= {t.item_id for t in reposted}
    assert event.data["earlier_rounds"] == [2] * 62
    # A reposted query task spends the budget like a new one.
    assert budget_left == 0
    assert not goes_on
    assert "max_human_labeled_object_count=330 is spent" in stop[-1].message


def test_remaining_batch_takes_expired_query_items(
    tmp_path: Path, digits_slice: tuple[Path, Path]
) -> None:
    loop, store, _ = _after_round_one(
        tmp_path, digits_slice, method="certified", human_batch_size=250
    )
    try:
        ids = [item.id for item in store.items()]
        unlabeled = ids[350:]
        never_answered = set(unlabeled[:5])
        store.start_round(2, validation_ids=[], query_ids=unlabeled[:5], plan={})
        _answer_all_but(loop.config, store, 2, never_answered)
        store.finish_round(2, machine_labels=[], stats={})
        first_tasks = {t.item_id: t.id for t in store.tasks(round_number=2)}
        assert loop.plan_round(3)
        third = store.tasks(round_number=3)
        plan = store.rounds()[2].stats["plan"]
        # The workers do not answer these five items in round 3 either.
        _answer_all_but(loop.config, store, 3, never_answered)
        store.finish_round(3, machine_labels=[], stats={})
        goes_on = loop.plan_round(4)
        stop = store.events("job-stop")
        labels = store.labels()
        tasks = {t.item_id: t for t in store.tasks()}
    finally:
        store.close()

    # The 245 items never posted and the 5 whose task expired make one batch.
    assert plan["remaining"]
    assert plan["reason"].startswith("the remaining items fit in one human batch")
    assert (
        "5 query items whose tasks expired unanswered are posted again"
        in (plan["reason"])
    )
    assert {t.item_id for t in third} == set(unlabeled)
    assert {t.purpose for t in third} == {"query"}
    assert plan["query"] == 250
    assert plan["reposted_query"] == 5
    assert all(tasks[i].id == first_tasks[i] for i in never_answered)
    # An item goes back to humans once: after its second expiry the job
    # stops although the five items are still unlabeled.
    assert {tasks[i].status for i in never_answered} == {"expired"}
    assert {tasks[i].round for i in never_answered} == {3}
    assert not never_answered & set(labels)
    assert not goes_on
    assert stop[-1].message == "no unlabeled item is left to send to humans"
    assert len(labels) == 600 - 5


def test_small_sample_runs_no_scan(tmp_path: Path, digits_slice) -> None:
    _, store, loop = _planned_first_round(
        tmp_path, digits_slice, job_name="small-sample", validation_size=20
    )
    try:
        loop.collect(1)
        stats = loop.train_and_label(1)
    finally:
        store.close()

    # 20 of 600 items may spend t^2 / (1 + t^2) of the budget, with t = 20 / 90:
    # 4.7%.
    assert stats["certification_test"] is None
    assert stats["delta"] == 0.0
    assert stats["machine_labeled"] == 0
    assert "not tested: 20 validation items allow under 5%" in stats["stop_reason"]


@pytest.mark.parametrize(
    ("scans", "scored_by", "skips"),
    [
        # Before any pass a new sample may certify, whatever the model.
        ([{"certified_items": 0, "scored_by_round": 3}], 3, False),
        # After a pass, the model of the last test is not tested again ...
        ([{"certified_items": 900, "scored_by_round": 4}], 4, True),
        (
            [
                {"certified_items": 900, "scored_by_round": 4},
                {"certified_items": 0, "scored_by_round": 6},
            ],
            6,
            True,
        ),
        # ... but a model trained since then is.
        ([{"certified_items": 900, "scored_by_round": 4}], 8, False),
        ([], 1, False),
    ],
)
def test_later_tests_skip_an_unchanged_model(
    scans: list[dict], scored_by: int, skips: bool
) -> None:
    assert LabelingLoop.rescores_tested_model(scans, scored_by) is skips


@pytest.mark.parametrize(
    ("scans", "fits_again", "last"),
    [
        # Before a pass no test is the last: a larger sample may pass.
        ([{"certified_items": 0}], False, False),
        ([], False, False),
        # After a pass, a test takes the rest only when no fit can follow it.
        ([{"certified_items": 900}], False, True),
        ([{"certified_items": 900}], True, False),
    ],
)
def test_last_test_only_after_a_pass(
    scans: list[dict], fits_again: bool, last: bool
) -> None:
    assert LabelingLoop.takes_rest(scans, fits_again=fits_again) is last


def test_no_test_after_the_last() -> None:
    scans = [
        {"round": 3, "certified_items": 900, "scored_by_round": 3},
        {"round": 6, "certified_items": 1200, "scored_by_round": 6, "last_test": True},
    ]

    # Even a model trained since the last test is not tested.
    reason = LabelingLoop.untested_reason(scans, 9)
    assert reason is not None
    assert "round 6 took all that was left" in reason
    assert LabelingLoop.untested_reason(scans[:1], 9) is None
    assert "model of round 3" in str(LabelingLoop.untested_reason(scans[:1], 3))


def test_manual_job_posts_last_batch_again(
    tmp_path: Path, digits_slice: tuple[Path, Path]
) -> None:
    config = _manual_job(tmp_path, digits_slice, "manual-last-batch", 600)
    store = open_job(config)
    try:
        loop = LabelingLoop(config, store)
        assert loop.plan_round(1)
        expired = [task.item_id for task in store.tasks(round_number=1)[::100]]
        _answer_all_but(config, store, 1, set(expired))
        loop.train_and_label(1)
        goes_on = loop.plan_round(2)
        posted = [task.item_id for task in store.tasks(round_number=2)]
        # Expired once more, they hold the job open no longer.
        _answer_all_but(config, store, 2, set(expired))
        loop.train_and_label(2)
        third = loop.plan_round(3)
        stop = store.events("job-stop")
        unlabeled = set(expired) - set(store.labels())
    finally:
        store.close()

    assert len(expired) == 6
    # The first batch took every item, so the expired ones are all that is left.
    assert goes_on
    assert posted == expired
    assert not third
    assert "no unlabeled item is left to send to humans" in stop[-1].message
    assert unlabeled == set(expired)
