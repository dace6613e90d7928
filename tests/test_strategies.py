"""Tests of query strategies: one conformance suite, then each strategy's order."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy

from labelloop.errors import RegistryError
from labelloop.strategies import STRATEGIES, QueryStrategy


def make_strategy(name: str) -> QueryStrategy:
    return STRATEGIES.create(name)


def random_probabilities(n_items: int, n_classes: int, *, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(n_classes), size=n_items)


# Three classes where each uncertainty measure ranks the items differently.
DISAGREEING = np.array(
    [
        [0.50, 0.50, 0.00],  # smallest margin
        [0.40, 0.30, 0.30],  # highest entropy
        [0.38, 0.37, 0.25],  # lowest top probability
        [0.90, 0.05, 0.05],  # confident
    ]
)


def test_registry_names_strategies() -> None:
    assert set(STRATEGIES.names()) == {
        "random",
        "least-confidence",
        "margin",
        "entropy",
        "margin-sampled",
        "cluster-margin",
    }


def test_unknown_strategy_lists_registered() -> None:
    with pytest.raises(
        RegistryError, match="unknown query strategy 'coreset'"
    ) as caught:
        STRATEGIES.create("coreset")

    assert (
        "cluster-margin, entropy, least-confidence, margin, margin-sampled, random"
        in str(caught.value)
    )


@pytest.mark.parametrize("name", STRATEGIES.names())
class TestStrategyConformance:
    def test_name_matches_registry(self, name: str) -> None:
        assert make_strategy(name).name == name

    def test_returns_distinct_valid_positions(self, name: str) -> None:
        probabilities = random_probabilities(50, 4, seed=1)
        chosen = make_strategy(name).select(
            probabilities, 12, rng=np.random.default_rng(0)
        )

        assert chosen.shape == (12,)
        assert np.issubdtype(chosen.dtype, np.integer)
        assert len(set(chosen.tolist())) == 12
        assert chosen.min() >= 0
        assert chosen.max() < 50

    def test_n_above_pool_returns_all(self, name: str) -> None:
        probabilities = random_probabilities(7, 3, seed=2)
        chosen = make_strategy(name).select(
            probabilities, 20, rng=np.random.default_rng(0)
        )

        assert sorted(chosen.tolist()) == list(range(7))

    def test_zero_requested_returns_empty(self, name: str) -> None:
        probabilities = random_probabilities(7, 3, seed=2)
        chosen = make_strategy(name).select(
            probabilities, 0, rng=np.random.default_rng(0)
        )

        assert len(chosen) == 0

    def test_empty_pool_returns_empty(self, name: str) -> None:
        chosen = make_strategy(name).select(
            np.zeros((0, 3)), 5, rng=np.random.default_rng(0)
        )

        assert len(chosen) == 0

    def test_same_seed_same_selection(self, name: str) -> None:
        # Rounded probabilities give ties, which the seed breaks.
        probabilities = np.round(random_probabilities(200, 3, seed=3), 1)
        strategy = make_strategy(name)

        first = strategy.select(probabilities, 30, rng=np.random.default_rng(42))
        second = strategy.select(probabilities, 30, rng=np.random.default_rng(42))

        np.testing.assert_array_equal(first, second)

    def test_different_seeds_differ_on_ties(self, name: str) -> None:
        probabilities = np.full((40, 4), 0.25)
        strategy = make_strategy(name)

        selections = {
            tuple(strategy.select(probabilities, 5, rng=np.random.default_rng(seed)))
            for seed in range(10)
        }

        assert len(selections) > 1

    def test_ties_not_broken_by_position(self, name: str) -> None:
        n_items, n, n_seeds = 10, 3, 300
        probabilities = np.full((n_items, 2), 0.5)
        strategy = make_strategy(name)
        counts = np.zeros(n_items, dtype=int)
        first_positions = 0

        for seed in range(n_seeds):
            chosen = strategy.select(probabilities, n, rng=np.random.default_rng(seed))
            counts[chosen] += 1
            first_positions += sorted(chosen.tolist()) == list(range(n))

        # Each position is expected n * n_seeds / n_items = 90 times.
        assert counts.min() >= 55
        assert counts.max() <= 125
        assert first_positions < 10


def test_margin_picks_smallest_gap() -> None:
    chosen = make_strategy("margin").select(
        DISAGREEING, 4, rng=np.random.default_rng(0)
    )

    assert chosen.tolist() == [0, 2, 1, 3]


def test_entropy_picks_highest_entropy() -> None:
    chosen = make_strategy("entropy").select(
        DISAGREEING, 4, rng=np.random.default_rng(0)
    )

    assert chosen.tolist() == [1, 2, 0, 3]


def test_least_confidence_picks_lowest_max() -> None:
    chosen = make_strategy("least-confidence").select(
        DISAGREEING, 4, rng=np.random.default_rng(0)
    )

    assert chosen.tolist() == [2, 1, 0, 3]


@pytest.mark.parametrize("seed", range(3))
def test_strategies_match_reference_scores(seed: int) -> None:
    probabilities = random_probabilities(300, 5, seed=seed)
    rng = np.random.default_rng(seed)
    sorted_probabilities = np.sort(probabilities, axis=1)
    margins = sorted_probabilities[:, -1] - sorted_probabilities[:, -2]
    expected = {
        "margin": np.argsort(margins)[:25],
        "entropy": np.argsort(-scipy_entropy(probabilities, axis=1))[:25],
        "least-confidence": np.argsort(probabilities.max(axis=1))[:25],
    }

    for name, positions in expected.items():
        chosen = make_strategy(name).select(probabilities, 25, rng=rng)
        assert set(chosen.tolist()) == set(positions.tolist()), name


def test_random_covers_pool_uniformly() -> None:
    probabilities = random_probabilities(10, 3, seed=4)
    strategy = make_strategy("random")
    counts = np.zeros(10, dtype=int)

    for seed in range(300):
        counts[strategy.select(probabilities, 3, rng=np.random.default_rng(seed))] += 1

    assert counts.min() >= 55
    assert counts.max() <= 125


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_accepts_features(name: str) -> None:
    rng = np.random.default_rng(4)
    probabilities = random_probabilities(60, 3, seed=4)
    features = rng.normal(size=(60, 5))

    chosen = make_strategy(name).select(
        probabilities, 10, rng=np.random.default_rng(0), features=features
    )
    again = make_strategy(name).select(
        probabilities, 10, rng=np.random.default_rng(0), features=features
    )

    assert len(set(chosen.tolist())) == 10
    assert chosen.tolist() == again.tolist()


@pytest.mark.parametrize("name", ["least-confidence", "margin", "entropy"])
def test_batch_not_one_class(name: str) -> None:
    # 300 items predicted as class 0 are all more ambiguous than the 30
    # predicted as classes 1 and 2, which are still uncertain.
    rng = np.random.default_rng(5)
    crowded = np.column_stack(
        [rng.uniform(0.34, 0.36, 300), np.full(300, 0.33), np.full(300, 0.31)]
    )
    others = np.vstack(
        [np.tile([0.2, 0.45, 0.35], (15, 1)), np.tile([0.2, 0.35, 0.45], (15, 1))]
    )
    probabilities = np.vstack([crowded, others])
    probabilities /= probabilities.sum(axis=1, keepdims=True)

    chosen = make_strategy(name).select(probabilities, 30, rng=rng)
    predicted = probabilities[chosen].argmax(axis=1)

    assert np.mean(predicted == 0) <= 0.7
    assert len(set(chosen.tolist())) == 30


def test_cluster_margin_spreads_batch() -> None:
    rng = np.random.default_rng(6)
    # Two tight groups of ambiguous items, the first a little more ambiguous;
    # plain margin takes only the first group, clustering takes both.
    features = np.vstack(
        [
            rng.normal(0.0, 0.1, (10, 2)),
            rng.normal(10.0, 0.1, (10, 2)),
            rng.normal(-10.0, 0.1, (80, 2)),
        ]
    )
    probabilities = np.vstack(
        [
            np.tile([0.50, 0.50], (10, 1)),
            np.tile([0.52, 0.48], (10, 1)),
            np.tile([0.95, 0.05], (80, 1)),
        ]
    )

    chosen = make_strategy("cluster-margin").select(
        probabilities, 4, rng=np.random.default_rng(0), features=features
    )
    by_margin = make_strategy("margin").select(
        probabilities, 4, rng=np.random.default_rng(0)
    )

    assert all(position < 10 for position in by_margin)
    assert any(position < 10 for position in chosen)
    assert any(10 <= position < 20 for position in chosen)
    assert all(position < 20 for position in chosen)
