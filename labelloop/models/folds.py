"""Seeded assignment of items to folds by their id."""

from __future__ import annotations

import numpy as np


def fold_of(item_ids: np.ndarray, *, seed: int, n_folds: int) -> np.ndarray:
    """Assign items to ``n_folds`` folds by a seeded hash of their id.

    The hash is SplitMix64's finalizer, so every bit of the id and the seed
    reaches every bit of the result. Folds of a power of two then do not follow
    the low bits of the ids: with a plain multiplicative hash, four folds
    were every fourth id, and two folds of one seed nested inside four folds
    of another.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be at least 1, got {n_folds}")
    with np.errstate(over="ignore"):
        mixed = np.asarray(item_ids, dtype=np.uint64) + np.uint64(
            (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64
        )
        mixed = (mixed ^ (mixed >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        mixed = (mixed ^ (mixed >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        mixed = mixed ^ (mixed >> np.uint64(31))
    return (mixed % np.uint64(n_folds)).astype(int)
