"""Tests of the adaptive redundancy rule."""

from __future__ import annotations

import pytest

from labelloop.consolidation import Answer, needs_more_answers
from labelloop.errors import ConfigError


def _answers(*labels: int) -> list[Answer]:
    return [Answer(0, f"w{index}", label) for index, label in enumerate(labels)]


SETTINGS = {"min_answers": 2, "max_answers": 5, "confidence": 0.9}


def test_adaptive_below_minimum_asks_more():
    assert needs_more_answers(_answers(1), (0.01, 0.99), **SETTINGS)
    assert needs_more_answers([], None, **SETTINGS)


def test_adaptive_at_maximum_stops():
    assert not needs_more_answers(_answers(0, 1, 2, 0, 1), (0.4, 0.4, 0.2), **SETTINGS)


def test_adaptive_agreeing_confident_stops():
    assert not needs_more_answers(_answers(1, 1), (0.05, 0.95), **SETTINGS)


def test_adaptive_disagreement_asks_more():
    assert needs_more_answers(_answers(1, 0), (0.01, 0.99), **SETTINGS)


def test_adaptive_disagreement_ignored_when_unrequired():
    assert not needs_more_answers(
        _answers(1, 0, 1), (0.02, 0.98), require_agreement=False, **SETTINGS
    )
    assert needs_more_answers(
        _answers(1, 0, 1), (0.2, 0.8), require_agreement=False, **SETTINGS
    )


def test_adaptive_low_posterior_asks_more():
    assert needs_more_answers(_answers(1, 1), (0.15, 0.85), **SETTINGS)


def test_adaptive_without_posterior_uses_agreement():
    assert not needs_more_answers(_answers(2, 2), None, **SETTINGS)
    assert needs_more_answers(_answers(2, 0), None, **SETTINGS)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"min_answers": 0}, "min_answers"),
        ({"min_answers": 3, "max_answers": 2}, "max_answers"),
        ({"confidence": 0.0}, "confidence"),
        ({"confidence": 1.5}, "confidence"),
    ],
)
def test_adaptive_invalid_setting_raises(setting, message):
    with pytest.raises(ConfigError, match=message):
        needs_more_answers(_answers(1, 1), (0.0, 1.0), **setting)
