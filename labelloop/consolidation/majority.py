"""Majority vote: the most frequent answer per item, ties broken at random."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from labelloop.consolidation.answer_table import (
    AnswerTable,
    argmax_random_ties,
    build_result,
    encode_answers,
    gold_rows,
)
from labelloop.consolidation.base import Answer, ConsolidationResult
from labelloop.consolidation.smoothing import (
    smoothed_class_prior,
    smoothed_confusion,
    validate_prior_settings,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MajorityVote:
    """Consolidate answers by (weighted) majority vote.

    The label is the class with the largest summed worker weight (the most
    frequent answer when all weights are 1). Ties are broken uniformly at random
    with the ``rng`` passed to ``consolidate``, never by the order of the answers.
    The posterior is the share of the votes per class, so the confidence is the
    winner's share: 3 workers with 3 different answers give 1/3.

    An item with a single answer gets the answering worker's estimated accuracy as
    confidence and the rest of the probability spread over the other classes.
    NOTE: the SageMaker Developer Guide pages on annotation consolidation and on
    output data do not define the confidence Ground Truth reports for a single
    annotation, so this choice is labelloop's own.

    Worker quality compares each answer with the consolidated label on the items
    where that label rests on more than the answer itself: items with two or more
    answers, and gold items. ``accuracy`` is the smoothed share of agreements,
    ``(agreements + prior_strength * prior_accuracy) / (compared + prior_strength)``,
    so a worker compared on nothing gets ``prior_accuracy``. ``confusion`` counts
    consolidated class against answered class, smoothed per row with the same
    Dirichlet prior.

    Parameters
    ----------
    prior_strength : float, default=4.0
        Pseudo-answers of the smoothing prior, per worker for ``accuracy`` and per
        confusion row. 0 disables smoothing.
    prior_accuracy : float, default=0.7
        Accuracy assumed for a worker with no evidence, strictly between 0 and 1.
    class_prior_strength : float, default=1.0
        Pseudo-items per class added to the posteriors when estimating the class
        prior.

    Raises
    ------
    ConfigError
        When a setting is out of range.
    """

    name: ClassVar[str] = "majority-vote"

    prior_strength: float = 4.0
    prior_accuracy: float = 0.7
    class_prior_strength: float = 1.0

    def __post_init__(self) -> None:
        validate_prior_settings(
            prior_strength=self.prior_strength,
            prior_accuracy=self.prior_accuracy,
            class_prior_strength=self.class_prior_strength,
        )

    def consolidate(
        self,
        answers: Sequence[Answer],
        *,
        n_classes: int,
        rng: np.random.Generator,
        workers: Iterable[str] | None = None,
        gold: Mapping[int, int] | None = None,
        worker_weights: Mapping[str, float] | None = None,
        initial_posteriors: Mapping[int, Sequence[float]] | None = None,
    ) -> ConsolidationResult:
        """Consolidate ``answers`` by majority vote.

        Parameters
        ----------
        answers : sequence of Answer
            All answers collected so far, in any order.
        n_classes : int
            Number of classes ``K``, at least 2.
        rng : numpy.random.Generator
            Breaks ties between classes with equal votes.
        workers : iterable of str, optional
            Workers to report even without answers; they get the prior quality.
        gold : mapping of int to int, optional
            Items whose true class is known: their label is that class with
            confidence 1, and workers are compared with it.
        worker_weights : mapping of str to float, optional
            Vote weight per worker, finite and >= 0; missing workers weigh 1. An
            item whose voters all weigh 0 gets a uniform posterior.
        initial_posteriors : mapping of int to sequence of float, optional
            Ignored, because majority vote is not iterative.

        Returns
        -------
        ConsolidationResult
            With ``n_iterations=0``.

        Raises
        ------
        ConfigError
            When ``n_classes`` is not an integer >= 2.
        ConsolidationError
            When a worker weight or a gold class is invalid.
        """
        table = encode_answers(
            answers,
            n_classes=n_classes,
            workers=workers,
            worker_weights=worker_weights,
        )
        gold_item_rows, gold_classes = gold_rows(table, gold)

        posteriors = _vote_shares(table)
        labels = argmax_random_ties(posteriors, rng)
        labels[gold_item_rows] = gold_classes
        posteriors[gold_item_rows] = np.eye(n_classes)[gold_classes]

        is_gold = np.zeros(table.n_items, dtype=bool)
        is_gold[gold_item_rows] = True
        accuracies, confusions = self._worker_quality(table, labels, is_gold)

        self._set_single_answer_posteriors(table, posteriors, accuracies, is_gold)
        confidences = posteriors[np.arange(table.n_items), labels]
        class_prior = smoothed_class_prior(
            posteriors.sum(axis=0), strength=self.class_prior_strength
        )
        logger.debug(
            "majority vote consolidated %d items from %d workers",
            table.n_items,
            table.n_workers,
        )
        return build_result(
            table,
            posteriors=posteriors,
            labels=labels,
            confidences=confidences,
            accuracies=accuracies,
            confusions=confusions,
            class_prior=class_prior,
        )

    def _worker_quality(
        self, table: AnswerTable, labels: np.ndarray, is_gold: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return smoothed agreement rates ``(W,)`` and confusions ``(W, K, K)``."""
        n_classes = table.n_classes
        has_reference = (table.answers_per_item() >= 2) | is_gold
        compared = has_reference[table.item_index]

        counts = np.zeros((table.n_workers, n_classes, n_classes))
        np.add.at(
            counts,
            (
                table.worker_index[compared],
                labels[table.item_index[compared]],
                table.labels[compared],
            ),
            1.0,
        )
        confusions = smoothed_confusion(
            counts, strength=self.prior_strength, accuracy=self.prior_accuracy
        )

        n_compared = counts.sum(axis=(1, 2))
        n_agreed = np.trace(counts, axis1=1, axis2=2)
        numerator = n_agreed + self.prior_strength * self.prior_accuracy
        denominator = n_compared + self.prior_strength
        safe_denominator = np.where(denominator > 0, denominator, 1.0)
        accuracies = np.where(
            denominator > 0, numerator / safe_denominator, self.prior_accuracy
        )
        return accuracies, confusions

    @staticmethod
    def _set_single_answer_posteriors(
        table: AnswerTable,
        posteriors: np.ndarray,
        accuracies: np.ndarray,
        is_gold: np.ndarray,
    ) -> None:
        """Replace the one-vote posterior of single-answer items in place."""
        n_classes = table.n_classes
        single_item = (table.answers_per_item() == 1) & ~is_gold
        single_answer = single_item[table.item_index] & (table.weights > 0)

        rows = table.item_index[single_answer]
        accuracy = accuracies[table.worker_index[single_answer]]
        posteriors[rows] = ((1.0 - accuracy) / (n_classes - 1))[:, None]
        posteriors[rows, table.labels[single_answer]] = accuracy


def _vote_shares(table: AnswerTable) -> np.ndarray:
    """Return each item's share of the weighted votes per class, shape ``(N, K)``.

    An item whose voters all weigh 0 gets a uniform row.
    """
    votes = table.weighted_votes()
    totals = votes.sum(axis=1, keepdims=True)
    safe_totals = np.where(totals > 0, totals, 1.0)
    return np.where(totals > 0, votes / safe_totals, 1.0 / table.n_classes)
