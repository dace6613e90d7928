"""Tests of the pilot sample that chooses where the threshold scan starts."""

from __future__ import annotations

import numpy as np
from scipy.stats import binom

from labelloop.certify import ThresholdResult, certify_threshold

from certify_support import ScoredPopulation


def test_pilot_rescues_overconfident_model() -> None:
    # Errors are four times what the confidences claim: a start predicted from
    # the confidences lies too deep and fails at once, a pilot start does not.
    population = ScoredPopulation(seed=3, size=2000, scale=4.0)
    confidences, correct = population.confidences, population.correct
    pilot = np.random.default_rng(4).random(2000) < 0.25

    without = certify_threshold(confidences, correct, max_error=0.05, delta=0.05)
    with_pilot = certify_threshold(
        confidences, correct, max_error=0.05, delta=0.05, pilot=pilot
    )

    assert not without.certified
    assert with_pilot.certified
    assert with_pilot.upper_bound <= 0.05


def test_pilot_items_do_not_certify() -> None:
    confidences = np.linspace(0.999, 0.5, 400)
    correct = np.ones(400, dtype=bool)
    pilot = np.zeros(400, dtype=bool)
    pilot[::4] = True

    result = certify_threshold(
        confidences, correct, max_error=0.05, delta=0.05, pilot=pilot
    )

    assert result.n_validation == 300
    assert result.n_above == 300


def test_pilot_certification_holds_with_probability() -> None:
    max_error, delta = 0.05, 0.1
    n_runs, n_validation = 400, 1000
    population = ScoredPopulation(seed=11, size=200_000, scale=2.0)
    confidences, correct = population.confidences, population.correct
    true_error = population.true_error

    rng = np.random.default_rng(12)
    violations = certified = 0
    for _ in range(n_runs):
        sample = rng.integers(0, len(confidences), size=n_validation)
        pilot = rng.random(n_validation) < 0.25
        result = certify_threshold(
            confidences[sample],
            correct[sample],
            max_error=max_error,
            delta=delta,
            pilot=pilot,
        )
        if result.certified:
            certified += 1
            violations += true_error(result.threshold) > max_error

    assert violations <= binom.ppf(0.999, n_runs, delta)
    assert certified >= 0.3 * n_runs


def test_pilot_predicting_failure_skips_the_test() -> None:
    # One item in ten is wrong at every confidence, so no threshold can reach
    # 5%. The pilot predicts this, and the scan does not run or spend budget.
    rng = np.random.default_rng(5)
    confidences = rng.uniform(0.5, 1.0, size=1200)
    correct = rng.random(1200) >= 0.10
    pilot = rng.random(1200) < 0.25

    result = certify_threshold(
        confidences, correct, max_error=0.05, delta=0.05, pilot=pilot
    )

    assert not result.certified
    assert result.tested == 0
    assert result.stop_reason.startswith("not tested")


def _certify_two_bands(
    rng: np.random.Generator,
    *,
    size: int,
    lowest: float,
    cut: float,
    upper_error: float,
    delta: float,
) -> ThresholdResult:
    """Certify a sample that is ``upper_error`` wrong above ``cut`` and 30% below.

    Confidences are uniform between ``lowest`` and 1, and a random quarter of
    the items is the pilot.
    """
    confidences = rng.uniform(lowest, 1.0, size=size)
    error_rate = np.where(confidences > cut, upper_error, 0.3)
    correct = rng.random(size) >= error_rate
    pilot = rng.random(size) < 0.25
    return certify_threshold(
        confidences, correct, max_error=0.05, delta=delta, pilot=pilot
    )


def test_pilot_start_covers_more_than_top_items() -> None:
    # Items above 0.75 confidence are 2% wrong, the rest 30%: a scan that
    # starts at the few most confident items fails on their first error, a
    # pilot start lies deep enough for the bound to reach 5%.
    rng = np.random.default_rng(6)
    coverages = []
    for _ in range(12):
        result = _certify_two_bands(
            rng, size=3000, lowest=0.5, cut=0.75, upper_error=0.02, delta=0.03
        )
        coverages.append(result.n_above / result.n_validation)

    assert sum(coverage > 0 for coverage in coverages) >= 10
    assert np.median(coverages) >= 0.4


def test_pilot_skips_band_near_target() -> None:
    # Items above 0.8 confidence are 4.5% wrong, too close to the 5% target
    # for 336 validation items to prove. Among about 84 pilot items, the best
    # of many starts often looks clean by chance, and a test from there fails
    # and spends its budget. Most samples must run no test.
    rng = np.random.default_rng(7)
    tested = certified = 0
    for _ in range(300):
        result = _certify_two_bands(
            rng, size=336, lowest=0.6, cut=0.8, upper_error=0.045, delta=0.0304
        )
        tested += result.tested > 0
        certified += result.certified

    assert certified <= 3
    assert tested <= 0.1 * 300
