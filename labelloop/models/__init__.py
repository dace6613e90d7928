"""Classifiers trained on human labels over cached item features."""

from labelloop.models.heads import MODELS, Classifier, make_model, tune_model

__all__ = ["MODELS", "Classifier", "make_model", "tune_model"]
