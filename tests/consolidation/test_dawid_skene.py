"""Tests of Dawid-Skene consolidation."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from labelloop.consolidation import (
    Answer,
    ConsolidationError,
    DawidSkene,
    MajorityVote,
)
from labelloop.errors import ConfigError


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _accuracy(result, truth: np.ndarray) -> float:
    predicted = np.array([result.labels[item].label for item in range(len(truth))])
    return float(np.mean(predicted == truth))


def test_dawid_skene_recovers_worker_accuracy(simulate_crowd):
    accuracies = [0.55, 0.65, 0.75, 0.85, 0.95, 0.25]
    crowd = simulate_crowd(
        n_items=3000,
        accuracies=accuracies,
        n_classes=4,
        answers_per_item=3,
        seed=5,
    )
    result = DawidSkene().consolidate(crowd.answers, n_classes=4, rng=_rng())
    assert result.converged
    for worker_id, true_accuracy in crowd.accuracies.items():
        estimated = result.workers[worker_id].accuracy
        assert estimated == pytest.approx(true_accuracy, abs=0.04)


def test_dawid_skene_beats_majority_vote(simulate_crowd):
    crowd = simulate_crowd(
        n_items=3000,
        accuracies=[0.55, 0.65, 0.75, 0.85, 0.95, 0.25],
        n_classes=4,
        answers_per_item=3,
        seed=6,
    )
    dawid_skene = DawidSkene().consolidate(crowd.answers, n_classes=4, rng=_rng())
    majority = MajorityVote().consolidate(crowd.answers, n_classes=4, rng=_rng())
    assert _accuracy(dawid_skene, crowd.truth) > _accuracy(majority, crowd.truth) + 0.02


def test_dawid_skene_warm_start_matches_cold(simulate_crowd):
    crowd = simulate_crowd(
        n_items=1500,
        accuracies=[0.6, 0.7, 0.8, 0.9, 0.3],
        n_classes=5,
        answers_per_item=3,
        seed=8,
    )
    model = DawidSkene(tol=1e-9)
    first_batch = crowd.answers[: len(crowd.answers) * 2 // 3]
    previous = model.consolidate(first_batch, n_classes=5, rng=_rng())

    warm = model.consolidate(
        crowd.answers,
        n_classes=5,
        rng=_rng(),
        initial_posteriors=previous.posteriors(),
    )
    cold = model.consolidate(crowd.answers, n_classes=5, rng=_rng())

    assert warm.converged
    assert cold.converged
    assert {i: c.label for i, c in warm.labels.items()} == {
        i: c.label for i, c in cold.labels.items()
    }
    warm_posteriors = np.array([warm.labels[i].posterior for i in sorted(warm.labels)])
    cold_posteriors = np.array([cold.labels[i].posterior for i in sorted(cold.labels)])
    assert np.max(np.abs(warm_posteriors - cold_posteriors)) < 1e-5
    for worker_id, quality in cold.workers.items():
        warm_confusion = np.array(warm.workers[worker_id].confusion)
        assert np.max(np.abs(warm_confusion - np.array(quality.confusion))) < 1e-5


def test_dawid_skene_rerun_is_fixed_point(simulate_crowd):
    crowd = simulate_crowd(
        n_items=400,
        accuracies=[0.6, 0.8, 0.9],
        n_classes=3,
        answers_per_item=2,
        seed=2,
    )
    model = DawidSkene(tol=1e-10)
    first = model.consolidate(crowd.answers, n_classes=3, rng=_rng())
    again = model.consolidate(
        crowd.answers, n_classes=3, rng=_rng(), initial_posteriors=first.posteriors()
    )
    assert again.n_iterations <= 2
    assert again.labels[0].posterior == pytest.approx(first.labels[0].posterior)


def test_dawid_skene_few_answers_not_extreme():
    answers = [Answer(item, worker, 1) for item in range(30) for worker in "abc"]
    answers += [Answer(0, "new", 1), Answer(1, "new", 1)]
    smoothed = DawidSkene().consolidate(answers, n_classes=3, rng=_rng())
    confusion = np.array(smoothed.workers["new"].confusion)
    assert confusion[1, 1] < 0.9
    assert np.all(confusion > 0.01)

    unsmoothed = DawidSkene(prior_strength=0.0, class_prior_strength=0.0)
    confusion = np.array(
        unsmoothed.consolidate(answers, n_classes=3, rng=_rng())
        .workers["new"]
        .confusion
    )
    assert confusion[1, 1] == pytest.approx(1.0)


def test_dawid_skene_unchosen_class_posterior():
    answers = [Answer(item, worker, item % 2) for item in range(20) for worker in "ab"]
    result = DawidSkene().consolidate(answers, n_classes=3, rng=_rng())
    assert result.class_prior[2] > 0
    for label in result.labels.values():
        assert 0 < label.posterior[2] < 0.05
        assert label.label == label.item_id % 2


def test_dawid_skene_three_way_disagreement():
    answers = [Answer(item, worker, item % 3) for item in range(30) for worker in "abc"]
    answers += [Answer(99, "a", 0), Answer(99, "b", 1), Answer(99, "c", 2)]
    result = DawidSkene().consolidate(answers, n_classes=3, rng=_rng())
    posterior = np.array(result.labels[99].posterior)
    assert np.all(np.isfinite(posterior))
    assert posterior == pytest.approx(np.full(3, 1 / 3), abs=0.02)


def test_dawid_skene_gold_clamps_and_trains():
    # Worker "liar" always answers the other class; gold items reveal it.
    answers = []
    for item in range(20):
        answers += [
            Answer(item, "liar", 1 - item % 2),
            Answer(item, "honest", item % 2),
        ]
    gold = {item: item % 2 for item in range(10)}
    result = DawidSkene().consolidate(answers, n_classes=2, rng=_rng(), gold=gold)
    for item in range(10):
        known = item % 2
        assert result.labels[item].posterior == (float(1 - known), float(known))
    for item in range(10, 20):
        assert result.labels[item].label == item % 2
    # The prior adds 2.8 right and 1.2 wrong pseudo-answers to each of 10 per row.
    assert result.workers["liar"].accuracy < 0.25
    assert result.workers["honest"].accuracy > 0.8


def test_dawid_skene_zero_weight_ignores_worker(simulate_crowd):
    crowd = simulate_crowd(
        n_items=300,
        accuracies=[0.7, 0.8, 0.9, 0.4],
        n_classes=3,
        answers_per_item=3,
        seed=4,
    )
    # Give every item an answer from a worker that is kept.
    answers = crowd.answers + [Answer(item, "w0", 0) for item in range(300)]
    excluded = [answer for answer in answers if answer.worker_id != "w3"]
    model = DawidSkene(tol=1e-10)
    weighted = model.consolidate(
        answers, n_classes=3, rng=_rng(), worker_weights={"w3": 0.0}
    )
    removed = model.consolidate(excluded, n_classes=3, rng=_rng())
    for item, label in removed.labels.items():
        assert weighted.labels[item].posterior == pytest.approx(
            label.posterior, abs=1e-9
        )
    assert weighted.workers["w3"].n_answers > 0
    assert "w3" not in removed.workers


def test_dawid_skene_initial_posterior_invalid_raises():
    answers = [Answer(0, "a", 0), Answer(0, "b", 1)]
    with pytest.raises(ConsolidationError, match=r"initial_posteriors\[0\]"):
        DawidSkene().consolidate(
            answers, n_classes=2, rng=_rng(), initial_posteriors={0: (0.2, 0.3, 0.5)}
        )
    with pytest.raises(ConsolidationError, match=r"initial_posteriors\[0\]"):
        DawidSkene().consolidate(
            answers, n_classes=2, rng=_rng(), initial_posteriors={0: (0.0, 0.0)}
        )


def test_dawid_skene_iteration_limit_warns(simulate_crowd, caplog):
    crowd = simulate_crowd(
        n_items=200,
        accuracies=[0.6, 0.7, 0.8],
        n_classes=3,
        answers_per_item=3,
        seed=1,
    )
    with caplog.at_level(logging.WARNING, logger="labelloop.consolidation"):
        result = DawidSkene(max_iter=2).consolidate(
            crowd.answers, n_classes=3, rng=_rng()
        )
    assert not result.converged
    assert result.n_iterations == 2
    assert "max_iter=2" in caplog.text


@pytest.mark.parametrize(
    "setting",
    [
        {"tol": 0.0},
        {"max_iter": 0},
        {"max_iter": 2.5},
        {"init_smoothing": -1.0},
    ],
)
def test_dawid_skene_invalid_setting_raises(setting):
    with pytest.raises(ConfigError, match=next(iter(setting))):
        DawidSkene(**setting)


def test_dawid_skene_ten_thousand_items_fast(simulate_crowd):
    rng = np.random.default_rng(0)
    n_items, n_classes = 10_000, 10
    truth = rng.integers(0, n_classes, size=n_items)
    answers = []
    for worker, accuracy in enumerate([0.55, 0.65, 0.75, 0.85, 0.95]):
        right = rng.random(n_items) < accuracy
        wrong = (truth + rng.integers(1, n_classes, size=n_items)) % n_classes
        labels = np.where(right, truth, wrong)
        answers += [
            Answer(item, f"w{worker}", int(label)) for item, label in enumerate(labels)
        ]

    start = time.perf_counter()
    result = DawidSkene().consolidate(answers, n_classes=n_classes, rng=_rng())
    elapsed = time.perf_counter() - start

    assert result.converged
    assert len(result.labels) == n_items
    assert _accuracy(result, truth) > 0.97
    # Measured at about 0.5 s on one AMD EPYC core; the bound leaves room for load.
    assert elapsed < 5.0
