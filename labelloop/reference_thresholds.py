"""Threshold rules of other auto-labeling systems, kept as benchmark references.

Neither rule bounds the error of the machine labels; labelloop's own rule is in
``labelloop.certify``. Both choose thresholds on the same cross-fitted
validation scores, so a benchmark compares the rules and nothing else.

``empirical``
    Ground Truth's documented rule: the lowest threshold at which the accuracy
    of the validation items above it reaches the target, one threshold for all
    classes, with no confidence term.
``tbal``
    The rule of threshold-based auto-labeling (Vishwakarma et al., NeurIPS
    2023): per predicted class, the lowest threshold with at least
    ``MIN_POINTS`` validation items above it whose empirical error plus
    ``C1`` times its standard error is at most the allowed error.
"""

from __future__ import annotations

import math

import numpy as np

from labelloop.certify import ThresholdPlan, ThresholdResult

#: TBAL's weight of the standard error and its fewest validation items.
C1 = 0.25
MIN_POINTS = 25


def _result(
    threshold: float, n_above: int, errors: int, n: int, reason: str
) -> ThresholdResult:
    return ThresholdResult(
        threshold=threshold,
        n_above=n_above,
        errors_above=errors,
        upper_bound=errors / n_above if n_above else 1.0,
        start_rank=0,
        tested=n,
        n_validation=n,
        stop_reason=reason,
    )


def _lowest_passing(
    confidences: np.ndarray,
    correct: np.ndarray,
    *,
    max_error: float,
    weight: float,
    min_points: int,
) -> ThresholdResult:
    """Scan every candidate and keep the lowest threshold that passes."""
    n = len(confidences)
    order = np.argsort(-confidences, kind="stable")
    sorted_conf = confidences[order]
    cumulative_errors = np.cumsum(~correct[order])
    best: tuple[int, int] | None = None
    for rank in range(max(1, min_points), n + 1):
        if rank < n and sorted_conf[rank] == sorted_conf[rank - 1]:
            continue
        errors = int(cumulative_errors[rank - 1])
        error = errors / rank
        spread = math.sqrt(error * (1 - error) / rank)
        if error + weight * spread <= max_error:
            best = (rank, errors)
    if best is None:
        return _result(math.inf, 0, 0, n, "no threshold met the rule")
    rank, errors = best
    return _result(float(sorted_conf[rank - 1]), rank, errors, n, "lowest passing")


def reference_plan(
    method: str,
    *,
    val_predicted: np.ndarray,
    val_confidences: np.ndarray,
    val_correct: np.ndarray,
    n_classes: int,
    max_error: float,
) -> ThresholdPlan:
    """Choose thresholds by the reference rule ``method`` (empirical or tbal)."""
    confidences = np.asarray(val_confidences, dtype=float)
    correct = np.asarray(val_correct, dtype=bool)
    if method == "empirical":
        result = _lowest_passing(
            confidences, correct, max_error=max_error, weight=0.0, min_points=1
        )
        return ThresholdPlan(
            mode="global",
            thresholds=(result.threshold,) * n_classes,
            results={"global": result},
        )
    if method == "tbal":
        thresholds = []
        results = {}
        predicted = np.asarray(val_predicted, dtype=int)
        for label in range(n_classes):
            mask = predicted == label
            result = _lowest_passing(
                confidences[mask],
                correct[mask],
                max_error=max_error,
                weight=C1,
                min_points=MIN_POINTS,
            )
            thresholds.append(result.threshold)
            results[str(label)] = result
        return ThresholdPlan(
            mode="class-wise", thresholds=tuple(thresholds), results=results
        )
    raise ValueError(f"unknown reference threshold method {method!r}")
