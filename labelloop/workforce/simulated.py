"""Simulated workers that answer from the true label kept in each manifest line."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from labelloop.config import JobConfig, SimulatedWorkforce
from labelloop.errors import ConfigError
from labelloop.workforce.base import WORKFORCES

if TYPE_CHECKING:
    from labelloop.store import JobStore

logger = logging.getLogger(__name__)

#: Answers committed per transaction.
COMMIT_EVERY = 200


class SimulatedWorkers:
    """A pool of simulated workers, one per configured error rate.

    Each item goes to ``workers_per_item`` distinct workers, chosen at random.
    A worker answers the true class, or with probability equal to its error
    rate a wrong class drawn uniformly. Every draw is seeded by the job seed,
    the item and the worker, so a resumed job gets the same answers.
    """

    def __init__(self, *, config: JobConfig, class_names: list[str]) -> None:
        settings = config.workforce
        if not isinstance(settings, SimulatedWorkforce):
            raise TypeError("SimulatedWorkers needs a simulated workforce config")
        if config.workers_per_item > len(settings.error_rates):
            raise ConfigError(
                f"workers_per_item is {config.workers_per_item} but the simulated "
                f"workforce has {len(settings.error_rates)} workers; list more "
                "workforce.error_rates"
            )
        self.settings = settings
        self.workers_per_item = config.workers_per_item
        self.seed = config.seed
        self.class_names = class_names
        self.class_index = {name: index for index, name in enumerate(class_names)}
        self.worker_ids = [
            f"simulated-{i + 1}" for i in range(len(settings.error_rates))
        ]

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

    def answer(self, item_id: int, true_class: int) -> list[tuple[str, int]]:
        """Return ``(worker_id, class)`` answers for one item."""
        rng = np.random.default_rng([self.seed, item_id])
        chosen = rng.choice(
            len(self.worker_ids), size=self.workers_per_item, replace=False
        )
        answers = []
        n_classes = len(self.class_names)
        for worker in sorted(int(w) for w in chosen):
            worker_rng = np.random.default_rng([self.seed, item_id, worker + 1])
            label = true_class
            if worker_rng.random() < self.settings.error_rates[worker]:
                label = int(
                    (true_class + worker_rng.integers(1, n_classes)) % n_classes
                )
            answers.append((self.worker_ids[worker], label))
        return answers

    def collect(self, store: JobStore, round_number: int) -> list[int]:
        for worker_id in self.worker_ids:
            store.ensure_worker(worker_id, kind="simulated")
        tasks = store.tasks(round_number=round_number, status="open")
        answered = {
            (a.item_id, a.worker_id) for a in store.answers([t.item_id for t in tasks])
        }
        records = {item.id: item.record for item in store.items()}

        pending: list[tuple[int, int, str, dict[str, Any], float | None]] = []
        for task in tasks:
            record = records.get(task.item_id)
            if record is None:
                continue
            true_class = self._true_class(record)
            if isinstance(true_class, str):
                store.fail_item(task.item_id, f"item {true_class}")
                continue
            for worker_id, label in self.answer(task.item_id, true_class):
                if (task.item_id, worker_id) in answered:
                    continue
                pending.append(
                    (
                        task.id,
                        task.item_id,
                        worker_id,
                        {"class": label},
                        self.settings.seconds_per_task,
                    )
                )
            if len(pending) >= COMMIT_EVERY:
                store.add_answers(pending)
                pending = []
        if pending:
            store.add_answers(pending)
        return []


@WORKFORCES.register("simulated")
def _make_simulated(**kwargs: Any) -> SimulatedWorkers:
    return SimulatedWorkers(**kwargs)
