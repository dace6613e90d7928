"""Tests of certified thresholds: exact bounds, the scan, plans and coverage."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from labelloop.certify import (
    CLASS_WISE_FACTOR,
    MIN_TEST_SHARE,
    ThresholdPlan,
    certify_threshold,
    clopper_pearson_upper,
    confidences_predict_pass,
    min_items_to_certify,
    plan_thresholds,
    predicted_start,
    round_delta,
    scan_delta,
)

from certify_support import ScoredPopulation

BOUND_CASES = [
    (0, 1, 0.05),
    (0, 59, 0.05),
    (1, 59, 0.05),
    (3, 100, 0.05),
    (0, 10, 0.001),
    (7, 20, 0.2),
    (12, 1000, 0.025),
    (499, 1000, 0.01),
    (99, 100, 0.05),
    (10, 10, 0.1),
]


@pytest.mark.parametrize(("errors", "n", "delta"), BOUND_CASES)
def test_upper_bound_matches_scipy(errors: int, n: int, delta: float) -> None:
    expected = (
        binomtest(errors, n, alternative="less")
        .proportion_ci(confidence_level=1 - delta, method="exact")
        .high
    )

    assert clopper_pearson_upper(errors, n, delta) == pytest.approx(
        expected, rel=1e-9, abs=1e-12
    )


def test_upper_bound_without_trials_is_one() -> None:
    assert clopper_pearson_upper(0, 0, 0.05) == 1.0


def test_upper_bound_without_errors_closed_form() -> None:
    for n in (1, 10, 59, 300):
        assert clopper_pearson_upper(0, n, 0.05) == pytest.approx(1 - 0.05 ** (1 / n))


def test_min_items_five_percent() -> None:
    assert min_items_to_certify(0.05, 0.05) == 59


def test_min_items_is_smallest_passing() -> None:
    for max_error, delta in [(0.05, 0.05), (0.02, 0.01), (0.1, 0.0125), (0.01, 0.1)]:
        n = min_items_to_certify(max_error, delta)

        assert clopper_pearson_upper(0, n, delta) <= max_error
        assert clopper_pearson_upper(0, n - 1, delta) > max_error


def test_round_delta_sums_below_delta() -> None:
    delta = 0.05
    shares = [round_delta(delta, number) for number in range(1, 1001)]

    assert sum(shares) < delta
    assert sum(shares) > 0.99 * delta
    assert all(later < earlier for earlier, later in pairwise(shares))
    assert all(share > 0 for share in shares)


@pytest.mark.parametrize("first", [0.0, round_delta(0.05, 1)])
@pytest.mark.parametrize("pass_at", [None, 3, 20])
def test_scan_shares_never_exceed_delta(first: float, pass_at: int | None) -> None:
    delta, n_items = 0.05, 7600
    rng = np.random.default_rng(0)
    sizes = np.cumsum(rng.integers(0, 400, size=40))
    earlier: list[tuple[float, bool]] = [(first, False)] if first else []
    for k, n in enumerate(sizes):
        share = scan_delta(
            delta, earlier, n_validation=int(n), n_items=n_items, first=first
        )
        assert share >= 0.0
        earlier.append((share, k == pass_at))

    spent = sum(share for share, _ in earlier)
    assert spent <= delta
    if pass_at is None:
        # Before a pass, the total spent follows t^2 / (1 + t^2), less a share
        # too small to run a scan.
        t2 = (sizes[-1] / 1140) ** 2
        allowed = first + (delta - first) * t2 / (1 + t2)
        assert allowed - MIN_TEST_SHARE * delta < spent <= allowed + 1e-12


def test_scan_shares_grow_with_the_sample() -> None:
    at_quarter = scan_delta(0.05, [], n_validation=285, n_items=7600)
    at_full = scan_delta(0.05, [], n_validation=1140, n_items=7600)

    assert at_quarter == pytest.approx(0.05 / 17)
    assert at_full == pytest.approx(0.025)
    # A failed scan spends only its own share, and the next gets the growth since.
    after_fail = scan_delta(
        0.05, [(at_quarter, False)], n_validation=1140, n_items=7600
    )
    assert after_fail == pytest.approx(at_full - at_quarter)
    # A share under MIN_TEST_SHARE of the budget runs no scan before a pass ...
    small = 0.2 * 1140
    assert scan_delta(0.05, [], n_validation=small, n_items=7600) == 0.0
    # ... but after a pass any share runs.
    after_pass = scan_delta(0.05, [(0.0499, True)], n_validation=small, n_items=7600)
    assert 0.0 < after_pass < MIN_TEST_SHARE * 0.05


def test_scans_after_a_pass_split_what_is_left() -> None:
    earlier = [(0.01, False), (0.02, True)]
    left = 0.05 - 0.03

    assert scan_delta(0.05, earlier, n_validation=9000, n_items=7600) == (
        pytest.approx(left * 6 / math.pi**2)
    )
    earlier.append((left * 6 / math.pi**2, False))
    assert scan_delta(0.05, earlier, n_validation=9000, n_items=7600) == (
        pytest.approx(left * 6 / (4 * math.pi**2))
    )


def test_last_scan_takes_the_rest() -> None:
    earlier = [(0.01, False), (0.02, True), (0.012, False)]

    last = scan_delta(0.05, earlier, n_validation=9000, n_items=7600, last=True)

    assert last == pytest.approx(0.05 - 0.042)
    # Before a pass the spending schedule holds, last or not.
    before = [(0.01, False)]
    assert scan_delta(
        0.05, before, n_validation=600, n_items=7600, last=True
    ) == scan_delta(0.05, before, n_validation=600, n_items=7600)


def test_fewer_than_min_items_uncertified() -> None:
    confidences = np.full(58, 0.999)
    result = certify_threshold(
        confidences, np.ones(58, dtype=bool), max_error=0.05, delta=0.05
    )

    assert not result.certified
    assert result.threshold == math.inf
    assert result.n_above == 0
    assert result.tested == 0
    assert result.n_validation == 58
    assert "58 validation items" in result.stop_reason
    assert "59 needed" in result.stop_reason


def test_exactly_min_items_certified() -> None:
    confidences = np.linspace(0.999, 0.99, 59)
    result = certify_threshold(
        confidences, np.ones(59, dtype=bool), max_error=0.05, delta=0.05
    )

    assert result.certified
    assert result.n_above == 59
    assert result.upper_bound == pytest.approx(1 - 0.05 ** (1 / 59))


@pytest.mark.parametrize("n", [59, 150, 200, 301, 1000, 1003])
def test_all_correct_certifies_everything(n: int) -> None:
    rng = np.random.default_rng(n)
    confidences = rng.uniform(0.6, 1.0, size=n)
    result = certify_threshold(
        confidences, np.ones(n, dtype=bool), max_error=0.05, delta=0.05
    )

    assert result.certified
    assert result.threshold == confidences.min()
    assert result.n_above == n
    assert result.errors_above == 0
    assert result.stop_reason == "every candidate threshold was certified"


def _two_level_confidences() -> np.ndarray:
    """Return 59 confident items then 91 unconfident ones, all distinct.

    The unconfident tail keeps the predicted start at the minimum rank 59, and
    with 150 items the scan steps one rank at a time.
    """
    return np.concatenate(
        [np.linspace(0.99999, 0.9999, 59), np.linspace(0.55, 0.5, 91)]
    )


def test_scan_stops_at_first_failure() -> None:
    confidences = _two_level_confidences()
    correct = np.ones(150, dtype=bool)
    correct[79] = False  # the 80th most confident item
    # One error fails among the top 80 but would pass among all 150.
    assert clopper_pearson_upper(1, 80, 0.05) > 0.05
    assert clopper_pearson_upper(1, 150, 0.05) < 0.05

    result = certify_threshold(confidences, correct, max_error=0.05, delta=0.05)

    assert result.start_rank == 59
    assert result.certified
    assert result.n_above == 79
    assert result.errors_above == 0
    assert result.threshold == confidences[78]
    assert result.tested == 80 - 59 + 1
    assert "1 errors among the top 80" in result.stop_reason


def test_first_candidate_failure_certifies_nothing() -> None:
    confidences = _two_level_confidences()
    correct = np.ones(150, dtype=bool)
    correct[10] = False
    assert clopper_pearson_upper(1, 59, 0.05) > 0.05

    result = certify_threshold(confidences, correct, max_error=0.05, delta=0.05)

    assert not result.certified
    assert result.tested == 1
    assert result.upper_bound == 1.0


def test_scan_ignores_input_order() -> None:
    confidences = _two_level_confidences()
    correct = np.ones(150, dtype=bool)
    correct[79] = False
    shuffle = np.random.default_rng(3).permutation(150)

    in_order = certify_threshold(confidences, correct, max_error=0.05, delta=0.05)
    shuffled = certify_threshold(
        confidences[shuffle], correct[shuffle], max_error=0.05, delta=0.05
    )

    assert shuffled == in_order


def test_tied_confidences_counted_together() -> None:
    confidences = _two_level_confidences()
    confidences[59:89] = 0.6  # ranks 60..89 share one confidence
    correct = np.ones(150, dtype=bool)
    correct[89] = False  # the first item below the tie

    result = certify_threshold(confidences, correct, max_error=0.05, delta=0.05)

    assert result.threshold == 0.6
    assert result.n_above == 89
    assert result.n_above == int((confidences >= result.threshold).sum())


def test_error_inside_tie_not_split() -> None:
    confidences = _two_level_confidences()
    confidences[59:89] = 0.6
    correct = np.ones(150, dtype=bool)
    correct[70] = False  # inside the tie
    assert clopper_pearson_upper(1, 89, 0.05) > 0.05
    assert clopper_pearson_upper(1, 71, 0.05) > 0.05

    result = certify_threshold(confidences, correct, max_error=0.05, delta=0.05)

    assert result.n_above == 59
    assert result.threshold == confidences[58]
    assert result.tested == 2


@pytest.mark.parametrize("seed", range(6))
def test_result_counts_match_threshold(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(100, 2000))
    # Two decimals give many ties.
    confidences = np.round(rng.uniform(0.5, 1.0, size=n), 2)
    correct = rng.random(n) < confidences**0.3
    max_error, delta = 0.08, 0.05

    result = certify_threshold(confidences, correct, max_error=max_error, delta=delta)

    if not result.certified:
        assert result.n_above == 0
        return
    above = confidences >= result.threshold
    assert result.n_above == int(above.sum())
    assert result.errors_above == int((~correct[above]).sum())
    assert result.upper_bound == pytest.approx(
        clopper_pearson_upper(result.errors_above, result.n_above, delta)
    )
    assert result.upper_bound <= max_error


@pytest.mark.parametrize("scale", [1.0, 1.25])
def test_certified_error_holds_with_probability(scale: float) -> None:
    max_error, delta = 0.05, 0.1
    n_runs, n_validation = 800, 1000
    population = ScoredPopulation(seed=11, size=200_000, scale=scale)
    confidences, correct = population.confidences, population.correct
    true_error = population.true_error

    rng = np.random.default_rng(12)
    violations = certified = naive_violations = 0
    for _ in range(n_runs):
        sample = rng.integers(0, len(confidences), size=n_validation)
        result = certify_threshold(
            confidences[sample], correct[sample], max_error=max_error, delta=delta
        )
        if result.certified:
            certified += 1
            violations += true_error(result.threshold) > max_error

        # The uncertified rule: lowest threshold whose sample error is small enough.
        sample_order = np.argsort(-confidences[sample])
        running = np.cumsum(~correct[sample][sample_order]) / np.arange(
            1, n_validation + 1
        )
        deepest = np.flatnonzero(running <= max_error)[-1]
        naive_threshold = confidences[sample][sample_order][deepest]
        naive_violations += true_error(naive_threshold) > max_error

    # Violations beyond what a rate of delta gives with probability 0.001 fail.
    allowed = binom.ppf(0.999, n_runs, delta)
    assert violations <= allowed
    # The population is hard enough that the test could fail ...
    assert naive_violations > allowed
    # ... and certification is not trivially avoided.
    assert certified >= 0.3 * n_runs


def test_plan_global_mode() -> None:
    rng = np.random.default_rng(5)
    predicted = rng.integers(0, 3, size=600)
    confidences = rng.uniform(0.7, 1.0, size=600)
    correct = rng.random(600) < confidences
    pool_predicted = rng.integers(0, 3, size=400)
    pool_confidences = rng.uniform(0.5, 1.0, size=400)

    plan = plan_thresholds(
        val_predicted=predicted,
        val_confidences=confidences,
        val_correct=correct,
        pool_predicted=pool_predicted,
        pool_confidences=pool_confidences,
        n_classes=3,
        max_error=0.1,
        delta=0.05,
        mode="global",
    )
    expected = certify_threshold(confidences, correct, max_error=0.1, delta=0.05)

    assert plan.mode == "global"
    assert set(plan.results) == {"global"}
    assert plan.results["global"] == expected
    assert plan.thresholds == (expected.threshold,) * 3


def _class_split_validation(
    per_class: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return validation data where class 0 is always right and class 1 often wrong."""
    rng = np.random.default_rng(seed)
    predicted = np.repeat([0, 1], per_class)
    confidences = rng.uniform(0.8, 1.0, size=2 * per_class)
    correct = np.ones(2 * per_class, dtype=bool)
    correct[per_class:] = rng.random(per_class) < 0.7
    return predicted, confidences, correct


