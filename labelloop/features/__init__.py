"""Feature extractors for text and images, with a per-item cache."""

from labelloop.features import image, text
from labelloop.features.base import EXTRACTORS, FeatureExtractor, ItemInput

__all__ = ["EXTRACTORS", "FeatureExtractor", "ItemInput", "image", "text"]
