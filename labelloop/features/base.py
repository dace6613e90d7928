"""Feature extractors: items into fixed-length vectors, computed once and cached."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from labelloop.registry import Registry

logger = logging.getLogger(__name__)

#: ``progress(step, completed, total)``, called as long steps advance.
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ItemInput:
    """The part of an item that an extractor reads: a file path or an inline text."""

    item_id: int
    source_path: str | None
    text: str | None


class ItemFailure(Exception):
    """One item could not be turned into features; it fails alone."""

    def __init__(self, item_id: int, reason: str) -> None:
        super().__init__(reason)
        self.item_id = item_id
        self.reason = reason


class FeatureExtractor(Protocol):
    """A deterministic map from items to float32 vectors.

    ``name`` identifies the extractor and its settings in the feature cache, so
    two settings never share cached vectors.
    """

    name: str

    def transform(
        self, items: Sequence[ItemInput]
    ) -> tuple[np.ndarray, list[ItemFailure]]:
        """Return one row per item that succeeded, in order, and the failures."""
        ...


EXTRACTORS: Registry[FeatureExtractor] = Registry("feature extractor")
