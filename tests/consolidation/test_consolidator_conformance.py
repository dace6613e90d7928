"""Contract checks run over every registered consolidation method."""

from __future__ import annotations

import logging
import math
import random

import numpy as np
import pytest

from labelloop.consolidation import (
    CONSOLIDATORS,
    Answer,
    ConsolidationError,
    Consolidator,
    get_consolidator,
)
from labelloop.errors import ConfigError, RegistryError

METHODS = CONSOLIDATORS.names()


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _check_well_formed(result, n_classes: int) -> None:
    assert len(result.class_prior) == n_classes
    assert math.isclose(sum(result.class_prior), 1.0)
    assert all(p > 0 for p in result.class_prior)
    for item_id, label in result.labels.items():
        assert label.item_id == item_id
        assert len(label.posterior) == n_classes
        assert all(math.isfinite(p) and 0 <= p <= 1 for p in label.posterior)
        assert math.isclose(sum(label.posterior), 1.0)
        assert 0 <= label.label < n_classes
        assert label.confidence == label.posterior[label.label]
    for worker_id, quality in result.workers.items():
        assert quality.worker_id == worker_id
        assert 0 <= quality.accuracy <= 1
        assert len(quality.confusion) == n_classes
        for row in quality.confusion:
            assert len(row) == n_classes
            assert math.isclose(sum(row), 1.0)


def test_registry_lists_both_methods():
    assert "majority-vote" in CONSOLIDATORS
    assert "dawid-skene" in CONSOLIDATORS


def test_registry_unknown_name_raises():
    with pytest.raises(RegistryError, match="no-such-method"):
        get_consolidator("no-such-method")


@pytest.mark.parametrize("name", METHODS)
def test_consolidator_follows_protocol(name):
    consolidator = get_consolidator(name)
    assert isinstance(consolidator, Consolidator)
    assert consolidator.name == name


@pytest.mark.parametrize("name", METHODS)
def test_empty_answers_give_empty_result(name):
    result = get_consolidator(name).consolidate([], n_classes=3, rng=_rng())
    assert result.labels == {}
    assert result.workers == {}
    assert result.skipped_answers == 0
    assert result.class_prior == pytest.approx((1 / 3, 1 / 3, 1 / 3))


@pytest.mark.parametrize("name", METHODS)
def test_listed_worker_without_answers_gets_prior(name):
    answers = [Answer(0, "a", 1), Answer(0, "b", 1), Answer(1, "a", 0)]
    result = get_consolidator(name, prior_accuracy=0.8).consolidate(
        answers, n_classes=3, rng=_rng(), workers=["idle"]
    )
    idle = result.workers["idle"]
    assert idle.n_answers == 0
    assert idle.accuracy == pytest.approx(0.8)
    expected = ((0.8, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.1, 0.8))
    assert np.allclose(idle.confusion, expected)


@pytest.mark.parametrize("name", METHODS)
def test_item_without_answers_is_absent(name):
    answers = [Answer(0, "a", 1), Answer(2, "a", 0), Answer(2, "b", 0)]
    result = get_consolidator(name).consolidate(answers, n_classes=2, rng=_rng())
    assert set(result.labels) == {0, 2}
    assert result.labels[2].n_answers == 2
    _check_well_formed(result, 2)


@pytest.mark.parametrize("name", METHODS)
def test_shuffled_answers_give_same_result(name, simulate_crowd):
    crowd = simulate_crowd(
        n_items=300,
        accuracies=[0.6, 0.7, 0.8, 0.9, 0.25],
        n_classes=4,
        answers_per_item=2,
        seed=3,
    )
    consolidator = get_consolidator(name)
    reference = consolidator.consolidate(crowd.answers, n_classes=4, rng=_rng(7))
    for shuffle_seed in range(3):
        shuffled = list(crowd.answers)
        random.Random(shuffle_seed).shuffle(shuffled)
        again = consolidator.consolidate(shuffled, n_classes=4, rng=_rng(7))
        assert again == reference


