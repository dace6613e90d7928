"""Dirichlet smoothing priors for worker confusion matrices and class priors.

The confusion prior is diagonal-heavy: each row has ``strength`` pseudo-answers,
a share ``accuracy`` of them on the true class and the rest spread evenly over the
other ``K-1`` classes. Its mean is the confusion matrix of a worker about whom
nothing is known yet.
"""

from __future__ import annotations

import math

import numpy as np

from labelloop.errors import ConfigError


def validate_prior_settings(
    *, prior_strength: float, prior_accuracy: float, class_prior_strength: float
) -> None:
    """Raise ConfigError unless the smoothing settings are usable.

    Parameters
    ----------
    prior_strength : float
        Pseudo-answers per confusion row, finite and at least 0.
    prior_accuracy : float
        Share of the pseudo-answers on the diagonal, strictly between 0 and 1.
    class_prior_strength : float
        Pseudo-items per class for the class prior, finite and at least 0.

    Raises
    ------
    ConfigError
        Names the invalid setting, its value and the allowed range.
    """
    if not (math.isfinite(prior_strength) and prior_strength >= 0):
        raise ConfigError(
            f"prior_strength must be a finite number >= 0, got {prior_strength!r}; "
            "use 0 for no smoothing"
        )
    if not (0 < prior_accuracy < 1):
        raise ConfigError(
            f"prior_accuracy must be strictly between 0 and 1, got "
            f"{prior_accuracy!r}; 0.7 suits workers who are mostly right"
        )
    if not (math.isfinite(class_prior_strength) and class_prior_strength >= 0):
        raise ConfigError(
            "class_prior_strength must be a finite number >= 0, got "
            f"{class_prior_strength!r}; use 0 for no smoothing"
        )


def prior_mean_confusion(n_classes: int, *, accuracy: float) -> np.ndarray:
    """Return the ``K x K`` confusion matrix with ``accuracy`` on the diagonal.

    The rest of each row is spread evenly over the other classes.
    """
    off_diagonal = (1.0 - accuracy) / (n_classes - 1)
    matrix = np.full((n_classes, n_classes), off_diagonal)
    np.fill_diagonal(matrix, accuracy)
    return matrix


def confusion_pseudo_counts(
    n_classes: int, *, strength: float, accuracy: float
) -> np.ndarray:
    """Return the ``K x K`` Dirichlet pseudo-counts added to every confusion row."""
    return strength * prior_mean_confusion(n_classes, accuracy=accuracy)


def smoothed_confusion(
    counts: np.ndarray, *, strength: float, accuracy: float
) -> np.ndarray:
    """Return row-normalized confusion matrices from soft answer counts.

    Parameters
    ----------
    counts : numpy.ndarray
        Shape ``(W, K, K)``: ``counts[w, k, l]`` is the (soft) number of items of
        true class ``k`` that worker ``w`` answered with ``l``.
    strength, accuracy : float
        Dirichlet prior, see the module docstring.

    Returns
    -------
    numpy.ndarray
        Shape ``(W, K, K)``, rows summing to 1. The posterior mean of each row
        under the prior. A row with neither counts nor prior mass, which only
        happens with ``strength=0``, gets the prior mean row.
    """
    n_classes = counts.shape[-1]
    pseudo = confusion_pseudo_counts(n_classes, strength=strength, accuracy=accuracy)
    mass = counts + pseudo
    row_totals = mass.sum(axis=-1, keepdims=True)
    prior_rows = np.broadcast_to(
        prior_mean_confusion(n_classes, accuracy=accuracy), mass.shape
    )
    safe_totals = np.where(row_totals > 0, row_totals, 1.0)
    return np.where(row_totals > 0, mass / safe_totals, prior_rows)


def smoothed_class_prior(class_mass: np.ndarray, *, strength: float) -> np.ndarray:
    """Return class shares from soft class counts plus ``strength`` per class.

    Without any mass (no items and ``strength=0``) the prior is uniform.
    """
    mass = class_mass + strength
    total = mass.sum()
    if total <= 0:
        return np.full(class_mass.shape[0], 1.0 / class_mass.shape[0])
    return mass / total
