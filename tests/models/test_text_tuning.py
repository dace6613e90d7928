"""Tests of the fine-tuned MiniLM text classifier on real TREC questions."""

from __future__ import annotations

import copy
from pathlib import Path

import joblib
import numpy as np
import pytest

from labelloop.data import data_dir
from labelloop.features.text import load_minilm
from labelloop.importers.datasets import TREC_COARSE_CLASSES
from labelloop.models.folds import fold_of
from labelloop.models.text_tuning import (
    FINE_TUNE_FOLDS,
    CrossFittedFineTuner,
    FineTunedTextClassifier,
    FrozenLayers,
    _embed_kept_states,
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
    """Fine-tune the whole encoder on 300 questions; return it and 200 held out."""
    texts, classes = trec_test_split
    order = np.random.default_rng(0).permutation(len(texts))
    train, held_out = order[:300], order[300:]
    model = FineTunedTextClassifier(
        n_classes=len(TREC_COARSE_CLASSES),
        epochs=2,
        min_steps=1,
        max_length=32,
        trainable_layers=None,
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


def test_fit_of_one_step(
    trec_test_split: tuple[list[str], np.ndarray],
) -> None:
    texts, classes = trec_test_split
    model = FineTunedTextClassifier(
        n_classes=len(TREC_COARSE_CLASSES), epochs=1, min_steps=1, max_length=16
    )

    # Three texts make one batch: warm-up and decay share the only step.
    model.fit(texts[:3], classes[:3])

    assert len(model.train_losses_) == 1
    assert model.predict_proba(texts[3:5]).shape == (2, len(TREC_COARSE_CLASSES))


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


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@pytest.mark.parametrize("trainable", [1, 6])
def test_frozen_states_match_shipped_embedding(
    trec_test_split: tuple[list[str], np.ndarray], trainable: int
) -> None:
    import torch

    texts = trec_test_split[0][:12]
    frozen = FrozenLayers(trainable_layers=trainable, max_length=128)
    top = frozen.top_layers().eval()

    with torch.no_grad():
        pooled = _embed_kept_states(top, frozen.states(texts)).numpy()

    # Untrained top layers over the kept states give the sentence embedding the
    # package ships, up to the half precision the states are kept in.
    shipped = load_minilm().encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(_unit_rows(pooled), _unit_rows(shipped), atol=1e-3)


def test_frozen_states_are_kept_once_per_text(
    trec_test_split: tuple[list[str], np.ndarray],
) -> None:
    texts = trec_test_split[0][:5]
    frozen = FrozenLayers(trainable_layers=2, max_length=16)

    first = frozen.states([*texts, texts[0]])
    second = frozen.states(texts[::-1])

    assert first[0] is first[-1]
    assert all(a is b for a, b in zip(first[:5], second[::-1], strict=True))
    assert all(state.shape[1] == 384 for state in first)
    assert all(len(state) <= 16 for state in first)
    assert frozen.frozen_count == 4


def test_frozen_layers_leave_loaded_encoder_trainable() -> None:
    FrozenLayers(trainable_layers=2, max_length=16)

    encoder = load_minilm()[0].auto_model

    assert all(parameter.requires_grad for parameter in encoder.parameters())


def test_top_layers_learn_lower_stay_shipped(
    trec_test_split: tuple[list[str], np.ndarray],
) -> None:
    texts, classes = trec_test_split
    order = np.random.default_rng(0).permutation(len(texts))
    train, held_out = order[:300], order[300:]
    frozen = FrozenLayers(trainable_layers=2, max_length=32)
    before = {k: v.clone() for k, v in frozen.encoder.state_dict().items()}
    model = FineTunedTextClassifier(
        n_classes=len(TREC_COARSE_CLASSES),
        epochs=3,
        min_steps=1,
        max_length=32,
        trainable_layers=2,
        frozen=frozen,
    )

    model.fit([texts[i] for i in train], classes[train])
    probabilities = model.predict_proba([texts[i] for i in held_out])

    accuracy = float((probabilities.argmax(axis=1) == classes[held_out]).mean())
    assert accuracy >= 0.7, accuracy
    after = frozen.encoder.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # The trained copies moved away from the shipped top layers.
    shipped_top = frozen.top_layers()[0].output.dense.weight.detach()
    assert not np.allclose(model.encoder_[0].output.dense.weight.detach(), shipped_top)


def test_saved_classifier_drops_kept_states(
    tmp_path: Path, trec_test_split: tuple[list[str], np.ndarray]
) -> None:
    texts, classes = trec_test_split
    model = FineTunedTextClassifier(
        n_classes=len(TREC_COARSE_CLASSES),
        epochs=1,
        min_steps=1,
        max_length=16,
        trainable_layers=1,
    )
    model.fit(texts[:40], classes[:40])
    expected = model.predict_proba(texts[40:50])
    joblib.dump(model, tmp_path / "model.joblib")

    loaded = joblib.load(tmp_path / "model.joblib")

    assert loaded.frozen_._states == {}
    # The shipped top layer only starts new classifiers, so it is not saved.
    assert len(loaded.frozen_.encoder.encoder.layer) == 5
    with pytest.raises(RuntimeError, match="create a new FrozenLayers"):
        loaded.frozen_.top_layers()
    np.testing.assert_allclose(loaded.predict_proba(texts[40:50]), expected, atol=1e-5)


def test_frozen_layers_load_older_state(
    trec_test_split: tuple[list[str], np.ndarray],
) -> None:
    texts = trec_test_split[0][:4]
    frozen = FrozenLayers(trainable_layers=2, max_length=16)
    expected = frozen.states(texts)
    # The state of a model saved when the encoder kept all six layers.
    state = frozen.__getstate__()
    del state["_shipped_top"]
    state["encoder"] = copy.deepcopy(state["encoder"])
    state["encoder"].encoder.layer.extend(copy.deepcopy(frozen.top_layers()))

    loaded = FrozenLayers.__new__(FrozenLayers)
    loaded.__setstate__(state)

    assert len(loaded.encoder.encoder.layer) == 4
    for got, want in zip(loaded.states(texts), expected, strict=True):
        np.testing.assert_allclose(got.float(), want.float(), atol=1e-3)


def test_frozen_layers_reject_bad_settings() -> None:
    with pytest.raises(ValueError, match=r"trainable_layers must be in 1\.\.6"):
        FrozenLayers(trainable_layers=7, max_length=16)
    frozen = FrozenLayers(trainable_layers=2, max_length=16)
    with pytest.raises(ValueError, match="frozen leaves 2 layers to train"):
        FineTunedTextClassifier(n_classes=3, trainable_layers=3, frozen=frozen)
    with pytest.raises(ValueError, match="frozen leaves 2 layers to train"):
        FineTunedTextClassifier(n_classes=3, frozen=frozen)
    with pytest.raises(ValueError, match="frozen keeps 16 tokens per text"):
        FineTunedTextClassifier(n_classes=3, trainable_layers=2, frozen=frozen)
    with pytest.raises(ValueError, match="trainable_layers must be at least 1"):
        FineTunedTextClassifier(n_classes=3, trainable_layers=0)


def test_cross_fitted_classifiers_share_frozen_layers(
    trec_test_split: tuple[list[str], np.ndarray],
) -> None:
    texts, classes = trec_test_split
    by_id = dict(enumerate(texts[:60]))
    labels = {i: int(classes[i]) for i in range(40)}
    tuner = CrossFittedFineTuner(
        n_classes=len(TREC_COARSE_CLASSES),
        seed=0,
        epochs=1,
        min_steps=1,
        max_length=16,
        trainable_layers=1,
    )

    tuner.fit(by_id, labels, np.arange(20, 40))
    probabilities = tuner.predict_proba(by_id, np.arange(60))

    assert tuner.frozen is not None
    assert all(c.frozen_ is tuner.frozen for c in tuner.classifiers)
    assert len(tuner.frozen._states) == 60
    assert probabilities.shape == (60, len(TREC_COARSE_CLASSES))
