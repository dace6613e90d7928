"""Corpus-level TF-IDF topics appended to text embeddings."""

from __future__ import annotations

import numpy as np

from labelloop.features.text import CorpusTopics

QUESTIONS = [
    "How many people live in Tokyo ?",
    "How many moons does Mars have ?",
    "How many legs does a spider have ?",
    "Who wrote the novel Moby Dick ?",
    "Who painted the Mona Lisa ?",
    "Who was the first person on the moon ?",
    "Where is the Eiffel Tower ?",
    "Where is Mount Kilimanjaro ?",
    "Where do penguins live ?",
    "What is the boiling point of water ?",
    "What is the capital of Peru ?",
    "What does a spider eat ?",
]


def test_topics_are_unit_rows_and_repeat_exactly() -> None:
    first = CorpusTopics(n_components=4).fit_transform(QUESTIONS)
    second = CorpusTopics(n_components=4).fit_transform(QUESTIONS)
    assert first.shape == (len(QUESTIONS), 4)
    assert first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    # A resumed job learns the topics again and must get the same columns.
    assert np.array_equal(first, second)


def test_topics_separate_question_words() -> None:
    topics = CorpusTopics(n_components=4)
    features = topics.fit_transform(QUESTIONS)
    similarity = features @ features.T
    # "How many" questions sit closer to each other than to "who" questions.
    assert similarity[0, 1] > similarity[0, 3]
    assert similarity[3, 4] > similarity[3, 7]


def test_new_texts_use_the_learned_topics() -> None:
    topics = CorpusTopics(n_components=4)
    fitted = topics.fit_transform(QUESTIONS)
    again = topics.transform(QUESTIONS[:3])
    assert np.allclose(again, fitted[:3], atol=1e-5)
    assert topics.transform(["How many stars are there ?"]).shape == (1, 4)


def test_corpus_too_small_gives_no_columns() -> None:
    topics = CorpusTopics()
    assert topics.fit_transform(["one text", "another"]).shape == (2, 0)
    assert topics.transform(["new text"]).shape == (1, 0)
    # Fewer texts than requested dimensions caps the dimensions.
    assert CorpusTopics(n_components=128).fit_transform(QUESTIONS).shape[1] < 12
