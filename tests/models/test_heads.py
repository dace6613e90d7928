"""Tests of trainable heads and the registry that builds them by name."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.errors import RegistryError
from labelloop.models import MODELS, make_model
from labelloop.models.heads import LogisticRegressionHead
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
