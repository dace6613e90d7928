"""Tests of trainable heads and the registry that builds them by name."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import log_loss

from labelloop.errors import RegistryError
from labelloop.models import MODELS, make_model
from labelloop.models.heads import C_GRID, LogisticRegressionHead
from labelloop.registry import Registry


def blobs(labels: np.ndarray, *, n_features: int = 6, seed: int = 0) -> np.ndarray:
    """Return features with one well-separated Gaussian blob per label."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(int(labels.max()) + 1, n_features))
    return centers[labels] + rng.normal(size=(len(labels), n_features))


def test_probabilities_have_class_columns() -> None:
    labels = np.repeat([0, 1, 2, 3], 30)
    features = blobs(labels)
    head = LogisticRegressionHead(4).fit(features, labels)

    probabilities = head.predict_proba(features)

    assert probabilities.shape == (120, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities >= 0).all()
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.95


def test_missing_class_gets_zero_column() -> None:
    labels = np.repeat([0, 2, 4], 20)
    features = blobs(labels, seed=1)
    head = LogisticRegressionHead(5).fit(features, labels)

    probabilities = head.predict_proba(blobs(np.arange(5), seed=2))

    assert probabilities.shape == (5, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities[:, [1, 3]] == 0).all()
    assert set(probabilities.argmax(axis=1).tolist()) <= {0, 2, 4}


def test_single_class_training_works() -> None:
    labels = np.full(15, 2)
    head = LogisticRegressionHead(3).fit(blobs(labels), labels)

    probabilities = head.predict_proba(np.zeros((4, 6)))

    assert probabilities.shape == (4, 3)
    np.testing.assert_array_equal(probabilities[:, 2], 1.0)
    np.testing.assert_array_equal(probabilities[:, [0, 1]], 0.0)


def test_same_seed_same_probabilities() -> None:
    labels = np.repeat([0, 1, 2], 25)
    features = blobs(labels, seed=3)

    first = LogisticRegressionHead(3, random_state=7).fit(features, labels)
    second = LogisticRegressionHead(3, random_state=7).fit(features, labels)

    np.testing.assert_array_equal(
        first.predict_proba(features), second.predict_proba(features)
    )


def test_make_model_builds_registered_head() -> None:
    model = make_model("logistic-regression", n_classes=3, random_state=5)

    assert isinstance(model, LogisticRegressionHead)
    assert model.n_classes == 3
    assert model.random_state == 5


def test_unknown_model_lists_registered() -> None:
    with pytest.raises(RegistryError) as caught:
        make_model("gradient-boosting", n_classes=2, random_state=0)
    message = str(caught.value)

    assert "unknown model 'gradient-boosting'" in message
    assert "registered: logistic-regression" in message


def test_duplicate_model_name_rejected() -> None:
    with pytest.raises(RegistryError, match="model 'logistic-regression' is already"):
        MODELS.register("logistic-regression")(LogisticRegressionHead)

    # The first registration is still in place.
    assert isinstance(
        make_model("logistic-regression", n_classes=2, random_state=0),
        LogisticRegressionHead,
    )


def test_registry_lists_names_sorted() -> None:
    registry: Registry[str] = Registry("colour")
    registry.register("red")(lambda: "red")
    registry.register("blue")(lambda: "blue")

    assert registry.names() == ["blue", "red"]
    assert list(registry) == ["blue", "red"]
    assert "red" in registry
    assert "green" not in registry
    assert registry.create("red") == "red"


def test_empty_registry_unknown_message() -> None:
    registry: Registry[str] = Registry("colour")

    with pytest.raises(RegistryError, match="unknown colour 'red'; registered: none"):
        registry.create("red")


def test_tune_penalizes_more_when_most_features_are_noise() -> None:
    labels = np.repeat(np.arange(3), 60)
    clean = blobs(labels, n_features=4, seed=1)
    noise = np.random.default_rng(2).normal(size=(len(labels), 400))
    noisy = np.hstack([clean * 0.3, noise])

    clean_c = LogisticRegressionHead(3).tune(clean, labels)["C"]
    noisy_c = LogisticRegressionHead(3).tune(noisy, labels)["C"]

    assert noisy_c < clean_c
    assert {clean_c, noisy_c} <= set(C_GRID)


def test_tune_keeps_c_for_tiny_class() -> None:
    labels = np.array([0] * 30 + [1] * 30 + [2] * 2)
    head = LogisticRegressionHead(3, C=0.05)

    assert head.tune(blobs(labels), labels) == {"C": 0.05}
    assert head.C == 0.05


def test_tune_is_reproducible() -> None:
    labels = np.repeat(np.arange(4), 500)
    features = blobs(labels, n_features=30, seed=3)

    first = LogisticRegressionHead(4, random_state=5).tune(features, labels)
    second = LogisticRegressionHead(4, random_state=5).tune(features, labels)

    assert first == second


def test_tuned_head_no_worse_on_held_out_digits() -> None:
    digits = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.target))
    train, test = order[:300], order[300:]
    features, labels = digits.data.astype(float), digits.target

    tuned = LogisticRegressionHead(10)
    tuned.tune(features[train], labels[train])
    tuned.fit(features[train], labels[train])
    default = LogisticRegressionHead(10).fit(features[train], labels[train])

    tuned_loss = log_loss(labels[test], tuned.predict_proba(features[test]))
    default_loss = log_loss(labels[test], default.predict_proba(features[test]))
    assert tuned_loss <= default_loss + 1e-9


def test_make_model_passes_tuned_params() -> None:
    model = make_model("logistic-regression", n_classes=3, random_state=0, C=0.003)

    assert model.C == 0.003
