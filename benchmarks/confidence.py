"""Compare confidence functions by the coverage they allow at a fixed error.

A threshold on a confidence score machine-labels the items above it, so what
matters is how well the score ranks right predictions above wrong ones. For
each dataset the job's head, tuned as the loop tunes it, trains on a random
share of the items and scores the rest. A calibration split of the same size
fits the temperature. With the true labels known, the
coverage of a function at error ``e`` is the largest share of the scored items
whose most confident part has error at most ``e``: what a perfect threshold on
that score could machine-label.

The functions compared:

- the top class probability;
- the same after temperature scaling fitted on the calibration split;
- the margin between the two top probabilities;
- the negative entropy;
- the top probability of the mean of five heads trained on bootstrap samples
  of the training split.

The features come from the job databases that ``benchmarks/jobs.py`` left under
``benchmarks/.work``; run it first on the same datasets.

Usage::

    python benchmarks/confidence.py --datasets mnist ag_news cifar10 --seeds 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from labelloop.models import make_model, tune_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import coverage, job_features  # noqa: E402
from record import publish  # noqa: E402

WORK = Path(__file__).resolve().parent / ".work"
FUNCTIONS = (
    "top probability",
    "top probability, temperature-scaled",
    "margin",
    "negative entropy",
    "bootstrap ensemble of 5",
)
ERRORS = (0.03, 0.05)


def load_features(dataset: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Return the cached features, true classes and feature name of a dataset."""
    for job_file in sorted((WORK / dataset).glob("*-seed-*/job.yaml")):
        if (job_file.parent / "out" / "job.db").exists():
            found = job_features(job_file)
            if found is not None:
                return found
    raise SystemExit(
        f"no cached features for {dataset} under {WORK}; run "
        f"`python benchmarks/jobs.py --datasets {dataset}` first"
    )


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Return the temperature that minimizes the log-loss of ``logits``."""

    def loss(temperature: float) -> float:
        scaled = log_softmax(logits / temperature, axis=1)
        return float(-scaled[np.arange(len(labels)), labels].mean())

    return float(minimize_scalar(loss, bounds=(0.05, 20.0), method="bounded").x)


def compare(
    features: np.ndarray, labels: np.ndarray, *, share: float, seed: int
) -> dict[str, dict[float, float]]:
    """Return each function's coverage at each error in ``ERRORS`` for one split."""
    n_classes = int(labels.max()) + 1
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    n_train = int(share * len(labels))
    train = order[:n_train]
    calibration = order[n_train : 2 * n_train]
    test = order[2 * n_train :]

    def trained(rows: np.ndarray, **params: float):
        model = make_model(
            "logistic-regression", n_classes=n_classes, random_state=seed, **params
        )
        return model.fit(features[rows], labels[rows])

    params = tune_model(
        "logistic-regression",
        n_classes=n_classes,
        random_state=seed,
        features=features[train],
        labels=labels[train],
    )
    head = trained(train, **params)
    probabilities = head.predict_proba(features[test])
    logits = np.log(np.clip(probabilities, 1e-12, 1.0))
    calibration_logits = np.log(
        np.clip(head.predict_proba(features[calibration]), 1e-12, 1.0)
    )
    temperature = fit_temperature(calibration_logits, labels[calibration])
    scaled = softmax(logits / temperature, axis=1)
    ranked = np.sort(probabilities, axis=1)
    members = [
        trained(rng.choice(train, size=len(train), replace=True), **params)
        for _ in range(5)
    ]
    ensemble = np.mean([member.predict_proba(features[test]) for member in members], 0)

    predictions = {
        "top probability": (probabilities, probabilities.max(axis=1)),
        "top probability, temperature-scaled": (scaled, scaled.max(axis=1)),
        "margin": (probabilities, ranked[:, -1] - ranked[:, -2]),
        "negative entropy": (
            probabilities,
            (probabilities * np.log(np.clip(probabilities, 1e-12, 1.0))).sum(axis=1),
        ),
        "bootstrap ensemble of 5": (ensemble, ensemble.max(axis=1)),
    }
    results = {}
    for name, (distribution, score) in predictions.items():
        wrong = distribution.argmax(axis=1) != labels[test]
        results[name] = {error: coverage(score, wrong, error) for error in ERRORS}
    results["temperature"] = {0.0: temperature}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets", nargs="+", default=["mnist", "ag_news", "cifar10"]
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--share",
        type=float,
        default=0.2,
        help="Share of the items that trains the head (and again that calibrates).",
    )
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)

    header = (
        "| dataset | features | confidence function | "
        + " | ".join(f"coverage at {error:.0%} error" for error in ERRORS)
        + " |\n|---|---|---|"
        + "---|" * len(ERRORS)
        + "\n"
    )
    rows = []
    temperatures = []
    for dataset in args.datasets:
        features, labels, extractor = load_features(dataset)
        runs = [
            compare(features, labels, share=args.share, seed=seed)
            for seed in range(args.seeds)
        ]
        temperatures.append(
            f"{dataset} {np.mean([run['temperature'][0.0] for run in runs]):.2f}"
        )
        for name in FUNCTIONS:
            cells = " | ".join(
                f"{100 * np.mean([run[name][error] for run in runs]):.1f}%"
                for error in ERRORS
            )
            rows.append(f"| {dataset} | `{extractor}` | {name} | {cells} |")
        print(rows[-len(FUNCTIONS) :], flush=True)

    publish(
        "confidence.py",
        argv,
        f"The head trains on {args.share:.0%} of each dataset, a further "
        + f"{args.share:.0%} fits the temperature, and the rest is scored. "
        + "Coverage is the largest share of the scored items that a perfect "
        + "threshold on each score could machine-label at that error, the true "
        + f"labels known; means over {args.seeds} seeds. Certification depends "
        + "only on how a score ranks the items, so a function that does not "
        + "raise coverage here cannot raise certified coverage either. Mean "
        + "fitted temperatures: "
        + ", ".join(temperatures)
        + ".\n\n"
        + header
        + "\n".join(rows)
        + "\n",
        section="confidence",
        title="Confidence functions",
        record=args.record,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
