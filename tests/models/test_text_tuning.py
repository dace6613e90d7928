"""Tests of the fine-tuned MiniLM text classifier on real TREC questions."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.data import data_dir
from labelloop.importers.datasets import TREC_COARSE_CLASSES
from labelloop.models.folds import fold_of
from labelloop.models.text_tuning import (
    FINE_TUNE_FOLDS,
    CrossFittedFineTuner,
    FineTunedTextClassifier,
)


@pytest.fixture(scope="module")
def trec_test_split() -> tuple[list[str], np.ndarray]:
    """Return the 500 questions of TREC's test file and their coarse classes."""
    path = data_dir() / "trec" / "TREC_10.label"
    if not path.exists():
        pytest.skip(
            f"{path} not found; set LABELLOOP_DATA_DIR to the folder of the "
            "labeled datasets"
        )
    texts, classes = [], []
    for line in path.read_text("latin-1").splitlines():
        tag, _, question = line.partition(" ")
        texts.append(question)
        classes.append(TREC_COARSE_CLASSES.index(tag.partition(":")[0]))
    return texts, np.array(classes)


@pytest.fixture(scope="module")
def fitted(
    trec_test_split: tuple[list[str], np.ndarray],
) -> tuple[FineTunedTextClassifier, list[str], np.ndarray]:
    """Fine-tune on 300 questions; return the model and the 200 held out."""
    texts, classes = trec_test_split
    order = np.random.default_rng(0).permutation(len(texts))
    train, held_out = order[:300], order[300:]
    model = FineTunedTextClassifier(
        n_classes=len(TREC_COARSE_CLASSES), epochs=2, min_steps=1, max_length=32
    )
    model.fit([texts[i] for i in train], classes[train])
    return model, [texts[i] for i in held_out], classes[held_out]


def test_fine_tuning_learns_questions(
    fitted: tuple[FineTunedTextClassifier, list[str], np.ndarray],
) -> None:
    model, texts, classes = fitted

    probabilities = model.predict_proba(texts)

    # The most frequent class is 28% of the split, so 70% needs real learning.
    accuracy = float((probabilities.argmax(axis=1) == classes).mean())
    assert accuracy >= 0.7, accuracy
    assert model.train_losses_[-1] < model.train_losses_[0]