@pytest.mark.parametrize("name", METHODS)
def test_out_of_range_labels_are_skipped(name, caplog):
    answers = [
        Answer(0, "a", 0),
        Answer(0, "b", 0),
        Answer(0, "c", 3),
        Answer(1, "c", -1),
        Answer(1, "a", 1),
    ]
    with caplog.at_level(logging.WARNING, logger="labelloop.consolidation"):
        result = get_consolidator(name).consolidate(answers, n_classes=3, rng=_rng())
    assert result.skipped_answers == 2
    assert result.labels[0].n_answers == 2
    assert result.labels[1].n_answers == 1
    assert result.workers["c"].n_answers == 0
    assert "skipped 2 answers" in caplog.text
    _check_well_formed(result, 3)


@pytest.mark.parametrize("name", METHODS)
def test_unchosen_class_keeps_positive_prior(name):
    answers = [Answer(item, worker, item % 2) for item in range(6) for worker in "ab"]
    result = get_consolidator(name).consolidate(answers, n_classes=4, rng=_rng())
    assert result.class_prior[2] > 0
    assert result.class_prior[3] > 0
    _check_well_formed(result, 4)


@pytest.mark.parametrize("name", METHODS)
def test_two_workers_only(name):
    answers = [Answer(item, "a", item % 3) for item in range(9)]
    answers += [Answer(item, "b", item % 3) for item in range(8)]
    answers.append(Answer(8, "b", 0))
    result = get_consolidator(name).consolidate(answers, n_classes=3, rng=_rng())
    assert set(result.workers) == {"a", "b"}
    assert result.workers["a"].n_answers == 9
    for item in range(8):
        assert result.labels[item].label == item % 3
    assert result.labels[8].label in (0, 2)
    _check_well_formed(result, 3)


@pytest.mark.parametrize("name", METHODS)
def test_three_way_disagreement_stays_finite(name):
    answers = [Answer(0, "a", 0), Answer(0, "b", 1), Answer(0, "c", 2)]
    result = get_consolidator(name).consolidate(answers, n_classes=3, rng=_rng())
    label = result.labels[0]
    assert label.n_answers == 3
    assert label.confidence <= 0.5
    _check_well_formed(result, 3)


@pytest.mark.parametrize("name", METHODS)
def test_gold_item_takes_known_class(name):
    answers = [Answer(0, "a", 1), Answer(0, "b", 1), Answer(1, "a", 0)]
    result = get_consolidator(name).consolidate(
        answers, n_classes=2, rng=_rng(), gold={0: 0, 5: 1}
    )
    assert result.labels[0].label == 0
    assert result.labels[0].confidence == pytest.approx(1.0)
    assert 5 not in result.labels


@pytest.mark.parametrize("name", METHODS)
def test_gold_class_out_of_range_raises(name):
    answers = [Answer(0, "a", 1)]
    with pytest.raises(ConsolidationError, match=r"gold\[0\]"):
        get_consolidator(name).consolidate(
            answers, n_classes=2, rng=_rng(), gold={0: 2}
        )


@pytest.mark.parametrize("name", METHODS)
def test_negative_worker_weight_raises(name):
    answers = [Answer(0, "a", 1)]
    with pytest.raises(ConsolidationError, match="worker_weights"):
        get_consolidator(name).consolidate(
            answers, n_classes=2, rng=_rng(), worker_weights={"a": -1.0}
        )


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("n_classes", [1, 0, 2.5, True])
def test_invalid_class_count_raises(name, n_classes):
    with pytest.raises(ConfigError, match="n_classes"):
        get_consolidator(name).consolidate(
            [Answer(0, "a", 0)], n_classes=n_classes, rng=_rng()
        )


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize(
    "setting",
    [
        {"prior_strength": -1.0},
        {"prior_strength": math.inf},
        {"prior_accuracy": 1.0},
        {"prior_accuracy": 0.0},
        {"class_prior_strength": -0.5},
    ],
)
def test_invalid_smoothing_setting_raises(name, setting):
    with pytest.raises(ConfigError, match=next(iter(setting))):
        get_consolidator(name, **setting)


@pytest.mark.parametrize("name", METHODS)
def test_simulated_crowd_beats_worst_worker(name, simulate_crowd):
    crowd = simulate_crowd(
        n_items=500,
        accuracies=[0.65, 0.75, 0.85],
        n_classes=3,
        answers_per_item=3,
        seed=11,
    )
    result = get_consolidator(name).consolidate(crowd.answers, n_classes=3, rng=_rng())
    predicted = np.array([result.labels[item].label for item in range(500)])
    accuracy = float(np.mean(predicted == crowd.truth))
    assert accuracy > 0.85
    _check_well_formed(result, 3)
