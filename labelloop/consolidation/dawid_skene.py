"""Dawid-Skene consolidation: EM over class priors and worker confusion matrices.

Model (Dawid and Skene, "Maximum likelihood estimation of observer error-rates
using the EM algorithm", Applied Statistics, 1979): each item has a true class
drawn from the class prior, and each worker answers class ``l`` for an item of
class ``k`` with probability ``confusion[worker, k, l]``, independently of the
other workers. EM alternates between the posterior of each item's class (E-step)
and the class prior and confusion matrices re-estimated from the posteriors plus
Dirichlet pseudo-counts (M-step). Adding pseudo-counts ``alpha`` gives the MAP
estimate under a Dirichlet(``alpha + 1``) prior.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse

from labelloop.consolidation.answer_table import (
    AnswerTable,
    argmax_random_ties,
    build_result,
    encode_answers,
    gold_rows,
)
from labelloop.consolidation.base import (
    Answer,
    ConsolidationError,
    ConsolidationResult,
)
from labelloop.consolidation.smoothing import (
    smoothed_class_prior,
    smoothed_confusion,
    validate_prior_settings,
)
from labelloop.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DawidSkene:
    """Consolidate answers with the Dawid-Skene model fitted by EM.

    The posteriors start from the weighted vote shares of each item, each class
    given ``init_smoothing`` extra votes, or from ``initial_posteriors`` where
    given. Each iteration runs the M-step, then the E-step in log space, and stops
    when no posterior moves by more than ``tol`` or after ``max_iter`` iterations.
    A last M-step makes the reported worker qualities match the final posteriors.

    Every confusion row gets a diagonal-heavy Dirichlet prior of
    ``prior_strength`` pseudo-answers, a share ``prior_accuracy`` of them on the
    true class. A worker with few answers therefore stays near that prior rather
    than getting an extreme confusion matrix. The class prior gets
    ``class_prior_strength`` pseudo-items per class, so a class that no worker
    chose keeps a positive prior. With all three smoothing settings at 0 the fit
    is the textbook maximum-likelihood EM.

    A worker's weight multiplies its log-likelihood terms in the E-step. The
    M-step estimates every worker's confusion matrix from all of its answers, so a
    worker with weight 0 still gets a quality estimate but no say in the labels.

    ``accuracy`` of a worker is ``sum_k class_prior[k] * confusion[k, k]``.

    Parameters
    ----------
    prior_strength : float, default=4.0
        Pseudo-answers per confusion row. 0 disables smoothing.
    prior_accuracy : float, default=0.7
        Diagonal share of the confusion prior, strictly between 0 and 1.
    class_prior_strength : float, default=1.0
        Pseudo-items per class in the class prior. 0 disables smoothing.
    init_smoothing : float, default=0.1
        Extra votes per class in the initial posteriors. 0 starts from plain vote
        shares, where a class without votes starts at probability 0.
    tol : float, default=1e-6
        Convergence threshold on the largest change of any posterior.
    max_iter : int, default=1000
        Iteration limit. Reaching it logs a warning and sets ``converged=False``.

    Raises
    ------
    ConfigError
        When a setting is out of range.
    """

    name: ClassVar[str] = "dawid-skene"

    prior_strength: float = 4.0
    prior_accuracy: float = 0.7
    class_prior_strength: float = 1.0
    init_smoothing: float = 0.1
    tol: float = 1e-6
    max_iter: int = 1000

    def __post_init__(self) -> None:
        validate_prior_settings(
            prior_strength=self.prior_strength,
            prior_accuracy=self.prior_accuracy,
            class_prior_strength=self.class_prior_strength,
        )
        if not (math.isfinite(self.init_smoothing) and self.init_smoothing >= 0):
            raise ConfigError(
                "init_smoothing must be a finite number >= 0, got "
                f"{self.init_smoothing!r}"
            )
        if not (math.isfinite(self.tol) and self.tol > 0):
            raise ConfigError(f"tol must be a finite number > 0, got {self.tol!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int):
            raise ConfigError(
                f"max_iter must be an integer >= 1, got {self.max_iter!r}"
            )
        if self.max_iter < 1:
            raise ConfigError(f"max_iter must be >= 1, got {self.max_iter!r}")

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
        """Fit the model to ``answers`` and return labels and worker qualities.

        Parameters
        ----------
        answers : sequence of Answer
            All answers collected so far, in any order.
        n_classes : int
            Number of classes ``K``, at least 2.
        rng : numpy.random.Generator
            Breaks ties between classes with equal posteriors.
        workers : iterable of str, optional
            Workers to report even without answers; they get the prior mean
            confusion matrix.
        gold : mapping of int to int, optional
            Items whose true class is known: their posterior is clamped to that
            class in every iteration, so they train the confusion matrices.
        worker_weights : mapping of str to float, optional
            Factor on each worker's log-likelihood terms, finite and >= 0; missing
            workers weigh 1.
        initial_posteriors : mapping of int to sequence of float, optional
            Warm start, for example ``previous_result.posteriors()`` when the
            answers have grown. Items missing from it start from the vote shares,
            and ids without answers are ignored. Each row is normalized.
            NOTE: EM finds a local optimum, and the stopping rule bounds the last
            step rather than the distance to the optimum. A warm and a cold start
            agree to about ``tol`` only when both reach the same optimum, as they
            do on the simulated crowds in the tests.

        Returns
        -------
        ConsolidationResult

        Raises
        ------
        ConfigError
            When ``n_classes`` is not an integer >= 2.
        ConsolidationError
            When a worker weight, a gold class or an initial posterior is invalid.
        """
        table = encode_answers(
            answers,
            n_classes=n_classes,
            workers=workers,
            worker_weights=worker_weights,
        )
        gold_item_rows, gold_classes = gold_rows(table, gold)
        gold_one_hot = np.eye(n_classes)[gold_classes]

        answer_counts = table.answer_counts(weighted=False)
        weighted_counts = table.answer_counts(weighted=True)
        posteriors = self._initial_posteriors(table, initial_posteriors)
        posteriors[gold_item_rows] = gold_one_hot

        converged = False
        n_iterations = 0
        change = math.inf
        while n_iterations < self.max_iter:
            n_iterations += 1
            class_prior, confusions = self._m_step(answer_counts, posteriors)
            updated = _e_step(weighted_counts, class_prior, confusions)
            updated[gold_item_rows] = gold_one_hot
            change = float(np.max(np.abs(updated - posteriors), initial=0.0))
            posteriors = updated
            if change < self.tol:
                converged = True
                break
        if not converged:
            logger.warning(
                "Dawid-Skene stopped after max_iter=%d iterations with a largest "
                "posterior change of %.3g > tol=%.3g",
                self.max_iter,
                change,
                self.tol,
            )
        logger.debug(
            "Dawid-Skene fitted %d items and %d workers in %d iterations",
            table.n_items,
            table.n_workers,
            n_iterations,
        )

        class_prior, confusions = self._m_step(answer_counts, posteriors)
        labels = argmax_random_ties(posteriors, rng)
        return build_result(
            table,
            posteriors=posteriors,
            labels=labels,
            confidences=posteriors[np.arange(table.n_items), labels],
            accuracies=confusions.diagonal(axis1=1, axis2=2) @ class_prior,
            confusions=confusions,
            class_prior=class_prior,
            n_iterations=n_iterations,
            converged=converged,
        )

    def _initial_posteriors(
        self,
        table: AnswerTable,
        initial_posteriors: Mapping[int, Sequence[float]] | None,
    ) -> np.ndarray:
        votes = table.weighted_votes() + self.init_smoothing
        totals = votes.sum(axis=1, keepdims=True)
        safe_totals = np.where(totals > 0, totals, 1.0)
        posteriors = np.where(totals > 0, votes / safe_totals, 1.0 / table.n_classes)
        if not initial_posteriors:
            return posteriors

        for row, item_id in enumerate(table.item_ids.tolist()):
            start = initial_posteriors.get(item_id)
            if start is not None:
                posteriors[row] = _normalized_start(item_id, start, table.n_classes)
        return posteriors

    def _m_step(
        self, answer_counts: scipy.sparse.csr_array, posteriors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the class prior ``(K,)`` and confusion matrices ``(W, K, K)``.

        ``answer_counts`` is the unweighted ``AnswerTable.answer_counts``.
        """
        n_classes = posteriors.shape[1]
        n_workers = answer_counts.shape[1] // n_classes
        class_prior = smoothed_class_prior(
            posteriors.sum(axis=0), strength=self.class_prior_strength
        )

        # Row w * K + l sums the posteriors of the items that worker w answered
        # with class l, so its column k is the soft count of (true k, answered l).
        counts_by_answer = answer_counts.T @ posteriors
        counts = counts_by_answer.reshape(n_workers, n_classes, n_classes)
        confusions = smoothed_confusion(
            counts.transpose(0, 2, 1),
            strength=self.prior_strength,
            accuracy=self.prior_accuracy,
        )
        return class_prior, confusions