def test_probabilities_have_class_columns(
    fitted: tuple[FineTunedTextClassifier, list[str], np.ndarray],
) -> None:
    model, texts, _ = fitted

    probabilities = model.predict_proba(texts[:7], batch_size=3)

    assert probabilities.shape == (7, len(TREC_COARSE_CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert model.predict_proba([]).shape == (0, len(TREC_COARSE_CLASSES))


def test_single_string_rejected(
    fitted: tuple[FineTunedTextClassifier, list[str], np.ndarray],
) -> None:
    model, texts, _ = fitted

    with pytest.raises(TypeError, match="list of texts"):
        model.predict_proba(texts[0])


def test_batches_do_not_change_probabilities(
    fitted: tuple[FineTunedTextClassifier, list[str], np.ndarray],
) -> None:
    model, texts, _ = fitted

    one_batch = model.predict_proba(texts[:20])
    small_batches = model.predict_proba(texts[:20], batch_size=6)

    np.testing.assert_allclose(one_batch, small_batches, atol=1e-5)


def test_small_label_sets_get_more_epochs(
    trec_test_split: tuple[list[str], np.ndarray],
) -> None:
    texts, classes = trec_test_split
    model = FineTunedTextClassifier(
        n_classes=len(TREC_COARSE_CLASSES),
        epochs=1,
        min_steps=6,
        batch_size=4,
        max_length=16,
    )

    model.fit(texts[:8], classes[:8])

    # Two steps per epoch, so six steps take three epochs.
    assert len(model.train_losses_) == 3


def test_predict_before_fit_raises() -> None:
    model = FineTunedTextClassifier(n_classes=3)

    with pytest.raises(RuntimeError, match="call fit"):
        model.predict_proba(["a question"])


@pytest.mark.parametrize(
    ("texts", "labels", "message"),
    [
        (["one", "two"], [0], "2 texts and 1 labels"),
        ([], [], "zero texts"),
        (["one", "two"], [0, 3], r"labels must lie in 0\.\.2"),
    ],
)
def test_fit_rejects_bad_labels(
    texts: list[str], labels: list[int], message: str
) -> None:
    model = FineTunedTextClassifier(n_classes=3)

    with pytest.raises(ValueError, match=message):
        model.fit(texts, np.array(labels, dtype=int))


def test_constructor_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="n_classes"):
        FineTunedTextClassifier(n_classes=1)
    with pytest.raises(ValueError, match="epochs"):
        FineTunedTextClassifier(n_classes=2, epochs=0)


@pytest.fixture(scope="module")
def cross_fitted(
    trec_test_split: tuple[list[str], np.ndarray],
) -> tuple[CrossFittedFineTuner, dict[int, str], dict[int, int], np.ndarray]:
    """Fit two fold classifiers on 80 labeled questions, 50 of them validation."""
    texts, classes = trec_test_split
    by_id = {i: text for i, text in enumerate(texts[:200])}
    labels = {i: int(classes[i]) for i in range(80)}
    validation = np.arange(30, 80)
    tuner = CrossFittedFineTuner(
        n_classes=len(TREC_COARSE_CLASSES), seed=0, epochs=1, min_steps=1, max_length=16
    )
    tuner.fit(by_id, labels, validation)
    return tuner, by_id, labels, validation


def test_validation_items_scored_out_of_fold(
    cross_fitted: tuple[
        CrossFittedFineTuner, dict[int, str], dict[int, int], np.ndarray
    ],
) -> None:
    tuner, texts, labels, validation = cross_fitted
    folds = fold_of(validation, seed=2, n_folds=FINE_TUNE_FOLDS)

    for item_id, fold in zip(validation, folds, strict=True):
        assert int(item_id) not in tuner.training_ids[fold]
    # Query items train both classifiers.
    for training in tuner.training_ids:
        assert set(range(30)) <= training
    assert sum(len(t) for t in tuner.training_ids) == 2 * 30 + len(validation)


def test_scores_come_from_the_item_fold(
    cross_fitted: tuple[
        CrossFittedFineTuner, dict[int, str], dict[int, int], np.ndarray
    ],
) -> None:
    tuner, texts, _, _ = cross_fitted
    ids = np.arange(40, 200)
    folds = fold_of(ids, seed=2, n_folds=FINE_TUNE_FOLDS)

    probabilities = tuner.predict_proba(texts, ids)

    for fold, classifier in enumerate(tuner.classifiers):
        chosen = ids[folds == fold]
        expected = classifier.predict_proba([texts[int(i)] for i in chosen])
        np.testing.assert_allclose(probabilities[folds == fold], expected, atol=1e-5)


def test_refit_waits_for_label_growth(
    cross_fitted: tuple[
        CrossFittedFineTuner, dict[int, str], dict[int, int], np.ndarray
    ],
) -> None:
    tuner, _, labels, _ = cross_fitted

    assert tuner.fits == 1
    assert tuner.fitted_on == len(labels)
    assert not tuner.needs_fit(len(labels) + 10)
    assert tuner.needs_fit(2 * len(labels))


def test_ensemble_averages_folds(
    cross_fitted: tuple[
        CrossFittedFineTuner, dict[int, str], dict[int, int], np.ndarray
    ],
) -> None:
    tuner, texts, _, _ = cross_fitted
    sample = [texts[i] for i in range(5)]

    averaged = tuner.ensemble().predict_proba(sample)

    expected = np.mean([c.predict_proba(sample) for c in tuner.classifiers], axis=0)
    np.testing.assert_allclose(averaged, expected, atol=1e-6)
    with pytest.raises(TypeError, match="list of texts"):
        tuner.ensemble().predict_proba(sample[0])


def test_unfitted_tuner_raises() -> None:
    tuner = CrossFittedFineTuner(n_classes=3, seed=0)

    assert tuner.needs_fit(0)
    with pytest.raises(RuntimeError, match="call fit"):
        tuner.predict_proba({1: "text"}, np.array([1]))
    with pytest.raises(RuntimeError, match="call fit"):
        tuner.ensemble()
