"""Query strategies: which unlabeled items go to humans next.

A strategy sees the class probabilities of the pool items (and their features,
for diversity-aware strategies) and returns the positions of the items to
query. Ties are broken by a seeded random order, never by position.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from labelloop.registry import Registry


class QueryStrategy(Protocol):
    """Choose ``n`` pool positions from an (n_pool, n_classes) probability array."""

    name: str

    def select(
        self,
        probabilities: np.ndarray,
        n: int,
        *,
        rng: np.random.Generator,
        features: np.ndarray | None = None,
    ) -> np.ndarray: ...


STRATEGIES: Registry[QueryStrategy] = Registry("query strategy")

#: No predicted class may fill more than this multiple of its even share of a
#: batch while other classes have uncertain items, so that a batch is never
#: nearly all one class.
CLASS_SHARE_CAP = 2.0


def _ranked(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Return all positions by ascending score, ties in random order."""
    tie_breaker = rng.permutation(len(scores))
    return np.lexsort((tie_breaker, scores))


def _balanced_take(order: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    """Take ``n`` positions in ``order``, capping each predicted class's share.

    The cap is ``CLASS_SHARE_CAP`` times the even share among the classes
    predicted anywhere in the pool; positions skipped for the cap fill the
    batch only if nothing else is left.
    """
    n = min(n, len(order))
    if n == 0:
        return order[:0]
    active = len(np.unique(predicted))
    cap = max(1, math.ceil(CLASS_SHARE_CAP * n / active))
    counts: dict[int, int] = {}
    chosen: list[int] = []
    skipped: list[int] = []
    for position in order:
        label = int(predicted[position])
        if counts.get(label, 0) < cap:
            chosen.append(int(position))
            counts[label] = counts.get(label, 0) + 1
        else:
            skipped.append(int(position))
        if len(chosen) == n:
            break
    chosen.extend(skipped[: n - len(chosen)])
    return np.array(chosen, dtype=int)


def _most_ambiguous(order: np.ndarray, n: int, factor: float) -> np.ndarray:
    """Return the first ``factor * n`` positions of ``order`` (at least ``n``)."""
    return order[: max(n, int(math.ceil(factor * n)))]


def margins(probabilities: np.ndarray) -> np.ndarray:
    """Return the gap between each row's two largest probabilities."""
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


class RandomSampling:
    """Uniform random items: the baseline every strategy must beat."""

    name = "random"

    def select(self, probabilities, n, *, rng, features=None):  # type: ignore[no-untyped-def]
        return rng.permutation(len(probabilities))[: min(n, len(probabilities))]


class _UncertaintySampling:
    """Items with the lowest ``score``, with each predicted class's share capped."""

    name = ""

    def score(self, probabilities: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def select(
        self,
        probabilities: np.ndarray,
        n: int,
        *,
        rng: np.random.Generator,
        features: np.ndarray | None = None,
    ) -> np.ndarray:
        order = _ranked(self.score(probabilities), rng)
        return _balanced_take(order, probabilities.argmax(axis=1), n)


class LeastConfidence(_UncertaintySampling):
    """Items whose top class probability is lowest."""

    name = "least-confidence"

    def score(self, probabilities: np.ndarray) -> np.ndarray:
        return probabilities.max(axis=1)


class Margin(_UncertaintySampling):
    """Items with the smallest gap between their two most probable classes."""

    name = "margin"

    def score(self, probabilities: np.ndarray) -> np.ndarray:
        return margins(probabilities)


class Entropy(_UncertaintySampling):
    """Items whose predicted class distribution has the highest entropy."""

    name = "entropy"

    def score(self, probabilities: np.ndarray) -> np.ndarray:
        clipped = np.clip(probabilities, 1e-12, 1.0)
        return (clipped * np.log(clipped)).sum(axis=1)


class SampledMargin:
    """Items drawn uniformly among the ``factor * n`` smallest margins.

    Threshold-based auto-labeling (Vishwakarma et al., 2023) queries this way:
    the random draw keeps a batch from piling onto one narrow region.

    Parameters
    ----------
    factor : float, default=3.0
        Size of the ambiguous set the batch is drawn from, in batches.
    """

    name = "margin-sampled"

    def __init__(self, *, factor: float = 3.0) -> None:
        self.factor = factor

    def select(
        self,
        probabilities: np.ndarray,
        n: int,
        *,
        rng: np.random.Generator,
        features: np.ndarray | None = None,
    ) -> np.ndarray:
        n = min(n, len(probabilities))
        order = _ranked(margins(probabilities), rng)
        ambiguous = _most_ambiguous(order, n, self.factor)
        return rng.choice(ambiguous, size=n, replace=False)


class ClusterMargin:
    """Diverse ambiguous items: cluster the smallest margins, one item per cluster.

    The ``factor * n`` items with the smallest margins are clustered into ``n``
    groups by k-means on their features; each group gives its smallest-margin
    item. This follows cluster-margin sampling (Citovsky et al., 2021), with
    k-means in place of agglomerative clustering. Without features it falls
    back to margin order.

    Parameters
    ----------
    factor : float, default=5.0
        Size of the ambiguous set that is clustered, in batches.
    """

    name = "cluster-margin"

    def __init__(self, *, factor: float = 5.0) -> None:
        self.factor = factor

    def select(
        self,
        probabilities: np.ndarray,
        n: int,
        *,
        rng: np.random.Generator,
        features: np.ndarray | None = None,
    ) -> np.ndarray:
        from sklearn.cluster import KMeans

        n = min(n, len(probabilities))
        scores = margins(probabilities)
        order = _ranked(scores, rng)
        if features is None or n == 0 or n == len(order):
            return order[:n]
        candidates = _most_ambiguous(order, n, self.factor)
        if len(candidates) == n:
            return candidates
        kmeans = KMeans(
            n_clusters=n,
            n_init=1,
            random_state=int(rng.integers(2**31 - 1)),
        )
        clusters = kmeans.fit_predict(np.asarray(features)[candidates])
        chosen: list[int] = []
        taken: set[int] = set()
        for cluster in np.unique(clusters):
            members = candidates[clusters == cluster]
            best = members[np.argmin(scores[members])]
            chosen.append(int(best))
            taken.add(int(best))
        # k-means may leave clusters empty; fill up in margin order.
        for position in candidates:
            if len(chosen) >= n:
                break
            if int(position) not in taken:
                chosen.append(int(position))
                taken.add(int(position))
        return np.array(chosen[:n], dtype=int)


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


@STRATEGIES.register("margin-sampled")
def _margin_sampled(**kwargs: Any) -> SampledMargin:
    return SampledMargin(**kwargs)


@STRATEGIES.register("cluster-margin")
def _cluster_margin(**kwargs: Any) -> ClusterMargin:
    return ClusterMargin(**kwargs)