def _e_step(
    weighted_counts: scipy.sparse.csr_array,
    class_prior: np.ndarray,
    confusions: np.ndarray,
) -> np.ndarray:
    """Return the posterior of every item's class, shape ``(N, K)``.

    ``weighted_counts`` is the weighted ``AnswerTable.answer_counts``. Zero
    probabilities, possible only without smoothing, become ``-inf`` in log space.
    An item with probability 0 under every class gets the class prior.
    """
    n_workers, n_classes, _ = confusions.shape
    with np.errstate(divide="ignore"):
        log_confusions = np.log(confusions)
        log_prior = np.log(class_prior)

    # Row w * K + l of log_likelihoods is log P(worker w answers l | class k).
    log_likelihoods = log_confusions.transpose(0, 2, 1).reshape(
        n_workers * n_classes, n_classes
    )
    log_joint = np.asarray(weighted_counts @ log_likelihoods) + log_prior

    row_max = log_joint.max(axis=1, keepdims=True)
    impossible = ~np.isfinite(row_max[:, 0])
    if impossible.any():
        logger.warning(
            "%d items have probability 0 under every class; using the class prior "
            "for them. Set prior_strength > 0 to avoid this",
            int(impossible.sum()),
        )
        log_joint[impossible] = log_prior
        row_max[impossible] = log_prior.max()

    unnormalized = np.exp(log_joint - row_max)
    return unnormalized / unnormalized.sum(axis=1, keepdims=True)


def _normalized_start(
    item_id: int, start: Sequence[float], n_classes: int
) -> np.ndarray:
    row = np.asarray(start, dtype=float)
    valid = (
        row.shape == (n_classes,)
        and bool(np.all(np.isfinite(row)))
        and bool(np.all(row >= 0))
        and float(row.sum()) > 0
    )
    if not valid:
        raise ConsolidationError(
            f"initial_posteriors[{item_id!r}] must be {n_classes} finite numbers "
            f">= 0 with a positive sum, got {list(start)!r}; pass the posteriors "
            "of a previous result with the same classes"
        )
    return row / row.sum()
