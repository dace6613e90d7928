"""Dawid-Skene checked against a textbook EM and against numbers worked by hand."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from labelloop.consolidation import Answer, DawidSkene


def _textbook_em(
    answers: list[tuple[int, str, int]],
    n_classes: int,
    *,
    tol: float = 1e-12,
    max_iter: int = 5000,
) -> tuple[dict[int, list[float]], dict[str, list[list[float]]]]:
    """Fit Dawid-Skene by plain maximum-likelihood EM, with loops and no smoothing.

    Starts from the vote shares, alternates M-step and E-step until no posterior
    moves by ``tol``, then runs a last M-step. Returns posteriors per item and
    confusion matrices per worker.
    """
    items = sorted({item for item, _, _ in answers})
    workers = sorted({worker for _, worker, _ in answers})

    posterior = {}
    for item in items:
        votes = [0.0] * n_classes
        for answered_item, _, label in answers:
            if answered_item == item:
                votes[label] += 1.0
        total = sum(votes)
        posterior[item] = [vote / total for vote in votes]

    def m_step(posterior):
        prior = [
            sum(posterior[item][k] for item in items) / len(items)
            for k in range(n_classes)
        ]
        confusion = {}
        for worker in workers:
            matrix = []
            for k in range(n_classes):
                row = [0.0] * n_classes
                for item, answered_by, label in answers:
                    if answered_by == worker:
                        row[label] += posterior[item][k]
                total = sum(row)
                matrix.append([value / total for value in row])
            confusion[worker] = matrix
        return prior, confusion

    for _ in range(max_iter):
        prior, confusion = m_step(posterior)
        updated = {}
        for item in items:
            joint = list(prior)
            for answered_item, worker, label in answers:
                if answered_item == item:
                    for k in range(n_classes):
                        joint[k] *= confusion[worker][k][label]
            total = sum(joint)
            updated[item] = [value / total for value in joint]
        change = max(
            abs(updated[item][k] - posterior[item][k])
            for item in items
            for k in range(n_classes)
        )
        posterior = updated
        if change < tol:
            break
    _, confusion = m_step(posterior)
    return posterior, confusion


def test_unsmoothed_fit_matches_textbook_em():
    rng = np.random.default_rng(21)
    n_items, n_classes = 60, 3
    worker_accuracy = {"a": 0.9, "b": 0.75, "c": 0.6, "d": 0.5}
    truth = rng.integers(0, n_classes, size=n_items)
    raw = []
    for item in range(n_items):
        for worker in rng.choice(sorted(worker_accuracy), size=3, replace=False):
            if rng.random() < worker_accuracy[worker]:
                label = int(truth[item])
            else:
                label = int((truth[item] + rng.integers(1, n_classes)) % n_classes)
            raw.append((item, str(worker), label))

    expected_posterior, expected_confusion = _textbook_em(raw, n_classes)

    model = DawidSkene(
        prior_strength=0.0,
        class_prior_strength=0.0,
        init_smoothing=0.0,
        tol=1e-12,
        max_iter=5000,
    )
    result = model.consolidate(
        [Answer(*answer) for answer in raw],
        n_classes=n_classes,
        rng=np.random.default_rng(0),
    )
    assert result.converged
    for item, posterior in expected_posterior.items():
        assert np.allclose(result.labels[item].posterior, posterior, atol=1e-6)
    for worker, confusion in expected_confusion.items():
        assert np.allclose(result.workers[worker].confusion, confusion, atol=1e-6)


# Hand-worked case: 2 classes, workers a, b, c, 4 items. The start posteriors are
# one-hot (items 0 and 1 in class 0, items 2 and 3 in class 1), so the first M-step
# only counts answers. The prior adds 1.5 pseudo-answers on the diagonal and 0.5
# off it to each row (strength 2, accuracy 0.75); the class prior is 1/2 each.
#
#   worker a: class 0 -> answers 0, 0; class 1 -> 1, 1
#             rows (2 + 1.5, 0.5) / 4 = (7/8, 1/8) and (1/8, 7/8)
#   worker b: class 0 -> answers 0, 1; class 1 -> 1, 1
#             rows (1 + 1.5, 1 + 0.5) / 4 = (5/8, 3/8) and (1/8, 7/8)
#   worker c: class 0 -> answers 0, 0; class 1 -> 0, 1
#             rows (7/8, 1/8) and (1 + 0.5, 1 + 1.5) / 4 = (3/8, 5/8)
HAND_ANSWERS = {
    0: {"a": 0, "b": 0, "c": 0},
    1: {"a": 0, "b": 1, "c": 0},
    2: {"a": 1, "b": 1, "c": 0},
    3: {"a": 1, "b": 1, "c": 1},
}
HAND_START = {0: (1.0, 0.0), 1: (1.0, 0.0), 2: (0.0, 1.0), 3: (0.0, 1.0)}


def _hand_answers() -> list[Answer]:
    return [
        Answer(item, worker, label)
        for item, by_worker in HAND_ANSWERS.items()
        for worker, label in by_worker.items()
    ]


def _one_step_model() -> DawidSkene:
    return DawidSkene(
        prior_strength=2.0, prior_accuracy=0.75, class_prior_strength=0.0, max_iter=1
    )


def test_one_em_step_matches_hand_numbers():
    # Posterior of class k is proportional to the product of the workers' row-k
    # entries at their answers, because the class prior is uniform:
    #   item 0: 7/8 * 5/8 * 7/8 = 245/512 vs 1/8 * 1/8 * 3/8 = 3/512
    #   item 1: 7/8 * 3/8 * 7/8 = 147/512 vs 1/8 * 7/8 * 3/8 = 21/512
    #   item 2: 1/8 * 3/8 * 7/8 = 21/512 vs 7/8 * 7/8 * 3/8 = 147/512
    #   item 3: 1/8 * 3/8 * 1/8 = 3/512 vs 7/8 * 7/8 * 5/8 = 245/512
    expected = {
        0: Fraction(245, 248),
        1: Fraction(147, 168),
        2: Fraction(21, 168),
        3: Fraction(3, 248),
    }
    result = _one_step_model().consolidate(
        _hand_answers(),
        n_classes=2,
        rng=np.random.default_rng(0),
        initial_posteriors=HAND_START,
    )
    assert result.n_iterations == 1
    assert result.class_prior == pytest.approx((0.5, 0.5))
    for item, class_zero in expected.items():
        posterior = result.labels[item].posterior
        assert posterior[0] == pytest.approx(float(class_zero), abs=1e-12)
        assert posterior[1] == pytest.approx(float(1 - class_zero), abs=1e-12)


def test_worker_weight_powers_likelihood_by_hand():
    # Weight 2 on worker b squares its factor for item 1 (a=0, b=1, c=0):
    #   class 0: 7/8 * (3/8)^2 * 7/8 = 441/4096, class 1: 1/8 * (7/8)^2 * 3/8 =
    #   147/4096, so the posterior of class 0 is 441/588 = 3/4.
    result = _one_step_model().consolidate(
        _hand_answers(),
        n_classes=2,
        rng=np.random.default_rng(0),
        initial_posteriors=HAND_START,
        worker_weights={"b": 2.0},
    )
    assert result.labels[1].posterior[0] == pytest.approx(0.75, abs=1e-12)
