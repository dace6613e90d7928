"""Consolidation of several workers' answers per item into one label.

Methods are registered by name in ``CONSOLIDATORS``: ``"majority-vote"`` and
``"dawid-skene"``. Build one with ``get_consolidator(name, **settings)``.
"""

from __future__ import annotations

from labelloop.consolidation.adaptive import needs_more_answers
from labelloop.consolidation.base import (
    Answer,
    ConsolidatedLabel,
    ConsolidationError,
    ConsolidationResult,
    Consolidator,
    WorkerQuality,
)
from labelloop.consolidation.dawid_skene import DawidSkene
from labelloop.consolidation.majority import MajorityVote
from labelloop.registry import Registry

CONSOLIDATORS = Registry[Consolidator]("consolidation method")
CONSOLIDATORS.register(MajorityVote.name)(MajorityVote)
CONSOLIDATORS.register(DawidSkene.name)(DawidSkene)


def get_consolidator(name: str, **kwargs: object) -> Consolidator:
    """Build the consolidation method registered under ``name``.

    Parameters
    ----------
    name : str
        ``"majority-vote"`` or ``"dawid-skene"``, or any name registered later.
    **kwargs
        Settings passed to the method's constructor, such as ``prior_strength``.

    Returns
    -------
    Consolidator

    Raises
    ------
    RegistryError
        When no method is registered under ``name``.
    ConfigError
        When a setting is out of range.
    """
    return CONSOLIDATORS.create(name, **kwargs)


__all__ = [
    "CONSOLIDATORS",
    "Answer",
    "ConsolidatedLabel",
    "ConsolidationError",
    "ConsolidationResult",
    "Consolidator",
    "DawidSkene",
    "MajorityVote",
    "WorkerQuality",
    "get_consolidator",
    "needs_more_answers",
]
