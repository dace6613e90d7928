"""Data types and the contract shared by the consolidation methods.

Class labels are indices ``0..K-1``. A consolidation method turns the answers of
several workers per item into one label per item and an estimate of each worker's
quality.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from labelloop.errors import LabelloopError


class ConsolidationError(LabelloopError):
    """Invalid input to a consolidation method: names the argument, value and fix."""


@dataclass(frozen=True)
class Answer:
    """One worker's label for one item.

    Attributes
    ----------
    item_id : int
        Item that was labeled.
    worker_id : str
        Worker who answered.
    label : int
        Class index ``0..K-1``.
    """

    item_id: int
    worker_id: str
    label: int


@dataclass(frozen=True)
class ConsolidatedLabel:
    """Consolidated label of one item.

    Attributes
    ----------
    item_id : int
        Item the label belongs to.
    label : int
        Consolidated class index.
    confidence : float
        Posterior probability of ``label``, in ``[0, 1]``.
    n_answers : int
        Number of valid answers the item received.
    posterior : tuple of float
        Posterior probability of each of the ``K`` classes.
    """

    item_id: int
    label: int
    confidence: float
    n_answers: int
    posterior: tuple[float, ...]


@dataclass(frozen=True)
class WorkerQuality:
    """Estimated quality of one worker.

    Attributes
    ----------
    worker_id : str
        Worker described.
    n_answers : int
        Number of valid answers the worker gave.
    accuracy : float
        Estimated probability that the worker's answer is the true class. Each
        method documents how it averages over classes.
    confusion : tuple of tuple of float
        ``K x K`` matrix: row is the true class, column the answered class. Each row
        sums to 1.
    """

    worker_id: str
    n_answers: int
    accuracy: float
    confusion: tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class ConsolidationResult:
    """Output of one consolidation run.

    Attributes
    ----------
    labels : dict of int to ConsolidatedLabel
        One entry per item with at least one valid answer.
    workers : dict of str to WorkerQuality
        One entry per worker that answered or was listed in ``workers``.
    class_prior : tuple of float
        Estimated share of each class among the items.
    skipped_answers : int
        Answers dropped because their label is outside ``0..K-1``.
    n_iterations : int
        Iterations run by an iterative method, 0 for a one-pass method.
    converged : bool
        False when an iterative method stopped at its iteration limit.
    """

    labels: dict[int, ConsolidatedLabel]
    workers: dict[str, WorkerQuality]
    class_prior: tuple[float, ...]
    skipped_answers: int = 0
    n_iterations: int = 0
    converged: bool = True

    def posteriors(self) -> dict[int, tuple[float, ...]]:
        """Return the posterior of every labeled item, as used for a warm start."""
        return {item_id: label.posterior for item_id, label in self.labels.items()}


@runtime_checkable
class Consolidator(Protocol):
    """A method that consolidates answers into labels and worker qualities.

    Implementations must give the same result for the same answers in any order
    and the same ``rng`` seed. Items without answers are absent from the result.
    Answers with a label outside ``0..n_classes-1`` are skipped, logged and counted
    in ``ConsolidationResult.skipped_answers``.
    """

    @property
    def name(self) -> str:
        """Name under which the method is registered."""
        ...

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
        """Consolidate ``answers`` into one label per item.

        Parameters
        ----------
        answers : sequence of Answer
            All answers collected so far.
        n_classes : int
            Number of classes ``K``, at least 2.
        rng : numpy.random.Generator
            Source of randomness, used to break ties.
        workers : iterable of str, optional
            Workers to report even when they gave no answer.
        gold : mapping of int to int, optional
            Items whose true class is known. Their label is fixed to that class.
        worker_weights : mapping of str to float, optional
            Non-negative weight of each worker's answers; missing workers weigh 1.
            A weight of 0 excludes the worker's answers from the labels.
        initial_posteriors : mapping of int to sequence of float, optional
            Starting posteriors (a warm start) for iterative methods. One-pass
            methods ignore it.

        Returns
        -------
        ConsolidationResult
        """
        ...