def test_plan_class_wise_mode() -> None:
    predicted, confidences, correct = _class_split_validation(200, seed=6)
    pool_predicted = np.array([0, 0, 1, 1])
    pool_confidences = np.array([0.81, 0.99, 0.99, 0.85])

    plan = plan_thresholds(
        val_predicted=predicted,
        val_confidences=confidences,
        val_correct=correct,
        pool_predicted=pool_predicted,
        pool_confidences=pool_confidences,
        n_classes=2,
        max_error=0.05,
        delta=0.05,
        mode="class-wise",
    )

    assert plan.mode == "class-wise"
    assert set(plan.results) == {"0", "1"}
    for label in (0, 1):
        mask = predicted == label
        expected = certify_threshold(
            confidences[mask], correct[mask], max_error=0.05, delta=0.025
        )
        assert plan.results[str(label)] == expected
        assert plan.thresholds[label] == expected.threshold
    assert plan.thresholds[0] == confidences[:200].min()
    assert plan.thresholds[1] == math.inf
    assert plan.covers(pool_predicted, pool_confidences).tolist() == [
        True,
        True,
        False,
        False,
    ]


def test_plan_auto_small_classes_global() -> None:
    # CLASS_WISE_FACTOR * min_items_to_certify(0.05, 0.05 / 4) = 860 per class.
    assert CLASS_WISE_FACTOR * min_items_to_certify(0.05, 0.05 / 4) == 860
    predicted, confidences, correct = _class_split_validation(859, seed=7)

    plan = plan_thresholds(
        val_predicted=predicted,
        val_confidences=confidences,
        val_correct=correct,
        pool_predicted=predicted,
        pool_confidences=confidences,
        n_classes=2,
        max_error=0.05,
        delta=0.05,
        mode="auto",
    )
    expected = certify_threshold(confidences, correct, max_error=0.05, delta=0.05)

    assert plan.mode == "global"
    assert plan.results["global"] == expected


