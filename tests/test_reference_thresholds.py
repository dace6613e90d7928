"""Tests of the reference threshold rules used by the benchmarks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labelloop.reference_thresholds import MIN_POINTS, reference_plan


def plan(method: str, confidences, correct, predicted=None, n_classes=1):
    confidences = np.asarray(confidences, dtype=float)
    if predicted is None:
        predicted = np.zeros(len(confidences), dtype=int)
    return reference_plan(
        method,
        val_predicted=np.asarray(predicted),
        val_confidences=confidences,
        val_correct=np.asarray(correct, dtype=bool),
        n_classes=n_classes,
        max_error=0.1,
    )


def test_empirical_takes_lowest_passing() -> None:
    # Ten items, descending confidence; the 4th and 9th are wrong. The top 8
    # have 1 error (12.5%), the top 10 have 2 (20%), the top 7 have 1 (14%),
    # the top 3 have none: the lowest passing threshold is the 3rd item's.
    confidences = np.linspace(0.99, 0.90, 10)
    correct = np.ones(10, dtype=bool)
    correct[[3, 8]] = False

    result = plan("empirical", confidences, correct)

    assert result.thresholds == (pytest.approx(confidences[2]),)
    assert result.results["global"].n_above == 3


def test_empirical_ignores_a_failure_in_between() -> None:
    # Unlike a fixed-sequence scan, the empirical rule keeps looking past a
    # failing candidate: 1 error in the top 2 fails, 1 in the top 10 passes.
    confidences = np.linspace(0.99, 0.90, 10)
    correct = np.ones(10, dtype=bool)
    correct[1] = False

    result = plan("empirical", confidences, correct)

    assert result.results["global"].n_above == 10


def test_tbal_needs_min_points_per_class() -> None:
    n = MIN_POINTS - 1
    result = plan("tbal", np.linspace(0.99, 0.9, n), np.ones(n, dtype=bool))

    assert math.isinf(result.thresholds[0])


def test_tbal_is_class_wise() -> None:
    rng = np.random.default_rng(0)
    confidences = rng.uniform(0.5, 1.0, 200)
    predicted = np.repeat([0, 1], 100)
    correct = np.ones(200, dtype=bool)
    # Class 1 is wrong on half of its items: nothing certifies there.
    correct[100::2] = False

    result = plan("tbal", confidences, correct, predicted=predicted, n_classes=2)

    assert math.isfinite(result.thresholds[0])
    assert math.isinf(result.thresholds[1])


def test_unknown_reference_rule_rejected() -> None:
    with pytest.raises(ValueError, match="unknown reference threshold method"):
        plan("magic", [0.9], [True])
