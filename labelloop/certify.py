"""Certified confidence thresholds for machine labels.

Assumptions: the validation items are a uniform random sample of the items that
may be machine-labeled, their scores come from a model that did not train on
them, and their human labels are taken as the truth.

A threshold ``t`` is certified when an exact (Clopper-Pearson) upper confidence
bound on the error rate of the validation items scoring at or above ``t`` is at
most ``max_error``. Candidate thresholds are tested in a fixed order, from a
start chosen without looking at labels towards lower confidence, and the scan
stops at the first failure. Fixed-sequence testing needs no multiple-testing
correction within a sequence; a few sequences from different starts split
``delta`` between them. The chance that any accepted threshold has a true error
above ``max_error`` is at most ``delta``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import beta, betabinom, binom


def clopper_pearson_upper(errors: int, n: int, delta: float) -> float:
    """Return the exact one-sided ``1 - delta`` upper bound on an error rate.

    Parameters
    ----------
    errors : int
        Errors observed among ``n`` trials.
    n : int
        Number of trials; 0 gives the trivial bound 1.
    delta : float
        Allowed probability that the true rate exceeds the bound.
    """
    if n == 0 or errors >= n:
        return 1.0
    return float(beta.ppf(1.0 - delta, errors + 1, n - errors))


def min_items_to_certify(max_error: float, delta: float) -> int:
    """Return the fewest error-free items whose bound reaches ``max_error``.

    With no error among ``n`` items the bound is ``1 - delta ** (1 / n)``, so
    ``n`` must be at least ``log(delta) / log(1 - max_error)``: 59 items for a
    5% error at 95% confidence.
    """
    return math.ceil(math.log(delta) / math.log(1.0 - max_error))


def items_to_certify_at(max_error: float, delta: float, *, error_rate: float) -> int:
    """Return the fewest items whose bound reaches ``max_error`` at an error rate.

    With ``n`` items of which ``round(n * error_rate)`` are wrong, the
    Clopper-Pearson bound falls as ``n`` grows; this is the first ``n`` where
    it is at most ``max_error``. At a 5% target, 95% confidence and half the
    allowed error rate, about 250 items.
    """
    if not 0 <= error_rate < max_error:
        raise ValueError(
            f"error_rate must be in [0, max_error), got {error_rate} with "
            f"max_error {max_error}"
        )
    n = min_items_to_certify(max_error, delta)
    while clopper_pearson_upper(round(n * error_rate), n, delta) > max_error:
        n += 1
    return n


def round_delta(delta: float, test_number: int) -> float:
    """Return ``delta * 6 / (pi^2 j^2)`` for the ``j``-th test of a sequence.

    The shares sum to ``delta`` over any number of tests. A job's first scan
    gets the share of ``j = 1`` when its model's confidences predict a pass;
    ``scan_delta`` gives the shares of the others.
    """
    return delta * 6.0 / (math.pi**2 * test_number**2)


#: Before a job's first passing test, a scan on ``n`` validation items may
#: bring the failure probability spent up to ``t^2 / (1 + t^2)`` of the
#: budget, with ``t`` the ratio of ``n`` to this share of the dataset (see
#: ``scan_delta``). With a fifth, fine-tuned TREC jobs passed their first test
#: later on two of five seeds and needed 37.0% human labels against 36.3%.
SPENDING_SHARE = 0.15

#: A scan before the first pass does not run when its share is under this
#: share of the budget, because it could hardly pass.
MIN_TEST_SHARE = 0.05


def scan_delta(
    delta: float,
    earlier: Sequence[tuple[float, bool]],
    *,
    n_validation: int,
    n_items: int,
    first: float = 0.0,
    last: bool = False,
) -> float:
    """Return the share of the failure probability ``delta`` a job's next scan gets.

    ``earlier`` contains ``(share, passed)`` for each scan the job ran, in order.
    ``first`` is the share of a first-round scan started from the model's
    confidences, 0 if none ran.

    Until a scan passes, scans spend by the evidence they have, as
    group-sequential trials do. A scan on ``n_validation`` items may bring the
    total spent up to ``first + (delta - first) t^2 / (1 + t^2)``, with ``t``
    the ratio of ``n_validation`` to ``SPENDING_SHARE`` of ``n_items``. It gets
    what earlier scans left of that. Early scans on small samples fail most often,
    so they spend little. With the shares ``6 / (pi^2 j^2)`` instead, a failed
    first scan took 61% of the budget, and the next needed about 70% more
    certifying items.

    After the first pass the model keeps improving while the sample grows
    slowly, so the ``k``-th later scan gets ``6 / (pi^2 k^2)`` of what the scans
    up to the pass left. A scan after the pass with ``last`` set gets all that
    is left, and the job must then run no further scan. Either way the shares
    sum to at most ``delta``, so by the union bound every passing test is
    valid at once.

    Before the first pass, a share under ``MIN_TEST_SHARE`` of ``delta`` is
    returned as 0.0: such a scan could hardly pass, so it should not run.
    """
    spent = sum(share for share, _ in earlier)
    passes = [k for k, (_, passed) in enumerate(earlier) if passed]
    if passes:
        if last:
            return delta - spent
        left = delta - sum(share for share, _ in earlier[: passes[0] + 1])
        return round_delta(left, len(earlier) - passes[0])
    t2 = (n_validation / (SPENDING_SHARE * n_items)) ** 2
    share = first + (delta - first) * t2 / (1.0 + t2) - spent
    return share if share >= MIN_TEST_SHARE * delta else 0.0


@dataclass(frozen=True)
class ThresholdResult:
    """The outcome of scanning thresholds on one validation set.

    ``threshold`` is ``inf`` when nothing was certified. ``n_above`` and
    ``errors_above`` count validation items at or above it; ``upper_bound`` is
    their certified error bound. ``tested`` is the number of candidates tested;
    0 means the scan did not run and spent none of ``delta``.
    """

    threshold: float
    n_above: int
    errors_above: int
    upper_bound: float
    start_rank: int
    tested: int
    n_validation: int
    stop_reason: str

    @property
    def certified(self) -> bool:
        return math.isfinite(self.threshold)

    @classmethod
    def uncertified(
        cls, n_validation: int, reason: str, *, start_rank: int = 0, tested: int = 0
    ) -> ThresholdResult:
        """Return the result of a scan that certified no threshold."""
        return cls(
            threshold=math.inf,
            n_above=0,
            errors_above=0,
            upper_bound=1.0,
            start_rank=start_rank,
            tested=tested,
            n_validation=n_validation,
            stop_reason=reason,
        )


#: The start is the deepest rank whose predicted bound stays below this share
#: of the allowed error, a margin for a model somewhat overconfident.
START_MARGIN = 0.85


def predicted_start(
    confidences_sorted: np.ndarray, *, max_error: float, delta: float, min_rank: int
) -> int | None:
    """Pick the first candidate rank from the model's own confidences alone.

    If the model is calibrated, the expected number of errors among its top
    ``n`` items is the sum of ``1 - confidence`` over them. The start is the
    deepest rank where the bound computed from that expectation is at most
    ``START_MARGIN * max_error``, and no earlier than ``min_rank``. Starting deep
    matters: a model wrong on a few of its most confident items would fail the
    first candidates and certify nothing.

    Returns None when no rank passes by the model's own confidences.
    """
    n = len(confidences_sorted)
    expected_errors = np.cumsum(1.0 - confidences_sorted)
    ranks = np.arange(1, n + 1)
    bounds = beta.ppf(
        1.0 - delta, expected_errors + 1, np.maximum(ranks - expected_errors, 1e-9)
    )
    passing = np.flatnonzero((bounds <= START_MARGIN * max_error) & (ranks >= min_rank))
    if len(passing) == 0:
        return None
    return int(ranks[passing[-1]])


def confidences_predict_pass(
    confidences: np.ndarray, *, max_error: float, delta: float
) -> bool:
    """Return whether the model's own confidences predict that some threshold passes.

    This is ``predicted_start`` on the confidences in any order, with the
    fewest items that can certify as the shallowest rank. A job's first round
    scans without a pilot only when this holds.
    """
    return (
        predicted_start(
            np.sort(np.asarray(confidences, dtype=float))[::-1],
            max_error=max_error,
            delta=delta,
            min_rank=min_items_to_certify(max_error, delta),
        )
        is not None
    )


def _scan(
    sorted_conf: np.ndarray,
    cumulative_errors: np.ndarray,
    *,
    start: int,
    max_error: float,
    delta: float,
) -> tuple[tuple[int, int, float] | None, int, str]:
    """Test candidates from ``start`` downwards; stop at the first failure."""
    n = len(sorted_conf)
    # Candidates step by 1% of the validation set, so that one error just
    # below an accepted threshold does not end the scan. The whole set is
    # always the last candidate.
    step = max(1, n // 100)
    accepted: tuple[int, int, float] | None = None
    tested = 0
    stop_reason = "every candidate threshold was certified"
    rank = start
    while rank <= n:
        # Tied confidences share one threshold: test the last rank of a tie.
        while rank < n and sorted_conf[rank] == sorted_conf[rank - 1]:
            rank += 1
        errors = int(cumulative_errors[rank - 1])
        bound = clopper_pearson_upper(errors, rank, delta)
        tested += 1
        if bound > max_error:
            stop_reason = (
                f"bound {bound:.4f} exceeded {max_error:.4f} with {errors} errors "
                f"among the top {rank} validation items"
            )
            break
        accepted = (rank, errors, bound)
        if rank == n:
            break
        rank = min(rank + step, n)
    return accepted, tested, stop_reason


#: A scan runs only where the pilot gives its start at least this probability
#: of passing, because a failed test spends its share of the budget for nothing.
#: Each failure raises the items the next test needs: at 3% error, 382 for a
#: job's first test and 977 for its fifth.
MIN_PASS_PROBABILITY = 0.5


def _max_passing_errors(n_max: int, *, max_error: float, delta: float) -> np.ndarray:
    """Return, for each n up to ``n_max``, the most errors among n that certify.

    Entry ``n`` is -1 where even zero errors among ``n`` items cannot certify.
    The Clopper-Pearson bound of ``k`` errors among ``n`` is at most
    ``max_error`` exactly when ``P(Binomial(n, max_error) <= k) <= delta``,
    so the entry is the largest such ``k``.
    """
    n = np.arange(n_max + 1)
    first = binom.ppf(delta, n, max_error)
    first = np.where(np.isnan(first), 0, first).astype(int)
    passes = binom.cdf(first, n, max_error) <= delta
    limits = np.where(passes, first, first - 1)
    limits = np.minimum(limits, n - 1)
    limits[0] = -1
    return limits


def _most_likely_start(
    pilot_conf: np.ndarray,
    pilot_correct: np.ndarray,
    sorted_conf: np.ndarray,
    limits: np.ndarray,
    min_rank: int,
) -> int | None:
    """Return the start rank most likely to pass by these pilot items.

    For each pilot confidence, the pilot items above it give a posterior
    (Jeffreys prior) on the error rate above the same confidence, and the
    beta-binomial predictive gives the probability that the certifying items
    above it pass the first test. ``limits`` comes from ``_max_passing_errors``.
    Returns None when no rank at or past ``min_rank`` can pass at all.
    """
    order = np.argsort(-pilot_conf, kind="stable")
    pilot_sorted = pilot_conf[order]
    pilot_errors = np.cumsum(~pilot_correct[order])
    # Number of certification items at or above each pilot confidence.
    counts = np.searchsorted(-sorted_conf, -pilot_sorted, side="right")
    positions = np.arange(len(pilot_sorted))
    usable = counts >= min_rank
    usable[usable] = limits[counts[usable]] >= 0
    if not usable.any():
        return None
    counts, positions = counts[usable], positions[usable]
    errors = pilot_errors[usable].astype(float)
    probabilities = betabinom.cdf(
        limits[counts], counts, errors + 0.5, positions + 1 - errors + 0.5
    )
    # The first maximum is the shallowest start of equal probability.
    best_at = int(np.argmax(probabilities))
    return int(counts[best_at])


def _pass_probability(
    start: int,
    pilot_conf: np.ndarray,
    pilot_correct: np.ndarray,
    sorted_conf: np.ndarray,
    limits: np.ndarray,
) -> float:
    """Return the chance that a scan from ``start`` passes, by these pilot items."""
    above = pilot_conf >= sorted_conf[start - 1]
    errors = int((~pilot_correct[above]).sum())
    return float(
        betabinom.cdf(limits[start], start, errors + 0.5, above.sum() - errors + 0.5)
    )


def _pilot_start(
    pilot_conf: np.ndarray,
    pilot_correct: np.ndarray,
    sorted_conf: np.ndarray,
    *,
    max_error: float,
    delta: float,
    min_rank: int,
) -> int | None:
    """Pick the first candidate rank from a separate pilot sample's labels.

    The start is the rank most likely to pass by the whole pilot (see
    ``_most_likely_start``): the scan goes deeper from there on its own, so a
    start deeper than that adds little coverage and risks the whole test.
    Where the most confident items are already a little wrong (2% on AG
    News), it starts deep enough for a bound to reach the target, instead of
    at the few most confident items, whose first error ends the scan.

    Whether to test at all is decided on an honest estimate. The best of many
    starts looks better than it is, because the pilot items above it are
    clean partly by chance. So each half of the pilot (alternate items in the
    given order, a split that ignores labels) chooses its own start and the
    other half estimates that start's probability of passing. This was
    measured on cross-fitted scores of growing random samples of AG News and
    TREC, with halves drawn at random by a hash of the item ids. Starts that
    the whole pilot gave 0.7 to 0.9 passed 21 of 32 times.
    Starts whose halves' mean estimate was 0.5 to 0.7 passed 16 of 22 times.

    Returns None when the mean of the two halves' estimates is below
    ``MIN_PASS_PROBABILITY``, because the test would most likely fail and
    skipping it saves its budget.
    """
    limits = _max_passing_errors(len(sorted_conf), max_error=max_error, delta=delta)
    start = _most_likely_start(pilot_conf, pilot_correct, sorted_conf, limits, min_rank)
    if start is None:
        return None
    halves = np.arange(len(pilot_conf)) % 2 == 0
    estimates = []
    for chooser in (halves, ~halves):
        chosen = _most_likely_start(
            pilot_conf[chooser], pilot_correct[chooser], sorted_conf, limits, min_rank
        )
        if chosen is None:
            estimates.append(0.0)
            continue
        estimates.append(
            _pass_probability(
                chosen,
                pilot_conf[~chooser],
                pilot_correct[~chooser],
                sorted_conf,
                limits,
            )
        )
    if np.mean(estimates) < MIN_PASS_PROBABILITY:
        return None
    return start


def certify_threshold(
    confidences: np.ndarray,
    correct: np.ndarray,
    *,
    max_error: float,
    delta: float,
    pilot: np.ndarray | None = None,
) -> ThresholdResult:
    """Find the lowest certified confidence threshold.

    With ``pilot``, a mask of validation items drawn at random before any
    label was seen, those items only choose where the scan starts (see
    ``_pilot_start``) and the others certify. That costs certification power
    but survives a model overconfident on its most confident items, where a
    start predicted from its confidences lies far too deep. Without a pilot
    the scan starts where the model's own confidences predict it to pass
    (see ``predicted_start``). Splitting ``delta`` over several starts lost
    coverage on simulated scores in every case, so one sequence is scanned.

    Parameters
    ----------
    confidences : ndarray of shape (n,)
        Confidence of the predicted class of each validation item.
    correct : ndarray of bool, shape (n,)
        Whether each prediction matches the human label.
    max_error : float
        Largest error rate allowed among machine labels (``1 - target``).
    delta : float
        Allowed probability that the certified threshold is wrong.

    Returns
    -------
    ThresholdResult
    """
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    pilot_conf = pilot_correct = None
    if pilot is not None:
        pilot = np.asarray(pilot, dtype=bool)
        pilot_conf = confidences[pilot]
        pilot_correct = correct[pilot]
        confidences = confidences[~pilot]
        correct = correct[~pilot]
    n = len(confidences)
    min_rank = min_items_to_certify(max_error, delta)
    if n < min_rank:
        return ThresholdResult.uncertified(
            n,
            f"{n} validation items, fewer than the {min_rank} needed to "
            f"certify {max_error:.1%} error at {1 - delta:.1%} confidence",
        )

    order = np.argsort(-confidences, kind="stable")
    sorted_conf = confidences[order]
    cumulative_errors = np.cumsum(~correct[order])
    if pilot_conf is not None and pilot_correct is not None and len(pilot_conf):
        pilot_start = _pilot_start(
            pilot_conf,
            pilot_correct,
            sorted_conf,
            max_error=max_error,
            delta=delta,
            min_rank=min_rank,
        )
        if pilot_start is None:
            return ThresholdResult.uncertified(
                n,
                f"not tested: by the {len(pilot_conf)} pilot items, no "
                f"threshold would pass with probability {MIN_PASS_PROBABILITY:.0%}",
            )
        start = pilot_start
    else:
        predicted = predicted_start(
            sorted_conf, max_error=max_error, delta=delta, min_rank=min_rank
        )
        start = min(min_rank, n) if predicted is None else predicted
    best, tested, stop_reason = _scan(
        sorted_conf, cumulative_errors, start=start, max_error=max_error, delta=delta
    )
    if best is None:
        return ThresholdResult.uncertified(
            n, stop_reason, start_rank=start, tested=tested
        )
    rank, errors, bound = best
    return ThresholdResult(
        threshold=float(sorted_conf[rank - 1]),
        n_above=rank,
        errors_above=errors,
        upper_bound=bound,
        start_rank=start,
        tested=tested,
        n_validation=n,
        stop_reason=stop_reason,
    )


#: In ``auto`` mode, class-wise thresholds are tried only where every class
#: has this many times the fewest items that certify, because trying them
#: halves the global threshold's budget. On AG News with 2,400 random
#: validation items, a factor of 3 let them in and cut the certified coverage
#: from 37.7% to 27.6%. With 3,600 items it fell from 64.3% to 61.6% (means of
#: 6 samples each).
CLASS_WISE_FACTOR = 10


@dataclass(frozen=True)
class ThresholdPlan:
    """Thresholds chosen for one round: one per class (equal under ``global``)."""

    mode: str
    thresholds: tuple[float, ...]
    results: dict[str, ThresholdResult] = field(default_factory=dict)

    @classmethod
    def untested(cls, n_classes: int, n_validation: int, reason: str) -> ThresholdPlan:
        """Return the plan of a round that runs no scan, giving ``reason``."""
        return cls(
            mode="global",
            thresholds=(math.inf,) * n_classes,
            results={"global": ThresholdResult.uncertified(n_validation, reason)},
        )

    def covers(self, predicted: np.ndarray, confidences: np.ndarray) -> np.ndarray:
        """Return a mask of items whose confidence meets their class's threshold."""
        limits = np.asarray(self.thresholds)[np.asarray(predicted, dtype=int)]
        return np.asarray(confidences) >= limits


