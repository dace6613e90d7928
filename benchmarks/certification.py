"""Measure what certifying a threshold costs, against what the model allows.

For each dataset and validation size ``n``, a uniform random sample of ``n``
items gets its true labels. The job's head is tuned and cross-fitted on it as
the loop does in a job's first round (five folds, each fold's probabilities
spread over the neighbor graph at the tuned strength) and scores the rest of
the dataset. ``--no-spreading`` leaves the head's probabilities as they are.
These coverages of the rest are compared:

- certified: the loop's own first-round rule (``plan_thresholds`` at the error
  budget of a job's first test, with a pilot quarter only where the model's
  confidences predict no passing threshold);
- with a pilot: the same scan with the pilot quarter always choosing the start,
  as in the loop's later rounds;
- best post-hoc bound: the deepest threshold whose Clopper-Pearson bound on all
  ``n`` items is within the target at the same budget, as if the scan could
  start at the best place after seeing the labels. A valid rule of this kind
  reaches it only by chance of its sample, so the gap to it is the price of
  choosing the start without labels;
- oracle: the largest share whose true error is within the target, the true
  labels of the rest known. The gap between it and the post-hoc bound is the
  price of a bound on ``n`` items.

The features come from the job databases that ``benchmarks/jobs.py`` left under
``benchmarks/.work``; run it first on the same datasets.

Usage::

    python benchmarks/certification.py --datasets sms_spam trec ag_news --seeds 6
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from labelloop.certify import (
    clopper_pearson_upper,
    confidences_predict_pass,
    min_items_to_certify,
    plan_thresholds,
    round_delta,
)
from labelloop.loop import PILOT_FOLDS, PILOT_SEED_STEP, fold_of
from labelloop.models import make_model, tune_model
from labelloop.models.propagation import NeighborGraph, tune_alpha

sys.path.insert(0, str(Path(__file__).resolve().parent))
from confidence import load_features  # noqa: E402
from jobs import coverage  # noqa: E402
from record import publish  # noqa: E402

FOLDS = 5


def cross_fit(
    features: np.ndarray,
    labels: np.ndarray,
    validation: np.ndarray,
    rest: np.ndarray,
    *,
    seed: int,
    graph: NeighborGraph | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return out-of-fold probabilities of ``validation`` and of ``rest``.

    With a ``graph``, each fold's probabilities are spread over it, the
    fold's training items fixed at their labels.
    """
    n_classes = int(labels.max()) + 1
    params = tune_model(
        "logistic-regression",
        n_classes=n_classes,
        random_state=seed,
        features=features[validation],
        labels=labels[validation],
    )

    def fit_predict(rows: np.ndarray) -> np.ndarray:
        """Train on ``validation[rows]`` and return probabilities of every item."""
        model = make_model(
            "logistic-regression", n_classes=n_classes, random_state=seed, **params
        )
        model.fit(features[validation[rows]], labels[validation[rows]])
        return model.predict_proba(features)

    alpha = (
        tune_alpha(
            graph, fit_predict, validation, labels[validation], random_state=seed
        )
        if graph is not None
        else 0.0
    )
    val_folds = fold_of(validation, seed=seed, n_folds=FOLDS)
    rest_folds = fold_of(rest, seed=seed, n_folds=FOLDS)
    val_proba = np.zeros((len(validation), n_classes))
    rest_proba = np.zeros((len(rest), n_classes))
    for fold in range(FOLDS):
        train = np.flatnonzero(val_folds != fold)
        probabilities = fit_predict(train)
        if graph is not None:
            probabilities = graph.spread(
                probabilities,
                validation[train],
                labels[validation[train]],
                alpha=alpha,
            )
        val_proba[val_folds == fold] = probabilities[validation[val_folds == fold]]
        rest_proba[rest_folds == fold] = probabilities[rest[rest_folds == fold]]
    return val_proba, rest_proba


def post_hoc_rank(
    confidences: np.ndarray, correct: np.ndarray, *, max_error: float, delta: float
) -> int:
    """Return the deepest rank whose bound is within ``max_error``, or 0."""
    order = np.argsort(-confidences, kind="stable")
    errors = np.cumsum(~correct[order])
    best = 0
    for rank in range(min_items_to_certify(max_error, delta), len(order) + 1):
        if clopper_pearson_upper(int(errors[rank - 1]), rank, delta) <= max_error:
            best = rank
    return best


