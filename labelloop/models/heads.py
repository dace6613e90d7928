"""Trainable heads: the models that map features to class probabilities.

Every head sees the full class list at construction, so it returns one column
per class even when the training labels miss some classes.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from labelloop.registry import Registry


class Classifier(Protocol):
    """A probabilistic classifier over ``n_classes`` classes 0..K-1."""

    n_classes: int

    def fit(self, features: np.ndarray, labels: np.ndarray) -> Classifier: ...

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Return an (n, n_classes) array of probabilities."""
        ...


MODELS: Registry[Classifier] = Registry("model")


class LogisticRegressionHead:
    """Standardized features into multinomial logistic regression.

    Parameters
    ----------
    n_classes : int
        Number of classes; columns of ``predict_proba``.
    C : float, default=0.1
        Inverse L2 regularization strength.
    random_state : int, default=0
        Seed of the solver.
    """

    def __init__(
        self, n_classes: int, *, C: float = 0.1, random_state: int = 0
    ) -> None:
        self.n_classes = n_classes
        self.C = C
        self.random_state = random_state

    def fit(self, features: np.ndarray, labels: np.ndarray) -> LogisticRegressionHead:
        labels = np.asarray(labels, dtype=int)
        self.classes_ = np.unique(labels)
        if len(self.classes_) == 1:
            self.pipeline_: Pipeline | None = None
            return self
        self.pipeline_ = Pipeline(
            [
                ("scale", StandardScaler()),
                (
                    "logistic",
                    LogisticRegression(
                        C=self.C, max_iter=2000, random_state=self.random_state
                    ),
                ),
            ]
        )
        self.pipeline_.fit(features, labels)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        probabilities = np.zeros((len(features), self.n_classes))
        if self.pipeline_ is None:
            probabilities[:, self.classes_[0]] = 1.0
            return probabilities
        probabilities[:, self.classes_] = self.pipeline_.predict_proba(features)
        return probabilities


@MODELS.register("logistic-regression")
def _make_logistic(**kwargs: Any) -> LogisticRegressionHead:
    return LogisticRegressionHead(**kwargs)


def make_model(name: str, *, n_classes: int, random_state: int) -> Classifier:
    """Build the registered model ``name`` for ``n_classes`` classes."""
    return MODELS.create(name, n_classes=n_classes, random_state=random_state)