def test_plan_auto_picks_larger_coverage() -> None:
    predicted, confidences, correct = _class_split_validation(900, seed=8)
    pool_predicted = np.random.default_rng(9).integers(0, 2, size=1000)
    pool_confidences = np.random.default_rng(10).uniform(0.8, 1.0, size=1000)
    arguments = dict(
        val_predicted=predicted,
        val_confidences=confidences,
        val_correct=correct,
        pool_predicted=pool_predicted,
        pool_confidences=pool_confidences,
        n_classes=2,
        max_error=0.05,
    )

    plan = plan_thresholds(**arguments, delta=0.05, mode="auto")
    # In auto mode each option is certified with half of delta.
    global_plan = plan_thresholds(**arguments, delta=0.025, mode="global")
    class_plan = plan_thresholds(**arguments, delta=0.025, mode="class-wise")
    global_covered = global_plan.covers(pool_predicted, pool_confidences).sum()
    class_covered = class_plan.covers(pool_predicted, pool_confidences).sum()

    assert class_covered > global_covered
    assert plan.mode == "class-wise"
    assert plan.thresholds == class_plan.thresholds
    assert plan.results == class_plan.results


def test_plan_rejects_unknown_mode() -> None:
    empty = np.zeros(0)
    with pytest.raises(ValueError, match="'best'"):
        plan_thresholds(
            val_predicted=empty,
            val_confidences=empty,
            val_correct=empty,
            pool_predicted=empty,
            pool_confidences=empty,
            n_classes=2,
            max_error=0.05,
            delta=0.05,
            mode="best",
        )


