"""Simulated crowd answers shared by the consolidation tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from labelloop.consolidation import Answer


@dataclass(frozen=True)
class SimulatedCrowd:
    """Answers of simulated workers together with the truth behind them."""

    answers: list[Answer]
    truth: np.ndarray
    accuracies: dict[str, float]


def _simulate(
    *,
    n_items: int,
    accuracies: Sequence[float],
    n_classes: int,
    answers_per_item: int,
    seed: int,
) -> SimulatedCrowd:
    """Let each item be answered by distinct random workers of given accuracy.

    A wrong answer is one of the other classes, chosen uniformly.
    """
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, size=n_items)
    worker_ids = [f"w{index}" for index in range(len(accuracies))]
    answers = []
    for item in range(n_items):
        chosen = rng.choice(len(accuracies), size=answers_per_item, replace=False)
        for worker in chosen:
            if rng.random() < accuracies[worker]:
                label = int(truth[item])
            else:
                label = int((truth[item] + rng.integers(1, n_classes)) % n_classes)
            answers.append(Answer(item, worker_ids[worker], label))
    return SimulatedCrowd(
        answers=answers,
        truth=truth,
        accuracies=dict(zip(worker_ids, accuracies, strict=True)),
    )


@pytest.fixture
def simulate_crowd() -> Callable[..., SimulatedCrowd]:
    """Return a function that simulates answers, see ``_simulate``."""
    return _simulate
