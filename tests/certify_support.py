"""A scored population with a known error rate above each threshold."""

from __future__ import annotations

import numpy as np


class ScoredPopulation:
    """Model confidences skewed towards 1 and whether each prediction is right.

    The error probability is ``scale * (1 - confidence)``: 1 is calibrated,
    above 1 overconfident. A large population serves as the true
    distribution that validation samples are drawn from.
    """

    def __init__(self, *, seed: int, size: int, scale: float) -> None:
        rng = np.random.default_rng(seed)
        self.confidences = 1.0 - 0.5 * rng.beta(0.6, 3.0, size=size)
        error_probability = np.clip(scale * (1.0 - self.confidences), 0.0, 1.0)
        self.correct = rng.random(size) >= error_probability
        order = np.argsort(-self.confidences)
        self._sorted_confidences = self.confidences[order]
        self._cumulative_errors = np.cumsum(~self.correct[order])

    def true_error(self, threshold: float) -> float:
        """Return the error rate of the items scored ``threshold`` or higher."""
        count = np.searchsorted(-self._sorted_confidences, -threshold, side="right")
        return self._cumulative_errors[count - 1] / count