def test_covers_uses_class_threshold() -> None:
    plan = ThresholdPlan(mode="class-wise", thresholds=(0.9, math.inf, 0.5))
    predicted = np.array([0, 0, 0, 1, 2, 2])
    confidences = np.array([0.95, 0.9, 0.85, 1.0, 0.5, 0.49])

    covered = plan.covers(predicted, confidences)

    assert covered.tolist() == [True, True, False, False, True, False]


def test_covers_nothing_when_uncertified() -> None:
    plan = ThresholdPlan(mode="global", thresholds=(math.inf, math.inf))

    assert not plan.covers(np.array([0, 1]), np.array([1.0, 1.0])).any()


def test_predicted_start_trusts_confident_calibrated_scores() -> None:
    # 300 items at 0.999 expect 0.3 errors: the bound passes at every depth.
    confidences = np.full(300, 0.999)

    start = predicted_start(confidences, max_error=0.05, delta=0.05, min_rank=59)

    assert start == 300


def test_predicted_start_stops_where_expected_errors_grow() -> None:
    # 200 confident items, then 100 that the model itself expects half wrong.
    confidences = np.concatenate([np.full(200, 0.999), np.full(100, 0.5)])

    start = predicted_start(confidences, max_error=0.05, delta=0.05, min_rank=59)

    assert start is not None
    assert 200 <= start < 220


def test_predicted_start_none_when_nothing_passes() -> None:
    confidences = np.full(300, 0.7)

    start = predicted_start(confidences, max_error=0.05, delta=0.05, min_rank=59)
    result = certify_threshold(
        confidences, np.ones(300, dtype=bool), max_error=0.05, delta=0.05
    )

    assert start is None
    # Without a start of its own, the scan begins at the fewest items that
    # can certify.
    assert result.start_rank == 59


def test_confidences_predict_pass_any_order() -> None:
    confident = np.random.default_rng(3).permutation(
        np.concatenate([np.full(250, 0.999), np.full(50, 0.6)])
    )

    assert confidences_predict_pass(confident, max_error=0.05, delta=0.05)
    assert not confidences_predict_pass(np.full(300, 0.7), max_error=0.05, delta=0.05)
