"""Worker quality inside a job: gold items, consolidation and exclusion.

Every time a round's answers are in, `WorkerQualityTracker` consolidates all
answers of the job so far, warm-started from the posteriors stored after the
previous consolidation, so that each worker's estimate rests on every answer
they gave. It stores the estimates, excludes workers below the job's accuracy
floor and decides which of the round's items need more answers. Class labels
are indices ``0..K-1``; an answer outside that range is skipped and counted.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from labelloop.config import JobConfig
from labelloop.consolidation import Answer as VoteAnswer
from labelloop.consolidation import (
    ConsolidationResult,
    Consolidator,
    WorkerQuality,
    needs_more_answers,
)
from labelloop.store import JobStore
from labelloop.store.schema import GOLD_PURPOSE

logger = logging.getLogger(__name__)

#: Gold answers are spread over this many first rounds, an equal share each.
GOLD_ROUNDS = 3

#: Seed part of the generator that breaks ties in the consolidation.
CONSOLIDATION_STREAM = 2


def gold_quota(round_number: int, gold_per_worker: int) -> int:
    """Return the gold answers a worker should have given by the end of a round.

    Each of the first `GOLD_ROUNDS` rounds adds an equal share (rounded up) of
    ``gold_per_worker``; round 0 (before the first round) allows none.

    Parameters
    ----------
    round_number : int
        The round being collected, from 1.
    gold_per_worker : int
        Gold answers each worker gives over the whole job.

    Returns
    -------
    int
    """
    if round_number <= 0 or gold_per_worker <= 0:
        return 0
    share = math.ceil(gold_per_worker * round_number / GOLD_ROUNDS)
    return min(gold_per_worker, share)


def class_index(value: Any, class_names: Sequence[str]) -> int | None:
    """Return the class index of a class name or index, or None if it is neither."""
    if isinstance(value, str) and value in class_names:
        return list(class_names).index(value)
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value < len(class_names)
    ):
        return value
    return None


def answer_class(value: Any) -> int:
    """Return the class of a stored answer value, or -1 when it has none."""
    if isinstance(value, dict):
        label = value.get("class")
        if isinstance(label, int) and not isinstance(label, bool):
            return label
    return -1


class WorkerQualityTracker:
    """Consolidate all answers of a job and keep its workers' quality.

    Parameters
    ----------
    config : JobConfig
        The job; its ``worker_quality`` section sets gold items, exclusion and
        adaptive redundancy.
    store : JobStore
        The job's database.
    consolidator : Consolidator
        The job's consolidation method.
    """

    def __init__(
        self, config: JobConfig, store: JobStore, *, consolidator: Consolidator
    ) -> None:
        self.config = config
        self.settings = config.worker_quality
        self.store = store
        self.consolidator = consolidator
        self.class_names = list(config.label_categories)
        self.n_classes = len(self.class_names)
        # Workers of this kind answer the job's tasks (``simulated`` or ``web``).
        self.worker_kind = config.workforce.type

    def prepare_gold(self) -> list[int]:
        """Mark the manifest's gold items, post their tasks and write their labels.

        Runs at every start of the loop and marks only items not marked yet. An
        item whose gold value is not a label category stays an ordinary item,
        with an event saying why.

        Returns
        -------
        list of int
            Ids of the items marked now.
        """
        key = self.settings.gold_label_key
        if key is None:
            return []
        known = self.store.gold_classes()
        gold: dict[int, int] = {}
        for item in self.store.items():
            record = item.record or {}
            if key not in record or item.id in known:
                continue
            index = class_index(record[key], self.class_names)
            if index is None:
                message = (
                    f"line {item.line}: gold value {key!r} = {record[key]!r} is not "
                    f"one of the label categories {self.class_names}; the item is "
                    "labeled as an ordinary item"
                )
                self.store.log_event("gold-invalid", message, item_id=item.id)
                logger.warning("%s", message)
                continue
            gold[item.id] = index
        marked = self.store.add_gold_items(gold)
        if marked:
            logger.info("marked %s gold items (key %r)", len(marked), key)
        return marked

    def update(self, round_number: int, *, attempt: int = 0) -> ConsolidationResult:
        """Consolidate every answer of the job, store estimates and exclude workers.

        Excluded workers weigh 0 in the consolidation. The answers of a worker
        that this update excludes also weigh 0 in the result it returns.

        Parameters
        ----------
        round_number : int
            The round whose answers just came in.
        attempt : int, default=0
            How many times the round already asked for more answers; it seeds
            the tie-breaking.

        Returns
        -------
        ConsolidationResult
        """
        answers = self._answers()
        gold = self.store.gold_classes()
        excluded = self.store.excluded_workers()
        workers = [worker.id for worker in self.store.workers()]
        rng = np.random.default_rng(
            [self.config.seed, round_number, CONSOLIDATION_STREAM, attempt]
        )

        result = self._consolidate(
            answers,
            gold=gold,
            workers=workers,
            excluded=excluded,
            initial=self._initial_posteriors(),
            rng=rng,
        )
        newly_excluded = self._to_exclude(result, excluded)
        triggers = {worker: result.workers[worker] for worker in newly_excluded}
        if newly_excluded:
            excluded |= set(newly_excluded)
            result = self._consolidate(
                answers,
                gold=gold,
                workers=workers,
                excluded=excluded,
                initial=result.posteriors(),
                rng=rng,
            )

        rows = self._estimate_rows(result, answers, gold=gold, excluded=excluded)
        self.store.save_worker_quality(
            round_number,
            method=self.consolidator.name,
            estimates=rows,
            posteriors=result.posteriors(),
        )
        self._exclude(round_number, triggers, rows)
        self._log_skipped(round_number, result.skipped_answers)
        return result

    def more_answers(
        self,
        round_number: int,
        result: ConsolidationResult,
        *,
        expired: set[int],
    ) -> dict[int, int]:
        """Return the round's tasks that need more answers, with their new count.

        An item needs more answers when fewer than ``workers_per_item`` of its
        answers count (answers of excluded workers and out-of-range answers do
        not), or, under adaptive redundancy, when `needs_more_answers` says so
        for the counted answers and the item's posterior. The count grows only
        by as many workers of the workforce as are active and have not answered
        the item.

        Returns
        -------
        dict of int to int
            ``required_answers`` per task id.
        """
        tasks = [
            task
            for task in self.store.tasks(round_number=round_number, status="open")
            if task.id not in expired and task.purpose != GOLD_PURPOSE
        ]
        if not tasks:
            return {}
        labeled = {
            item_id
            for item_id, label in self.store.labels().items()
            if label.origin == "human"
        }
        valid = {item.id for item in self.store.items()}
        excluded = self.store.excluded_workers()
        available = {
            worker.id
            for worker in self.store.workers()
            if worker.active and worker.kind == self.worker_kind
        }
        by_item: dict[int, list[tuple[str, int, int | None]]] = defaultdict(list)
        for answer in self.store.answers([task.item_id for task in tasks]):
            by_item[answer.item_id].append(
                (answer.worker_id, answer_class(answer.value), answer.task_id)
            )

        required: dict[int, int] = {}
        for task in tasks:
            if task.item_id in labeled or task.item_id not in valid:
                continue
            rows = by_item.get(task.item_id, [])
            capacity = len(available - {worker for worker, _, _ in rows})
            counted = [
                VoteAnswer(item_id=task.item_id, worker_id=worker, label=label)
                for worker, label, _ in rows
                if worker not in excluded and 0 <= label < self.n_classes
            ]
            on_task = sum(1 for _, _, task_id in rows if task_id == task.id)
            if on_task < (
                task.required_answers or self.config.initial_answers_per_item
            ):
                # The workforce has not given the answers asked for yet.
                continue
            missing = self._answers_missing(task.item_id, counted, result)
            if missing <= 0 or capacity == 0:
                continue
            required[task.id] = on_task + min(missing, capacity)
        return required

    def human_labels(
        self, round_number: int, result: ConsolidationResult
    ) -> list[tuple[int, dict[str, Any], float]]:
        """Return ``(item_id, value, confidence)`` of the round's consolidated items."""
        valid = {item.id for item in self.store.items()}
        labels = []
        for task in self.store.tasks(round_number=round_number):
            consolidated = result.labels.get(task.item_id)
            if task.purpose == GOLD_PURPOSE or consolidated is None:
                continue
            if task.item_id not in valid:
                continue
            labels.append(
                (
                    task.item_id,
                    {"class": int(consolidated.label)},
                    float(consolidated.confidence),
                )
            )
        return sorted(labels)

    # Helpers

    def _answers(self) -> list[VoteAnswer]:
        valid = {item.id for item in self.store.items()}
        return [
            VoteAnswer(
                item_id=answer.item_id,
                worker_id=answer.worker_id,
                label=answer_class(answer.value),
            )
            for answer in self.store.answers()
            if answer.item_id in valid
        ]

    def _initial_posteriors(self) -> dict[int, list[float]]:
        return {
            item_id: posterior
            for item_id, posterior in self.store.item_posteriors().items()
            if len(posterior) == self.n_classes
        }

    def _consolidate(
        self,
        answers: list[VoteAnswer],
        *,
        gold: dict[int, int],
        workers: list[str],
        excluded: set[str],
        initial: dict[int, Any],
        rng: np.random.Generator,
    ) -> ConsolidationResult:
        return self.consolidator.consolidate(
            answers,
            n_classes=self.n_classes,
            rng=rng,
            workers=workers,
            gold=gold,
            worker_weights={worker: 0.0 for worker in excluded},
            initial_posteriors=initial,
        )

    def _to_exclude(self, result: ConsolidationResult, excluded: set[str]) -> list[str]:
        floor = self.settings.min_worker_accuracy
        if floor is None:
            return []
        return sorted(
            worker_id
            for worker_id, quality in result.workers.items()
            if worker_id not in excluded
            and quality.n_answers >= self.settings.min_answers_before_exclusion
            and quality.accuracy < floor
        )

    def _estimate_rows(
        self,
        result: ConsolidationResult,
        answers: list[VoteAnswer],
        *,
        gold: dict[int, int],
        excluded: set[str],
    ) -> list[dict[str, Any]]:
        gold_answers: dict[str, int] = defaultdict(int)
        gold_correct: dict[str, int] = defaultdict(int)
        for answer in answers:
            if answer.item_id in gold and 0 <= answer.label < self.n_classes:
                gold_answers[answer.worker_id] += 1
                gold_correct[answer.worker_id] += int(
                    answer.label == gold[answer.item_id]
                )
        return [
            {
                "worker_id": worker_id,
                "n_answers": quality.n_answers,
                "accuracy": quality.accuracy,
                "confusion": [list(row) for row in quality.confusion],
                "gold_answers": gold_answers[worker_id],
                "gold_correct": gold_correct[worker_id],
                "excluded": worker_id in excluded,
            }
            for worker_id, quality in sorted(result.workers.items())
        ]

    def _exclude(
        self,
        round_number: int,
        triggers: dict[str, WorkerQuality],
        rows: list[dict[str, Any]],
    ) -> None:
        """Exclude the workers whose estimates in ``triggers`` fell below the floor."""
        by_worker = {row["worker_id"]: row for row in rows}
        for worker_id, quality in triggers.items():
            row = by_worker[worker_id]
            message = (
                f"worker {worker_id} excluded in round {round_number}: estimated "
                f"accuracy {quality.accuracy:.3f} after {quality.n_answers} answers "
                f"is below min_worker_accuracy={self.settings.min_worker_accuracy}"
            )
            cancelled = self.store.exclude_worker(
                worker_id,
                message=message,
                data={
                    "round": round_number,
                    "estimated_accuracy": quality.accuracy,
                    "n_answers": quality.n_answers,
                    "gold_answers": row["gold_answers"],
                    "gold_correct": row["gold_correct"],
                },
            )
            logger.warning("%s; %s open assignments went back", message, cancelled)
        if triggers:
            self._warn_if_short(round_number)

    def _warn_if_short(self, round_number: int) -> None:
        active = [
            worker
            for worker in self.store.workers()
            if worker.active and worker.kind == self.worker_kind
        ]
        needed = self.config.max_answers_per_item
        if self.worker_kind == "simulated" and len(active) < needed:
            message = (
                f"round {round_number}: {len(active)} active workers remain after "
                f"exclusions, fewer than the {needed} answers an item may need; "
                "items get answers from the remaining workers"
            )
            self.store.log_event("workforce-short", message)
            logger.warning("%s", message)

    def _answers_missing(
        self,
        item_id: int,
        counted: list[VoteAnswer],
        result: ConsolidationResult,
    ) -> int:
        """Return how many more counted answers an item needs now."""
        settings = self.settings
        if not settings.adaptive_redundancy:
            return self.config.workers_per_item - len(counted)
        consolidated = result.labels.get(item_id)
        posterior = consolidated.posterior if consolidated is not None else None
        more = needs_more_answers(
            counted,
            posterior if counted else None,
            min_answers=settings.min_answers,
            max_answers=self.config.max_answers_per_item,
            confidence=settings.confidence,
        )
        if not more:
            return 0
        return max(1, settings.min_answers - len(counted))

    def _log_skipped(self, round_number: int, skipped: int) -> None:
        """Log an event when the number of skipped answers changed."""
        previous = self.store.events("answers-skipped")
        last = (previous[-1].data or {}).get("skipped", 0) if previous else 0
        if skipped == last:
            return
        message = (
            f"round {round_number}: {skipped} answers have no class in "
            f"0..{self.n_classes - 1} (for example a removed category) and are "
            "left out of the consolidation"
        )
        self.store.log_event(
            "answers-skipped",
            message,
            data={"round": round_number, "skipped": skipped},
        )
        logger.warning("%s", message)
