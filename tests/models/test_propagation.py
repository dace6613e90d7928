"""Spreading a head's probabilities over the neighbor graph of all items."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from labelloop.models import make_model
from labelloop.models.propagation import ALPHA_GRID, NeighborGraph, tune_alpha


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's 1,797 real 8 x 8 digit images and their classes."""
    data = load_digits()
    return data.data.astype(np.float64), data.target.astype(int)


@pytest.fixture(scope="module")
def digits_graph(digits: tuple[np.ndarray, np.ndarray]) -> NeighborGraph:
    """Return the neighbor graph of all 1,797 digits, built once for the module."""
    return NeighborGraph.build(digits[0])


def head_probabilities(
    features: np.ndarray, labels: np.ndarray, train: np.ndarray
) -> np.ndarray:
    model = make_model("logistic-regression", n_classes=10, random_state=0, C=0.1)
    model.fit(features[train], labels[train])
    return model.predict_proba(features)


@pytest.fixture(scope="module")
def every_twentieth_head(
    digits: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Return every twentieth digit's row and a head's probabilities trained on them."""
    features, labels = digits
    train = np.arange(0, len(labels), 20)
    return train, head_probabilities(features, labels, train)


def test_graph_excludes_each_item_itself(digits: tuple[np.ndarray, np.ndarray]) -> None:
    features, _ = digits
    graph = NeighborGraph.build(features[:300], n_neighbors=5)
    assert graph.neighbors.shape == (300, 5)
    assert not (graph.neighbors == np.arange(300)[:, None]).any()


def test_graph_rows_average_neighbors(digits: tuple[np.ndarray, np.ndarray]) -> None:
    features, _ = digits
    graph = NeighborGraph.build(features[:200], n_neighbors=4)
    np.testing.assert_allclose(graph.adjacency.sum(axis=1), 1.0)


def test_graph_of_duplicates_drops_only_self() -> None:
    features = np.repeat(np.eye(3), 4, axis=0)  # three groups of four copies
    graph = NeighborGraph.build(features, n_neighbors=3)
    for row, neighbors in enumerate(graph.neighbors):
        assert row not in neighbors
        assert set(neighbors) == set(range(4 * (row // 4), 4 * (row // 4) + 4)) - {row}


def test_graph_shrinks_neighbors_to_fit() -> None:
    graph = NeighborGraph.build(np.arange(8.0).reshape(4, 2), n_neighbors=10)
    assert graph.neighbors.shape == (4, 3)


def test_graph_needs_two_items() -> None:
    with pytest.raises(ValueError, match="2 or more items, got 1"):
        NeighborGraph.build(np.ones((1, 3)))


def test_spread_alpha_zero_is_identity(
    digits: tuple[np.ndarray, np.ndarray],
    digits_graph: NeighborGraph,
    every_twentieth_head: tuple[np.ndarray, np.ndarray],
) -> None:
    _, labels = digits
    train, probabilities = every_twentieth_head
    spread = digits_graph.spread(probabilities, train, labels[train], alpha=0.0)
    np.testing.assert_array_equal(spread, probabilities)


def test_spread_fixes_training_rows(
    digits: tuple[np.ndarray, np.ndarray],
    digits_graph: NeighborGraph,
    every_twentieth_head: tuple[np.ndarray, np.ndarray],
) -> None:
    _, labels = digits
    train, probabilities = every_twentieth_head
    spread = digits_graph.spread(probabilities, train, labels[train], alpha=0.8)
    np.testing.assert_allclose(spread.sum(axis=1), 1.0)
    np.testing.assert_array_equal(spread[train].argmax(axis=1), labels[train])
    np.testing.assert_allclose(spread[train].max(axis=1), 1.0)


def test_spread_raises_digit_accuracy(
    digits: tuple[np.ndarray, np.ndarray], digits_graph: NeighborGraph
) -> None:
    # 60 labels of 1,797 real digits: neighbors in pixel space agree on the
    # class more often than a logistic head trained on so few labels.
    features, labels = digits
    rng = np.random.default_rng(0)
    train = rng.choice(len(labels), size=60, replace=False)
    rest = np.setdiff1d(np.arange(len(labels)), train)
    graph = digits_graph
    probabilities = head_probabilities(features, labels, train)
    spread = graph.spread(probabilities, train, labels[train], alpha=0.8)
    head_accuracy = (probabilities[rest].argmax(axis=1) == labels[rest]).mean()
    spread_accuracy = (spread[rest].argmax(axis=1) == labels[rest]).mean()
    assert spread_accuracy > head_accuracy + 0.02


def test_spread_rejects_alpha_one(digits: tuple[np.ndarray, np.ndarray]) -> None:
    features, _ = digits
    graph = NeighborGraph.build(features[:50])
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\), got 1.0"):
        graph.spread(np.full((50, 10), 0.1), np.array([0]), np.array([0]), alpha=1.0)


def test_spread_rejects_wrong_row_count(digits: tuple[np.ndarray, np.ndarray]) -> None:
    features, _ = digits
    graph = NeighborGraph.build(features[:50])
    with pytest.raises(ValueError, match="49 rows but the graph has 50 items"):
        graph.spread(np.full((49, 10), 0.1), np.array([0]), np.array([0]), alpha=0.5)


def test_tune_alpha_spreads_on_digits(
    digits: tuple[np.ndarray, np.ndarray], digits_graph: NeighborGraph
) -> None:
    features, labels = digits
    rows = np.random.default_rng(1).choice(len(labels), size=90, replace=False)
    graph = digits_graph

    def fit_predict(train: np.ndarray) -> np.ndarray:
        return head_probabilities(features, labels, rows[train])

    alpha = tune_alpha(graph, fit_predict, rows, labels[rows])
    assert alpha in ALPHA_GRID
    assert alpha > 0.0


def test_tune_alpha_turns_off_on_random_graph() -> None:
    # One column decides the class, and 200 noise columns decide the
    # neighbors, so spreading can only blur the head's correct predictions.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=600)
    signal = labels[:, None] + rng.normal(scale=0.1, size=(600, 1))
    features = np.hstack([signal, rng.normal(size=(600, 200))])
    rows = rng.choice(600, size=150, replace=False)
    graph = NeighborGraph.build(features)

    def fit_predict(train: np.ndarray) -> np.ndarray:
        model = make_model("logistic-regression", n_classes=2, random_state=0, C=1.0)
        return model.fit(features[rows[train]], labels[rows[train]]).predict_proba(
            features
        )

    assert tune_alpha(graph, fit_predict, rows, labels[rows]) == 0.0


def test_tune_alpha_off_when_class_is_rare() -> None:
    graph = NeighborGraph.build(np.random.default_rng(0).normal(size=(20, 3)))
    rows = np.arange(10)
    labels = np.array([0] * 8 + [1] * 2)

    def fit_predict(train: np.ndarray) -> np.ndarray:
        raise AssertionError("no fold should train when a class has 2 labels")

    assert tune_alpha(graph, fit_predict, rows, labels) == 0.0


def test_graph_of_identical_items_builds() -> None:
    # Every item alike, as when a job's images are all one blank picture.
    graph = NeighborGraph.build(np.zeros((30, 100)), n_neighbors=10)
    assert graph.neighbors.shape == (30, 10)
    spread = graph.spread(
        np.full((30, 3), 1 / 3), np.array([0, 1]), np.array([0, 2]), alpha=0.5
    )
    np.testing.assert_allclose(spread.sum(axis=1), 1.0)
