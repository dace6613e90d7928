"""Index arrays of answers, and the steps the consolidation methods share.

Items are numbered in increasing item id and workers in sorted worker id, and the
answers are sorted by (item, worker, label), so every array and every sum over
them is the same whatever the order of the input answers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from labelloop.consolidation.base import (
    Answer,
    ConsolidatedLabel,
    ConsolidationError,
    ConsolidationResult,
    WorkerQuality,
)
from labelloop.errors import ConfigError

logger = logging.getLogger(__name__)

#: Relative gap below which two posterior or vote values count as a tie.
TIE_RTOL = 1e-9


@dataclass(frozen=True)
class AnswerTable:
    """Valid answers as parallel index arrays.

    Attributes
    ----------
    item_ids : numpy.ndarray
        Shape ``(N,)``, the sorted ids of items with at least one valid answer.
    worker_ids : tuple of str
        Sorted ids of the workers who answered or were listed.
    item_index, worker_index, labels : numpy.ndarray
        Shape ``(A,)`` each: row in ``item_ids``, row in ``worker_ids`` and class
        of every valid answer.
    weights : numpy.ndarray
        Shape ``(A,)``: the weight of the worker who gave each answer.
    n_classes : int
        Number of classes ``K``.
    skipped_answers : int
        Answers dropped because their label is outside ``0..K-1``.
    """

    item_ids: np.ndarray
    worker_ids: tuple[str, ...]
    item_index: np.ndarray
    worker_index: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    n_classes: int
    skipped_answers: int

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def n_workers(self) -> int:
        return len(self.worker_ids)

    def answers_per_item(self) -> np.ndarray:
        """Return the number of valid answers of each item, shape ``(N,)``."""
        return np.bincount(self.item_index, minlength=self.n_items)

    def answers_per_worker(self) -> np.ndarray:
        """Return the number of valid answers of each worker, shape ``(W,)``."""
        return np.bincount(self.worker_index, minlength=self.n_workers)

    def weighted_votes(self) -> np.ndarray:
        """Return the summed answer weights per item and class, shape ``(N, K)``."""
        votes = np.zeros((self.n_items, self.n_classes))
        np.add.at(votes, (self.item_index, self.labels), self.weights)
        return votes

    def answer_counts(self, *, weighted: bool) -> scipy.sparse.csr_array:
        """Return a sparse ``(N, W * K)`` count of answers per item.

        Column ``w * K + l`` counts the answers of worker ``w`` with class ``l``,
        summing the worker weights when ``weighted``. Zero weights are not stored,
        so a product with ``-inf`` log-probabilities never meets ``0 * -inf``.
        """
        values = self.weights if weighted else np.ones(self.item_index.shape[0])
        counts = scipy.sparse.csr_array(
            (
                values,
                (self.item_index, self.worker_index * self.n_classes + self.labels),
            ),
            shape=(self.n_items, self.n_workers * self.n_classes),
        )
        counts.sum_duplicates()
        counts.eliminate_zeros()
        return counts


def validate_n_classes(n_classes: int) -> None:
    """Raise ConfigError unless ``n_classes`` is an integer of at least 2."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
        raise ConfigError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if n_classes < 2:
        raise ConfigError(
            f"n_classes must be >= 2, got {n_classes!r}; a task needs at least "
            "two classes to choose from"
        )


def encode_answers(
    answers: Sequence[Answer],
    *,
    n_classes: int,
    workers: Iterable[str] | None = None,
    worker_weights: Mapping[str, float] | None = None,
) -> AnswerTable:
    """Convert answers into an AnswerTable, skipping out-of-range labels.

    Parameters
    ----------
    answers : sequence of Answer
        Answers in any order. Repeated answers of one worker on one item are all
        kept, each as one observation.
    n_classes : int
        Number of classes ``K``.
    workers : iterable of str, optional
        Extra workers to number even without answers.
    worker_weights : mapping of str to float, optional
        Weight per worker, finite and >= 0; missing workers weigh 1.

    Returns
    -------
    AnswerTable

    Raises
    ------
    ConfigError
        When ``n_classes`` is not an integer >= 2.
    ConsolidationError
        When a worker weight is negative or not finite.
    """
    validate_n_classes(n_classes)
    weight_of = _validated_weights(worker_weights)

    item_list: list[int] = []
    worker_list: list[str] = []
    label_list: list[int] = []
    skipped: list[Answer] = []
    for answer in answers:
        if 0 <= answer.label < n_classes:
            item_list.append(int(answer.item_id))
            worker_list.append(answer.worker_id)
            label_list.append(int(answer.label))
        else:
            skipped.append(answer)
    if skipped:
        _log_skipped(skipped, n_classes=n_classes)

    # Workers whose answers were all skipped still appear, with no answers.
    worker_ids = sorted(
        set(worker_list) | {answer.worker_id for answer in skipped} | set(workers or ())
    )
    worker_row = {worker_id: row for row, worker_id in enumerate(worker_ids)}

    item_ids, item_index = np.unique(
        np.asarray(item_list, dtype=np.int64), return_inverse=True
    )
    worker_index = np.fromiter(
        (worker_row[worker_id] for worker_id in worker_list),
        dtype=np.int64,
        count=len(worker_list),
    )
    labels = np.asarray(label_list, dtype=np.int64)

    order = np.lexsort((labels, worker_index, item_index))
    item_index = item_index.reshape(-1)[order]
    worker_index = worker_index[order]
    labels = labels[order]
    row_weights = np.array([weight_of.get(w, 1.0) for w in worker_ids], dtype=float)
    weights = row_weights[worker_index]

    return AnswerTable(
        item_ids=item_ids,
        worker_ids=tuple(worker_ids),
        item_index=item_index,
        worker_index=worker_index,
        labels=labels,
        weights=weights,
        n_classes=int(n_classes),
        skipped_answers=len(skipped),
    )


