"""Query strategies: which unlabeled items go to humans next.

A strategy sees the class probabilities of the pool items and returns the
positions of the items to query. Ties are broken by a seeded random order.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from labelloop.registry import Registry


class QueryStrategy(Protocol):
    """Choose ``n`` pool positions from an (n_pool, n_classes) probability array."""

    name: str

    def select(
        self, probabilities: np.ndarray, n: int, *, rng: np.random.Generator
    ) -> np.ndarray: ...


STRATEGIES: Registry[QueryStrategy] = Registry("query strategy")


def _lowest(scores: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return positions of the ``n`` lowest scores, ties in random order."""
    n = min(n, len(scores))
    tie_breaker = rng.permutation(len(scores))
    order = np.lexsort((tie_breaker, scores))
    return order[:n]


class RandomSampling:
    """Uniform random items: the baseline every strategy must beat."""

    name = "random"

    def select(
        self, probabilities: np.ndarray, n: int, *, rng: np.random.Generator
    ) -> np.ndarray:
        return rng.permutation(len(probabilities))[: min(n, len(probabilities))]


class LeastConfidence:
    """Items whose top class probability is lowest."""

    name = "least-confidence"

    def select(
        self, probabilities: np.ndarray, n: int, *, rng: np.random.Generator
    ) -> np.ndarray:
        return _lowest(probabilities.max(axis=1), n, rng)


class Margin:
    """Items with the smallest gap between their two most probable classes."""

    name = "margin"

    def select(
        self, probabilities: np.ndarray, n: int, *, rng: np.random.Generator
    ) -> np.ndarray:
        top_two = np.sort(probabilities, axis=1)[:, -2:]
        return _lowest(top_two[:, 1] - top_two[:, 0], n, rng)


class Entropy:
    """Items whose predicted class distribution has the highest entropy."""

    name = "entropy"

    def select(
        self, probabilities: np.ndarray, n: int, *, rng: np.random.Generator
    ) -> np.ndarray:
        clipped = np.clip(probabilities, 1e-12, 1.0)
        entropy = -(clipped * np.log(clipped)).sum(axis=1)
        return _lowest(-entropy, n, rng)


@STRATEGIES.register("random")
def _random(**_: Any) -> RandomSampling:
    return RandomSampling()


@STRATEGIES.register("least-confidence")
def _least_confidence(**_: Any) -> LeastConfidence:
    return LeastConfidence()


@STRATEGIES.register("margin")
def _margin(**_: Any) -> Margin:
    return Margin()


@STRATEGIES.register("entropy")
def _entropy(**_: Any) -> Entropy:
    return Entropy()
