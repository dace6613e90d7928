"""Measure what fine-tuning the text encoder on the human labels buys.

For each dataset, label budget ``n`` and seed, a uniform random sample of ``n``
items gets its true labels, and the models learn from them and score the rest:

- frozen: the loop's text features (MiniLM embeddings and the corpus topics)
  with its logistic head, tuned by cross-validation as the loop tunes it;
- fine-tuned: ``FineTunedTextClassifier``, all-MiniLM-L6-v2 trained end to end
  with a linear head, or only its top layers (``--trainable-layers``), whose
  inputs, the frozen layers' token states, are computed once per dataset.

Each model is scored by its accuracy on the rest and by its coverage at the
target: the largest share of the rest, taken by confidence, whose true error is
within ``1 - target``. That is what a perfect threshold could machine-label, so
it bounds what any certified threshold can reach on that model. The time
columns are wall-clock seconds of training (with the head's tuning) and of
scoring the rest on this machine's CPU.

The features and texts come from the job databases that ``benchmarks/jobs.py``
left under ``benchmarks/.work``; run it first on the same datasets.

Usage::

    python benchmarks/fine_tuning.py --datasets trec ag_news --sizes 600 1200 --seeds 2
    python benchmarks/fine_tuning.py --trainable-layers all 3 2 1
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

from labelloop.config import load_job_config
from labelloop.models import make_model, tune_model
from labelloop.models.text_tuning import (
    TOP_LAYERS_LR,
    WHOLE_ENCODER_LR,
    FineTunedTextClassifier,
    FrozenLayers,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import coverage, job_features  # noqa: E402
from record import publish  # noqa: E402

WORK = Path(__file__).resolve().parent / ".work"


def load_texts_and_features(
    dataset: str,
) -> tuple[list[str], np.ndarray, np.ndarray, str]:
    """Return the texts, cached features, true classes and feature name of a dataset.

    The rows follow ``job_features``: items in id order that are valid, have a
    feature vector and a true label among the job's categories.
    """
    for job_file in sorted((WORK / dataset).glob("*-seed-*/job.yaml")):
        database = job_file.parent / "out" / "job.db"
        if not database.exists():
            continue
        found = job_features(job_file)
        if found is None:
            continue
        features, labels, name = found
        config = load_job_config(job_file)
        key = config.workforce.true_label_key
        with sqlite3.connect(database) as connection:
            with_vectors = {
                row[0] for row in connection.execute("select item_id from features")
            }
            rows = connection.execute(
                "select id, record, text from items where status = 'ok' order by id"
            ).fetchall()
        texts = [
            text
            for item_id, record, text in rows
            if item_id in with_vectors
            and record
            and json.loads(record).get(key) in config.label_categories
        ]
        if len(texts) != len(labels):
            raise SystemExit(
                f"{database}: {len(texts)} texts for {len(labels)} feature rows; "
                "delete the job's folder and rerun benchmarks/jobs.py"
            )
        return texts, features, labels, name
    raise SystemExit(
        f"no cached text job for {dataset} under {WORK}; run "
        f"`python benchmarks/jobs.py --datasets {dataset}` first"
    )


def measure(
    texts: list[str],
    features: np.ndarray,
    labels: np.ndarray,
    *,
    n: int,
    seed: int,
    target: float,
    epochs: int,
    max_length: int,
    encoder_lr: float | None,
    frozen: dict[str, FrozenLayers | None],
) -> dict[str, dict[str, float]]:
    """Return accuracy, coverage and times of each model on one sample.

    ``frozen`` maps a name for each fine-tuned variant to the frozen layers it
    shares, or None to train the whole encoder.
    """
    n_classes = int(labels.max()) + 1
    order = np.random.default_rng(seed).permutation(len(labels))
    train, rest = np.sort(order[:n]), np.sort(order[n:])
    results: dict[str, dict[str, float]] = {}

    def score(name: str, proba: np.ndarray, fit_s: float, predict_s: float) -> None:
        wrong = proba.argmax(axis=1) != labels[rest]
        results[name] = {
            "accuracy": float(1.0 - wrong.mean()),
            "coverage": coverage(proba.max(axis=1), wrong, 1.0 - target),
            "fit_s": fit_s,
            "predict_s": predict_s,
        }

    started = time.perf_counter()
    params = tune_model(
        "logistic-regression",
        n_classes=n_classes,
        random_state=seed,
        features=features[train],
        labels=labels[train],
    )
    head = make_model(
        "logistic-regression", n_classes=n_classes, random_state=seed, **params
    )
    head.fit(features[train], labels[train])
    fitted = time.perf_counter()
    proba = head.predict_proba(features[rest])
    score("frozen", proba, fitted - started, time.perf_counter() - fitted)

    for name, layers in frozen.items():
        started = time.perf_counter()
        model = FineTunedTextClassifier(
            n_classes=n_classes,
            epochs=epochs,
            max_length=max_length,
            encoder_lr=encoder_lr,
            trainable_layers=None if layers is None else layers.trainable_layers,
            frozen=layers,
            random_state=seed,
        )
        model.fit([texts[i] for i in train], labels[train])
        fitted = time.perf_counter()
        proba = model.predict_proba([texts[i] for i in rest])
        score(name, proba, fitted - started, time.perf_counter() - fitted)
    return results


def trained_layers(variant: str) -> str:
    """Return words for the layers a fine-tuned variant trains."""
    return {"all": "whole encoder", "1": "top layer"}.get(
        variant, f"top {variant} layers"
    )


def describe(variant: str, epochs: int, encoder_lr: float | None) -> str:
    """Return a table's words for a fine-tuned variant."""
    if encoder_lr is None:
        encoder_lr = WHOLE_ENCODER_LR if variant == "all" else TOP_LAYERS_LR
    return (
        f"MiniLM fine-tuned, {trained_layers(variant)} "
        f"({epochs} epochs, at least 120 steps, learning rate {encoder_lr:g})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["trec", "ag_news"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[600, 1200])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument(
        "--epochs", type=int, default=3, help="Passes over the labeled texts."
    )
    parser.add_argument(
        "--max-length", type=int, default=64, help="Tokens kept per text."
    )
    parser.add_argument(
        "--encoder-lr",
        type=float,
        default=None,
        help="Peak learning rate of the encoder layers that train; by default "
        "the classifier's, which depends on how many layers train.",
    )
    parser.add_argument(
        "--trainable-layers",
        nargs="+",
        default=["all"],
        help="Fine-tuned variants: 'all' trains the whole encoder, a number "
        "only that many top layers.",
    )
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args(argv)

    rows = []
    state_times = []
    for dataset in args.datasets:
        texts, features, labels, name = load_texts_and_features(dataset)
        frozen: dict[str, FrozenLayers | None] = {}
        for variant in args.trainable_layers:
            if variant == "all":
                frozen[variant] = None
                continue
            started = time.perf_counter()
            frozen[variant] = FrozenLayers(
                trainable_layers=int(variant), max_length=args.max_length
            )
            frozen[variant].states(texts)
            state_times.append(
                f"For {dataset} and the {trained_layers(variant)}, they took "
                f"{time.perf_counter() - started:.0f} s for {len(texts):,} texts."
            )
            print(state_times[-1], flush=True)
        for n in args.sizes:
            if n >= len(labels) // 2:
                continue
            runs = [
                measure(
                    texts,
                    features,
                    labels,
                    n=n,
                    seed=seed,
                    target=args.target,
                    epochs=args.epochs,
                    max_length=args.max_length,
                    encoder_lr=args.encoder_lr,
                    frozen=frozen,
                )
                for seed in range(args.seeds)
            ]
            for model in ("frozen", *frozen):

                def mean(
                    key: str, model: str = model, runs: list[dict] = runs
                ) -> float:
                    return float(np.mean([run[model][key] for run in runs]))

                described = (
                    f"`{name}` + logistic head"
                    if model == "frozen"
                    else describe(model, args.epochs, args.encoder_lr)
                )
                rows.append(
                    f"| {dataset} | {n} | {described} | {100 * mean('accuracy'):.1f}% "
                    f"| {100 * mean('coverage'):.1f}% | {mean('fit_s'):.0f} s "
                    f"| {mean('predict_s'):.0f} s |"
                )
                print(rows[-1], flush=True)

    publish(
        "fine_tuning.py",
        argv,
        "A uniform random sample of n items gets its true labels; each model "
        + "learns from them and scores the rest. Coverage is the largest share "
        + "of the rest, taken by confidence, whose true error is within "
        + f"{1 - args.target:.0%}: what a perfect threshold could machine-label. "
        + f"Means over seeds 0 to {args.seeds - 1}; texts are cut at "
        + f"{args.max_length} "
        + "tokens for fine-tuning. Times are wall-clock seconds on this "
        + "machine's CPU: training (with the head's tuning) and scoring the "
        + "rest. Where only the top layers train, the frozen layers' token "
        + "states of every text are computed once beforehand and not counted "
        + "in these columns. "
        + " ".join(state_times)
        + "\n\n"
        + "| dataset | labels | model | accuracy on the rest | coverage at the "
        + "target | training | scoring |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n",
        section="fine-tuning",
        title="Fine-tuning the text encoder",
        record=args.record,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