def plan_thresholds(
    *,
    val_predicted: np.ndarray,
    val_confidences: np.ndarray,
    val_correct: np.ndarray,
    pool_predicted: np.ndarray,
    pool_confidences: np.ndarray,
    n_classes: int,
    max_error: float,
    delta: float,
    mode: str = "auto",
    val_pilot: np.ndarray | None = None,
) -> ThresholdPlan:
    """Certify a global threshold, class-wise thresholds, or the better of both.

    Class-wise thresholds split ``delta`` across classes, so each class's
    machine labels, and hence all of them, meet ``max_error``. In ``auto`` mode
    class-wise thresholds are tried only when every class has at least
    ``CLASS_WISE_FACTOR`` times the items needed to certify among the
    validation predictions, a choice made without labels. Then each option
    gets half of ``delta``, and the one covering more of the pool wins, again
    a choice without labels.
    Otherwise the global threshold gets all of ``delta``. ``val_pilot`` marks
    validation items that only choose where each scan starts.
    """
    if mode not in ("global", "class-wise", "auto"):
        raise ValueError(f"mode must be global, class-wise or auto, got {mode!r}")
    if mode == "auto":
        counts = np.bincount(np.asarray(val_predicted, dtype=int), minlength=n_classes)
        needed = CLASS_WISE_FACTOR * min_items_to_certify(
            max_error, delta / (2 * n_classes)
        )
        if counts.min() < needed:
            mode = "global"
    share = delta / 2 if mode == "auto" else delta
    plans: list[ThresholdPlan] = []

    if mode in ("global", "auto"):
        result = certify_threshold(
            val_confidences,
            val_correct,
            max_error=max_error,
            delta=share,
            pilot=val_pilot,
        )
        plans.append(
            ThresholdPlan(
                mode="global",
                thresholds=(result.threshold,) * n_classes,
                results={"global": result},
            )
        )

    if mode in ("class-wise", "auto"):
        thresholds = []
        results = {}
        for label in range(n_classes):
            mask = np.asarray(val_predicted) == label
            result = certify_threshold(
                np.asarray(val_confidences)[mask],
                np.asarray(val_correct)[mask],
                max_error=max_error,
                delta=share / n_classes,
                pilot=None if val_pilot is None else np.asarray(val_pilot)[mask],
            )
            thresholds.append(result.threshold)
            results[str(label)] = result
        plans.append(
            ThresholdPlan(
                mode="class-wise", thresholds=tuple(thresholds), results=results
            )
        )

    coverages = [
        int(plan.covers(pool_predicted, pool_confidences).sum()) for plan in plans
    ]
    return plans[int(np.argmax(coverages))]
