"""Adaptive redundancy: whether an item should be sent to one more worker."""

from __future__ import annotations

from collections.abc import Sequence

from labelloop.consolidation.base import Answer
from labelloop.errors import ConfigError


def needs_more_answers(
    answers_for_item: Sequence[Answer],
    posterior: Sequence[float] | None,
    *,
    min_answers: int = 2,
    max_answers: int = 5,
    confidence: float = 0.9,
    require_agreement: bool = True,
) -> bool:
    """Decide whether an item should get one more worker's answer.

    The rules apply in order:

    1. fewer than ``min_answers`` answers: more are needed;
    2. ``max_answers`` answers or more: no more;
    3. the answers disagree and ``require_agreement`` is set: more are needed;
    4. the largest posterior probability is below ``confidence``: more are needed;
    5. otherwise no more.

    Without a posterior, rule 4 is skipped.

    Parameters
    ----------
    answers_for_item : sequence of Answer
        The answers the item has so far.
    posterior : sequence of float or None
        The item's current consolidated posterior, for example
        ``result.labels[item_id].posterior``.
    min_answers : int, default=2
        Answers every item gets, at least 1.
    max_answers : int, default=5
        Cap on answers per item, at least ``min_answers``.
    confidence : float, default=0.9
        Posterior probability of the top class needed to stop, in ``(0, 1]``.
    require_agreement : bool, default=True
        Whether disagreeing answers alone ask for another answer, whatever the
        posterior.

    Returns
    -------
    bool
        True when the item should get another answer.

    Raises
    ------
    ConfigError
        When a setting is out of range.
    """
    if min_answers < 1:
        raise ConfigError(f"min_answers must be >= 1, got {min_answers!r}")
    if max_answers < min_answers:
        raise ConfigError(
            f"max_answers must be >= min_answers={min_answers!r}, got {max_answers!r}"
        )
    if not 0 < confidence <= 1:
        raise ConfigError(f"confidence must be in (0, 1], got {confidence!r}")

    n_answers = len(answers_for_item)
    if n_answers < min_answers:
        return True
    if n_answers >= max_answers:
        return False

    disagree = len({answer.label for answer in answers_for_item}) > 1
    if require_agreement and disagree:
        return True
    return posterior is not None and max(posterior) < confidence