def _validated_weights(worker_weights: Mapping[str, float] | None) -> dict[str, float]:
    if worker_weights is None:
        return {}
    checked: dict[str, float] = {}
    for worker_id, weight in worker_weights.items():
        value = float(weight)
        if not (math.isfinite(value) and value >= 0):
            raise ConsolidationError(
                f"worker_weights[{worker_id!r}] must be a finite number >= 0, got "
                f"{weight!r}; use 0 to exclude the worker"
            )
        checked[worker_id] = value
    return checked


def _log_skipped(skipped: list[Answer], *, n_classes: int) -> None:
    first = skipped[0]
    logger.warning(
        "skipped %d answers with a label outside 0..%d, for example item %s from "
        "worker %r with label %s",
        len(skipped),
        n_classes - 1,
        first.item_id,
        first.worker_id,
        first.label,
    )


def gold_rows(
    table: AnswerTable, gold: Mapping[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Return the table rows and classes of the gold items that have answers.

    Gold items without any valid answer are not modeled and are ignored.

    Raises
    ------
    ConsolidationError
        When a gold class is outside ``0..K-1``.
    """
    row_of = {item_id: row for row, item_id in enumerate(table.item_ids.tolist())}
    rows: list[int] = []
    classes: list[int] = []
    known = gold or {}
    for item_id in sorted(known):
        label = known[item_id]
        if not 0 <= label < table.n_classes:
            raise ConsolidationError(
                f"gold[{item_id!r}] must be a class in 0..{table.n_classes - 1}, "
                f"got {label!r}; remove the item from gold or fix its class"
            )
        if item_id in row_of:
            rows.append(row_of[item_id])
            classes.append(int(label))
    return np.array(rows, dtype=np.int64), np.array(classes, dtype=np.int64)


def argmax_random_ties(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return the argmax of each row, breaking ties uniformly at random.

    Values within a relative ``TIE_RTOL`` of the row maximum count as tied. The
    generator draws one key per cell, so the draws depend only on the shape.
    """
    keys = rng.random(scores.shape)
    row_max = scores.max(axis=1, keepdims=True)
    tied = scores >= row_max - TIE_RTOL * np.abs(row_max)
    return np.argmax(np.where(tied, keys, -1.0), axis=1)


def build_result(
    table: AnswerTable,
    *,
    posteriors: np.ndarray,
    labels: np.ndarray,
    confidences: np.ndarray,
    accuracies: np.ndarray,
    confusions: np.ndarray,
    class_prior: np.ndarray,
    n_iterations: int = 0,
    converged: bool = True,
) -> ConsolidationResult:
    """Assemble a ConsolidationResult from the per-item and per-worker arrays."""
    answers_per_item = table.answers_per_item()
    answers_per_worker = table.answers_per_worker()

    consolidated = {}
    for row, item_id in enumerate(table.item_ids.tolist()):
        consolidated[item_id] = ConsolidatedLabel(
            item_id=item_id,
            label=int(labels[row]),
            confidence=float(confidences[row]),
            n_answers=int(answers_per_item[row]),
            posterior=tuple(posteriors[row].tolist()),
        )

    qualities = {}
    for row, worker_id in enumerate(table.worker_ids):
        qualities[worker_id] = WorkerQuality(
            worker_id=worker_id,
            n_answers=int(answers_per_worker[row]),
            accuracy=float(accuracies[row]),
            confusion=tuple(tuple(r) for r in confusions[row].tolist()),
        )

    return ConsolidationResult(
        labels=consolidated,
        workers=qualities,
        class_prior=tuple(class_prior.tolist()),
        skipped_answers=table.skipped_answers,
        n_iterations=n_iterations,
        converged=converged,
    )
