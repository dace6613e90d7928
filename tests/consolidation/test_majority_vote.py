"""Tests of majority vote consolidation."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.consolidation import Answer, MajorityVote


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_majority_vote_picks_most_frequent():
    answers = [Answer(0, "a", 2), Answer(0, "b", 2), Answer(0, "c", 0)]
    result = MajorityVote().consolidate(answers, n_classes=3, rng=_rng())
    label = result.labels[0]
    assert label.label == 2
    assert label.confidence == pytest.approx(2 / 3)
    assert label.posterior == pytest.approx((1 / 3, 0.0, 2 / 3))


def test_majority_vote_three_way_third():
    answers = [Answer(0, "a", 0), Answer(0, "b", 1), Answer(0, "c", 2)]
    result = MajorityVote().consolidate(answers, n_classes=4, rng=_rng())
    assert result.labels[0].confidence == pytest.approx(1 / 3)
    assert result.labels[0].label in (0, 1, 2)


def test_majority_vote_ties_use_rng():
    forward = [Answer(0, "a", 0), Answer(0, "b", 1)]
    backward = list(reversed(forward))
    winners = set()
    for seed in range(40):
        first = MajorityVote().consolidate(forward, n_classes=2, rng=_rng(seed))
        second = MajorityVote().consolidate(backward, n_classes=2, rng=_rng(seed))
        assert first.labels[0].label == second.labels[0].label
        winners.add(first.labels[0].label)
    assert winners == {0, 1}


def test_majority_vote_single_answer_uses_accuracy():
    # Worker "a" agrees with the other two on 3 of its 4 shared items.
    answers = []
    for item, answer_of_a in enumerate([0, 1, 0, 0]):
        answers += [Answer(item, "b", 0), Answer(item, "c", 0)]
        answers.append(Answer(item, "a", answer_of_a))
    answers.append(Answer(10, "a", 2))
    model = MajorityVote(prior_strength=4.0, prior_accuracy=0.7)
    result = model.consolidate(answers, n_classes=3, rng=_rng())

    expected_accuracy = (3 + 4 * 0.7) / (4 + 4)
    assert result.workers["a"].accuracy == pytest.approx(expected_accuracy)
    single = result.labels[10]
    assert single.label == 2
    assert single.n_answers == 1
    assert single.confidence == pytest.approx(expected_accuracy)
    off = (1 - expected_accuracy) / 2
    assert single.posterior == pytest.approx((off, off, expected_accuracy))


def test_majority_vote_unknown_single_worker_prior():
    result = MajorityVote(prior_accuracy=0.6).consolidate(
        [Answer(0, "a", 1)], n_classes=2, rng=_rng()
    )
    assert result.labels[0].confidence == pytest.approx(0.6)
    assert result.workers["a"].accuracy == pytest.approx(0.6)


def test_majority_vote_confusion_is_smoothed():
    answers = []
    for item in range(6):
        answers += [Answer(item, "b", 0), Answer(item, "c", 0), Answer(item, "a", 0)]
    result = MajorityVote(prior_strength=2.0, prior_accuracy=0.5).consolidate(
        answers, n_classes=2, rng=_rng()
    )
    confusion = result.workers["a"].confusion
    # Row 0: 6 agreements plus 1 + 1 pseudo-answers; row 1: the prior alone.
    assert confusion[0] == pytest.approx((7 / 8, 1 / 8))
    assert confusion[1] == pytest.approx((0.5, 0.5))


def test_majority_vote_weights_change_winner():
    answers = [Answer(0, "a", 0), Answer(0, "b", 1), Answer(0, "c", 1)]
    result = MajorityVote().consolidate(
        answers, n_classes=2, rng=_rng(), worker_weights={"a": 3.0}
    )
    assert result.labels[0].label == 0
    assert result.labels[0].confidence == pytest.approx(0.6)


def test_majority_vote_zero_weight_uniform():
    answers = [Answer(0, "a", 0), Answer(0, "b", 0)]
    result = MajorityVote().consolidate(
        answers, n_classes=4, rng=_rng(), worker_weights={"a": 0.0, "b": 0.0}
    )
    assert result.labels[0].posterior == pytest.approx((0.25,) * 4)
    assert result.labels[0].n_answers == 2


def test_majority_vote_gold_trains_quality():
    # Every item has one answer, so only the gold items can rate worker "a".
    answers = [Answer(item, "a", 1) for item in range(4)]
    result = MajorityVote(prior_strength=0.0).consolidate(
        answers, n_classes=2, rng=_rng(), gold={0: 0, 1: 1}
    )
    assert result.workers["a"].accuracy == pytest.approx(0.5)
    assert result.labels[2].confidence == pytest.approx(0.5)
    assert result.labels[0].label == 0
