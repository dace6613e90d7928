"""Tests of how the loop sizes validation samples and human batches."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.certify import (
    clopper_pearson_upper,
    items_to_certify_at,
    min_items_to_certify,
)
from labelloop.loop import (
    MAX_VALIDATION_SHARE,
    default_batch_size,
    default_validation_size,
    draw_pilot,
)


@pytest.mark.parametrize("max_error", [0.02, 0.05, 0.1])
def test_items_to_certify_is_smallest(max_error: float) -> None:
    delta = 0.03
    rate = max_error / 2
    n = items_to_certify_at(max_error, delta, error_rate=rate)

    assert clopper_pearson_upper(round(n * rate), n, delta) <= max_error
    assert clopper_pearson_upper(round((n - 1) * rate), n - 1, delta) > max_error


def test_items_to_certify_without_errors() -> None:
    assert items_to_certify_at(0.05, 0.05, error_rate=0.0) == min_items_to_certify(
        0.05, 0.05
    )


def test_items_to_certify_rejects_rate_at_target() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        items_to_certify_at(0.05, 0.05, error_rate=0.05)


def test_validation_size_grows_with_stricter_target() -> None:
    loose, _ = default_validation_size(100_000, max_error=0.1, confidence=0.95)
    strict, reason = default_validation_size(100_000, max_error=0.02, confidence=0.95)

    assert strict > loose
    assert "2.0% error" in reason


def test_validation_size_capped_on_small_data() -> None:
    size, reason = default_validation_size(1000, max_error=0.05, confidence=0.95)

    assert size == int(MAX_VALIDATION_SHARE * 1000)
    assert "capped" in reason


def test_batch_grows_with_human_labels() -> None:
    assert default_batch_size(10_000, 0) == 200
    assert default_batch_size(10_000, 4000) == 1000
    assert default_batch_size(1000, 0) == 50


def test_pilot_is_a_quarter_up_to_a_cap() -> None:
    small = draw_pilot(np.arange(400), seed=3)
    large = draw_pilot(np.arange(4000), seed=3)

    assert 75 <= small.sum() <= 125
    assert 160 <= large.sum() <= 240
    # Each round draws its own pilot.
    assert not np.array_equal(large, draw_pilot(np.arange(4000), seed=4))