def measure(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    n: int,
    seed: int,
    target: float,
    graph: NeighborGraph | None,
) -> dict[str, float]:
    """Return the three coverages of one sample, and the certified labels' error."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    validation, rest = np.sort(order[:n]), np.sort(order[n:])
    val_proba, rest_proba = cross_fit(
        features, labels, validation, rest, seed=seed, graph=graph
    )
    val_conf, val_pred = val_proba.max(axis=1), val_proba.argmax(axis=1)
    rest_conf, rest_pred = rest_proba.max(axis=1), rest_proba.argmax(axis=1)
    val_correct = val_pred == labels[validation]
    max_error = 1.0 - target
    delta = round_delta(1.0 - 0.95, 1)
    # The pilot of a job's first round.
    pilot_seed = seed + 1 + PILOT_SEED_STEP
    pilot = fold_of(validation, seed=pilot_seed, n_folds=PILOT_FOLDS) == 0
    trusted = confidences_predict_pass(val_conf, max_error=max_error, delta=delta)
    plans = {}
    for name, val_pilot in (("loop", None if trusted else pilot), ("pilot", pilot)):
        plans[name] = plan_thresholds(
            val_predicted=val_pred,
            val_confidences=val_conf,
            val_correct=val_correct,
            pool_predicted=rest_pred,
            pool_confidences=rest_conf,
            n_classes=int(labels.max()) + 1,
            max_error=max_error,
            delta=delta,
            val_pilot=val_pilot,
        )
    plan = plans["loop"]
    covered = plan.covers(rest_pred, rest_conf)

    rank = post_hoc_rank(val_conf, val_correct, max_error=max_error, delta=delta)
    post_hoc = (
        float((rest_conf >= np.sort(val_conf)[::-1][rank - 1]).mean()) if rank else 0.0
    )
    wrong = rest_pred != labels[rest]
    return {
        "tested": float(any(r.tested for r in plan.results.values())),
        "certified": float(covered.mean()),
        "with_pilot": float(plans["pilot"].covers(rest_pred, rest_conf).mean()),
        "error": float(wrong[covered].mean()) if covered.any() else np.nan,
        "post_hoc": post_hoc,
        "oracle": coverage(rest_conf, wrong, max_error),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets", nargs="+", default=["sms_spam", "trec", "ag_news"]
    )
    parser.add_argument("--sizes", nargs="+", type=int, default=[300, 600, 1200, 2400])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument(
        "--no-spreading",
        dest="spreading",
        action="store_false",
        help="Score with the head alone, without spreading over the neighbor graph.",
    )
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)

    rows = []
    for dataset in args.datasets:
        features, labels, extractor = load_features(dataset)
        graph = NeighborGraph.build(features) if args.spreading else None
        for n in args.sizes:
            if n >= len(labels) // 2:
                continue
            runs = [
                measure(
                    features,
                    labels,
                    n=n,
                    seed=seed,
                    target=args.target,
                    graph=graph,
                )
                for seed in range(args.seeds)
            ]

            def mean(key: str, runs: list[dict[str, float]] = runs) -> str:
                return f"{100 * np.mean([run[key] for run in runs]):.1f}%"

            certified = [run for run in runs if run["certified"] > 0]
            error = (
                f"{100 * max(run['error'] for run in certified):.2f}%"
                if certified
                else "n/a"
            )
            rows.append(
                f"| {dataset} | `{extractor}` | {n} | "
                f"{int(sum(run['tested'] for run in runs))} of {len(runs)} | "
                f"{len(certified)} of {len(runs)} | {mean('certified')} | "
                f"{error} | {mean('with_pilot')} | {mean('post_hoc')} | "
                f"{mean('oracle')} |"
            )
            print(rows[-1], flush=True)

    publish(
        "certification.py",
        argv,
        "A uniform random sample of n items gets its true labels; the head is "
        + "tuned and cross-fitted on it as in a job's first round and scores the "
        + "rest of the dataset"
        + (
            ", its probabilities spread over the neighbor graph at the tuned "
            + "strength. "
            if args.spreading
            else ", without spreading over the neighbor graph. "
        )
        + "Coverages are shares of the rest, means over "
        + f"{args.seeds} seeds, at target accuracy {args.target}. Certified is the "
        + "loop's first-round rule at the error budget of a job's first test; "
        + "with a pilot, the same scan with a pilot quarter choosing its start "
        + "whatever the confidences predict, as later rounds do. The best "
        + "post-hoc bound chooses the deepest threshold whose bound on all n "
        + "items is within the target after seeing the labels: a reference that "
        + "a valid rule reaches only by chance of its sample. The oracle knows "
        + "the true labels of the rest.\n\n"
        + "| dataset | features | validation items | tested | certified | "
        + "certified coverage | worst certified error | with a pilot | "
        + "best post-hoc bound | oracle |\n|---|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n",
        section="certification",
        title="The price of certifying",
        record=args.record,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
