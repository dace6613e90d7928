"""Trainable heads: the models that map features to class probabilities.

Every head sees the full class list at construction, so it returns one column
per class even when the training labels miss some classes.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
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

    def tune(self, features: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """Choose hyperparameters on ``labels`` and return them.

        The loop calls this once per round on all its training labels and
        passes the result to every cross-fitted copy, so the copies share
        one setting and the costly search runs once.
        """
        ...


#: Inverse regularization strengths that ``LogisticRegressionHead.tune`` tries.
#: On 300 to 4,000 labels of each benchmark's features the best held-out
#: log-loss fell inside this range: near 0.003 for MiniLM text embeddings and
#: EfficientNet-Lite0's final layer, near 0.1 for its mid-level layers on digits.
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)

#: At most this many labels take part in the search. The chosen strength carries
#: over to larger sets because the penalty does not grow with the set.
TUNE_SAMPLE = 1500

#: Folds of the search.
TUNE_FOLDS = 3


MODELS: Registry[Classifier] = Registry("model")


class LogisticRegressionHead:
    """Standardized features into multinomial logistic regression.

    Parameters
    ----------
    n_classes : int
        Number of classes; columns of ``predict_proba``.
    C : float, default=0.1
        Inverse L2 regularization strength; ``tune`` chooses one from
        ``C_GRID`` by cross-validated log-loss.
    random_state : int, default=0
        Seed of the solver and of the search's subsample.
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

    def tune(self, features: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        """Choose ``C`` by stratified cross-validation and return ``{"C": C}``.

        Sets ``self.C`` too. Keeps the current ``C`` when some class has fewer
        labels than there are folds.
        """
        labels = np.asarray(labels, dtype=int)
        rng = np.random.default_rng(self.random_state)
        if len(labels) > TUNE_SAMPLE:
            keep = np.sort(rng.choice(len(labels), size=TUNE_SAMPLE, replace=False))
            features, labels = features[keep], labels[keep]
        present, counts = np.unique(labels, return_counts=True)
        if len(present) < 2 or counts.min() < TUNE_FOLDS:
            return {"C": self.C}
        folds = StratifiedKFold(
            n_splits=TUNE_FOLDS, shuffle=True, random_state=self.random_state
        )
        losses = np.zeros(len(C_GRID))
        for train, test in folds.split(features, labels):
            scaler = StandardScaler().fit(features[train])
            seen = scaler.transform(features[train])
            held_out = scaler.transform(features[test])
            for position, strength in enumerate(C_GRID):
                model = LogisticRegression(
                    C=strength, max_iter=2000, random_state=self.random_state
                ).fit(seen, labels[train])
                losses[position] += log_loss(
                    labels[test],
                    model.predict_proba(held_out),
                    labels=model.classes_,
                )
        self.C = float(C_GRID[int(np.argmin(losses))])
        return {"C": self.C}

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


def tune_model(
    name: str,
    *,
    n_classes: int,
    random_state: int,
    features: np.ndarray,
    labels: np.ndarray,
) -> dict[str, Any]:
    """Return the hyperparameters the registered model ``name`` chooses on labels.

    Models without a ``tune`` method, and label sets with one class, keep their
    defaults, so the result is empty.
    """
    model = make_model(name, n_classes=n_classes, random_state=random_state)
    tune = getattr(model, "tune", None)
    if tune is None or len(np.unique(labels)) < 2:
        return {}
    return dict(tune(features, labels))


def make_model(
    name: str, *, n_classes: int, random_state: int, **params: Any
) -> Classifier:
    """Build the registered model ``name`` for ``n_classes`` classes.

    ``params`` are hyperparameters, such as those a model's ``tune`` returned.
    """
    return MODELS.create(name, n_classes=n_classes, random_state=random_state, **params)
