"""Simulated workers that answer from the true label kept in each manifest line."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np

from labelloop.config import JobConfig, SimulatedWorkforce
from labelloop.errors import ConfigError
from labelloop.quality import gold_quota
from labelloop.store.schema import GOLD_PURPOSE, GOLD_TASK_ROUND
from labelloop.workforce.base import WORKFORCES

if TYPE_CHECKING:
    from labelloop.store import JobStore

logger = logging.getLogger(__name__)

#: Answers committed per transaction.
COMMIT_EVERY = 200

#: Seed part that keeps the draws of gold items apart from the per-item draws.
GOLD_STREAM = 7


class SimulatedWorkers:
    """A pool of simulated workers, one per configured error rate.

    Each item goes to distinct workers, taken in a random order of the workers
    that is fixed per item, skipping excluded (inactive) workers, until the
    task has its ``required_answers`` (by default the job's initial answers per
    item). A worker answers the true class, or with probability equal to its
    error rate a wrong class drawn uniformly. Every draw is seeded by the job
    seed, the item and the worker, so a resumed job gets the same answers.

    With gold items, each active worker also answers gold items until it has
    answered ``gold_quota(round, gold_per_worker)`` of them, chosen at random.
    """

    def __init__(self, *, config: JobConfig, class_names: list[str]) -> None:
        settings = config.workforce
        if not isinstance(settings, SimulatedWorkforce):
            raise TypeError("SimulatedWorkers needs a simulated workforce config")
        n_workers = len(settings.error_rates)
        if config.workers_per_item > n_workers:
            raise ConfigError(
                f"workers_per_item is {config.workers_per_item} but the simulated "
                f"workforce has {n_workers} workers; list more "
                "workforce.error_rates"
            )
        if config.max_answers_per_item > n_workers:
            raise ConfigError(
                f"worker_quality.max_answers is {config.max_answers_per_item} but "
                f"the simulated workforce has {n_workers} workers; list more "
                "workforce.error_rates or lower max_answers"
            )
        quality = config.worker_quality
        self.settings = settings
        self.workers_per_item = config.workers_per_item
        self.initial_answers = config.initial_answers_per_item
        self.gold_per_worker = (
            quality.gold_per_worker if quality.gold_label_key is not None else 0
        )
        self.seed = config.seed
        self.class_names = class_names
        self.class_index = {name: index for index, name in enumerate(class_names)}
        self.worker_ids = [f"simulated-{i + 1}" for i in range(n_workers)]

    def _true_class(self, record: dict[str, Any]) -> int | str:
        key = self.settings.true_label_key
        if key not in record:
            return f"has no {key!r} key, which the simulated workforce answers from"
        value = record[key]
        if isinstance(value, str) and value in self.class_index:
            return self.class_index[value]
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and 0 <= value < len(self.class_names)
        ):
            return value
        return (
            f"has {key!r} = {value!r}, which is not one of the label categories "
            f"{self.class_names}"
        )

    def worker_order(self, item_id: int) -> list[int]:
        """Return the order in which workers (by index) are asked for an item."""
        rng = np.random.default_rng([self.seed, item_id])
        return [int(worker) for worker in rng.permutation(len(self.worker_ids))]

    def label_of(self, item_id: int, true_class: int, worker: int) -> int:
        """Return the class that worker number ``worker`` answers for an item."""
        n_classes = len(self.class_names)
        worker_rng = np.random.default_rng([self.seed, item_id, worker + 1])
        if worker_rng.random() < self.settings.error_rates[worker]:
            return int((true_class + worker_rng.integers(1, n_classes)) % n_classes)
        return true_class

    def answer(self, item_id: int, true_class: int) -> list[tuple[str, int]]:
        """Return ``(worker_id, class)`` answers of ``workers_per_item`` workers."""
        chosen = self.worker_order(item_id)[: self.workers_per_item]
        return [
            (self.worker_ids[worker], self.label_of(item_id, true_class, worker))
            for worker in sorted(chosen)
        ]

    def collect(self, store: JobStore, round_number: int) -> list[int]:
        for worker_id in self.worker_ids:
            store.ensure_worker(worker_id, kind="simulated")
        inactive = {worker.id for worker in store.workers() if not worker.active}
        active = [
            index
            for index, worker_id in enumerate(self.worker_ids)
            if worker_id not in inactive
        ]
        active_set = set(active)
        tasks = store.tasks(round_number=round_number, status="open")
        answered: dict[int, set[str]] = defaultdict(set)
        on_task: Counter[int | None] = Counter()
        for answer in store.answers([t.item_id for t in tasks]):
            answered[answer.item_id].add(answer.worker_id)
            on_task[answer.task_id] += 1
        records = {item.id: item.record for item in store.items()}

        pending: list[tuple[int, int, str, dict[str, Any], float | None]] = []
        short = 0
        for task in tasks:
            record = records.get(task.item_id)
            if record is None:
                continue
            required = task.required_answers or self.initial_answers
            missing = required - on_task[task.id]
            if missing <= 0:
                continue
            true_class = self._true_class(record)
            if isinstance(true_class, str):
                store.fail_item(task.item_id, f"item {true_class}")
                continue
            chosen = [
                worker
                for worker in self.worker_order(task.item_id)
                if worker in active_set
                and self.worker_ids[worker] not in answered[task.item_id]
            ][:missing]
            short += len(chosen) < missing
            for worker in sorted(chosen):
                pending.append(
                    (
                        task.id,
                        task.item_id,
                        self.worker_ids[worker],
                        {"class": self.label_of(task.item_id, true_class, worker)},
                        self.settings.seconds_per_task,
                    )
                )
            if len(pending) >= COMMIT_EVERY:
                store.add_answers(pending)
                pending = []
        if pending:
            store.add_answers(pending)
        if short:
            logger.warning(
                "round %s: %s items got fewer answers than required because only "
                "%s simulated workers are active",
                round_number,
                short,
                len(active),
            )
        self._answer_gold(store, round_number, active=active, records=records)
        return []

    def _answer_gold(
        self,
        store: JobStore,
        round_number: int,
        *,
        active: list[int],
        records: dict[int, dict[str, Any] | None],
    ) -> None:
        """Have each active worker answer gold items up to its quota for the round."""
        quota = gold_quota(round_number, self.gold_per_worker)
        if quota == 0:
            return
        gold = store.gold_classes()
        tasks = [
            task
            for task in store.tasks(round_number=GOLD_TASK_ROUND, status="open")
            if task.purpose == GOLD_PURPOSE and task.item_id in gold
        ]
        done: dict[str, set[int]] = defaultdict(set)
        for answer in store.answers([task.item_id for task in tasks]):
            done[answer.worker_id].add(answer.item_id)

        pending: list[tuple[int, int, str, dict[str, Any], float | None]] = []
        for worker in active:
            worker_id = self.worker_ids[worker]
            missing = quota - len(done[worker_id])
            open_tasks = [task for task in tasks if task.item_id not in done[worker_id]]
            if missing <= 0 or not open_tasks:
                continue
            rng = np.random.default_rng(
                [self.seed, round_number, worker + 1, GOLD_STREAM]
            )
            for position in rng.permutation(len(open_tasks))[:missing]:
                task = open_tasks[int(position)]
                truth = self._true_class(records.get(task.item_id) or {})
                if isinstance(truth, str):
                    truth = gold[task.item_id]
                pending.append(
                    (
                        task.id,
                        task.item_id,
                        worker_id,
                        {"class": self.label_of(task.item_id, truth, worker)},
                        self.settings.seconds_per_task,
                    )
                )
        if pending:
            store.add_answers(pending)


@WORKFORCES.register("simulated")
def _make_simulated(**kwargs: Any) -> SimulatedWorkers:
    return SimulatedWorkers(**kwargs)
