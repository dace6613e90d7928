"""Benchmark answer consolidation with simulated workers on real dataset labels.

Workers answer from the true labels of AG News (test split, 7,600 items, 4 classes)
and CIFAR-10 (test split, 10,000 items, 10 classes). Five workers are right with
probabilities 0.55, 0.65, 0.75, 0.85 and 0.95 and otherwise pick another class
uniformly; a sixth answers a uniformly random class. Each item goes to its workers
in a random order, so every policy below sees the same answers:

- fixed 3 and fixed 5: the first 3 or 5 workers answer every item;
- adaptive: 2 workers answer every item, then Dawid-Skene runs (warm-started from
  the previous round) and items that ``needs_more_answers`` flags get the next
  worker, up to 5 answers.

Usage::

    python benchmarks/consolidation.py [--seeds 5] [--output FILE]

The markdown table is printed and written to its section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelloop.consolidation import (
    Answer,
    ConsolidationResult,
    DawidSkene,
    MajorityVote,
    needs_more_answers,
)
from labelloop.data import data_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import write_section  # noqa: E402

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPOSITORY_ROOT / "docs" / "benchmarks.md"
GOOD_WORKER_ACCURACIES = (0.55, 0.65, 0.75, 0.85, 0.95)
MIN_ANSWERS = 2
MAX_ANSWERS = 5
CONFIDENCE = 0.9


@dataclass(frozen=True)
class Crowd:
    """Every worker's answer to every item, and the order workers are asked in."""

    truth: np.ndarray  # (N,)
    answers: np.ndarray  # (N, W): answers[i, w] is worker w's label for item i
    ask_order: np.ndarray  # (N, W): a permutation of the workers per item
    true_accuracy: dict[str, float]


@dataclass(frozen=True)
class PolicyScore:
    """Scores of one policy on one dataset and seed."""

    answers_per_item: float
    majority_accuracy: float
    dawid_skene_accuracy: float
    majority_worker_error: float
    dawid_skene_worker_error: float
    majority_worker_accuracy: dict[str, float]
    dawid_skene_worker_accuracy: dict[str, float]


def load_ag_news_labels(root: Path) -> tuple[np.ndarray, int]:
    """Return the AG News test classes as 0..3 (the CSV's first column is 1..4)."""
    with (root / "ag_news" / "test.csv").open(newline="", encoding="utf-8") as file:
        labels = [int(row[0]) - 1 for row in csv.reader(file)]
    return np.asarray(labels, dtype=np.int64), 4


def load_cifar10_labels(root: Path) -> tuple[np.ndarray, int]:
    """Return the CIFAR-10 test classes, numbered by sorted class folder name."""
    class_dirs = sorted(path for path in (root / "cifar10" / "test").iterdir())
    labels = []
    for index, class_dir in enumerate(class_dirs):
        labels += [index] * sum(1 for _ in class_dir.glob("*.jpg"))
    return np.asarray(labels, dtype=np.int64), len(class_dirs)


def simulate_crowd(truth: np.ndarray, n_classes: int, seed: int) -> Crowd:
    """Draw every worker's answer to every item, and a random asking order."""
    rng = np.random.default_rng(seed)
    n_items = truth.shape[0]
    columns: list[np.ndarray] = []
    true_accuracy: dict[str, float] = {}
    for index, accuracy in enumerate(GOOD_WORKER_ACCURACIES):
        right = rng.random(n_items) < accuracy
        wrong = (truth + rng.integers(1, n_classes, size=n_items)) % n_classes
        columns.append(np.where(right, truth, wrong))
        true_accuracy[f"worker-{index}"] = accuracy
    columns.append(np.asarray(rng.integers(0, n_classes, size=n_items)))
    true_accuracy["random"] = 1.0 / n_classes

    n_workers = len(columns)
    ask_order = rng.permuted(np.tile(np.arange(n_workers), (n_items, 1)), axis=1)
    return Crowd(
        truth=truth,
        answers=np.stack(columns, axis=1),
        ask_order=ask_order,
        true_accuracy=true_accuracy,
    )


def collect_answers(crowd: Crowd, answer_counts: np.ndarray) -> list[Answer]:
    """Return the answers of the first ``answer_counts[i]`` workers of each item."""
    worker_ids = list(crowd.true_accuracy)
    answers = []
    for item, count in enumerate(answer_counts.tolist()):
        for worker in crowd.ask_order[item, :count].tolist():
            label = int(crowd.answers[item, worker])
            answers.append(Answer(item, worker_ids[worker], label))
    return answers


def run_adaptive(
    crowd: Crowd, n_classes: int, *, require_agreement: bool, seed: int
) -> np.ndarray:
    """Return the answers per item that the adaptive policy ends with."""
    counts = np.full(crowd.truth.shape[0], MIN_ANSWERS)
    model = DawidSkene()
    previous: ConsolidationResult | None = None
    while True:
        answers = collect_answers(crowd, counts)
        result = model.consolidate(
            answers,
            n_classes=n_classes,
            rng=np.random.default_rng(seed),
            initial_posteriors=previous.posteriors() if previous else None,
        )
        by_item: dict[int, list[Answer]] = {}
        for answer in answers:
            by_item.setdefault(answer.item_id, []).append(answer)

        more = np.array(
            [
                needs_more_answers(
                    by_item[item],
                    result.labels[item].posterior,
                    min_answers=MIN_ANSWERS,
                    max_answers=MAX_ANSWERS,
                    confidence=CONFIDENCE,
                    require_agreement=require_agreement,
                )
                for item in range(counts.shape[0])
            ]
        )
        if not more.any():
            return counts
        counts = counts + more
        previous = result


def score_policy(
    crowd: Crowd, n_classes: int, answer_counts: np.ndarray, seed: int
) -> PolicyScore:
    """Consolidate the collected answers with both methods and score them."""
    answers = collect_answers(crowd, answer_counts)
    scores = {}
    estimates: dict[str, dict[str, float]] = {}
    for method in (MajorityVote(), DawidSkene()):
        result = method.consolidate(
            answers, n_classes=n_classes, rng=np.random.default_rng(seed)
        )
        predicted = np.array(
            [result.labels[item].label for item in range(crowd.truth.shape[0])]
        )
        worker_error = np.mean(
            [
                abs(result.workers[worker].accuracy - accuracy)
                for worker, accuracy in crowd.true_accuracy.items()
            ]
        )
        scores[method.name] = (float(np.mean(predicted == crowd.truth)), worker_error)
        estimates[method.name] = {
            worker: result.workers[worker].accuracy for worker in crowd.true_accuracy
        }
    return PolicyScore(
        answers_per_item=float(answer_counts.mean()),
        majority_accuracy=scores["majority-vote"][0],
        dawid_skene_accuracy=scores["dawid-skene"][0],
        majority_worker_error=float(scores["majority-vote"][1]),
        dawid_skene_worker_error=float(scores["dawid-skene"][1]),
        majority_worker_accuracy=estimates["majority-vote"],
        dawid_skene_worker_accuracy=estimates["dawid-skene"],
    )


def benchmark_dataset(
    truth: np.ndarray, n_classes: int, seeds: list[int]
) -> dict[str, list[PolicyScore]]:
    """Return the scores of every policy over ``seeds``, keyed by policy name."""
    n_items = truth.shape[0]
    results: dict[str, list[PolicyScore]] = {}
    adaptive_name = (
        f"adaptive {MIN_ANSWERS}-{MAX_ANSWERS}: disagreement or p < {CONFIDENCE}"
    )
    posterior_only_name = f"adaptive {MIN_ANSWERS}-{MAX_ANSWERS}: p < {CONFIDENCE}"
    for seed in seeds:
        crowd = simulate_crowd(truth, n_classes, seed)
        policies = {
            "fixed 3": np.full(n_items, 3),
            "fixed 5": np.full(n_items, 5),
            adaptive_name: run_adaptive(
                crowd, n_classes, require_agreement=True, seed=seed
            ),
            posterior_only_name: run_adaptive(
                crowd, n_classes, require_agreement=False, seed=seed
            ),
        }
        for name, counts in policies.items():
            score = score_policy(crowd, n_classes, counts, seed)
            results.setdefault(name, []).append(score)
    return results


def format_table(all_results: dict[str, dict[str, list[PolicyScore]]]) -> str:
    """Return a markdown table with the mean (and minimum) over seeds."""
    lines = [
        "| dataset | policy | answers / item | majority vote acc. mean (min) "
        "| Dawid-Skene acc. mean (min) | worker acc. MAE, MV | worker acc. MAE, DS |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, by_policy in all_results.items():
        for policy, scores in by_policy.items():
            majority = [score.majority_accuracy for score in scores]
            dawid_skene = [score.dawid_skene_accuracy for score in scores]
            lines.append(
                f"| {dataset} | {policy} "
                f"| {np.mean([s.answers_per_item for s in scores]):.2f} "
                f"| {np.mean(majority):.4f} ({np.min(majority):.4f}) "
                f"| {np.mean(dawid_skene):.4f} ({np.min(dawid_skene):.4f}) "
                f"| {np.mean([s.majority_worker_error for s in scores]):.3f} "
                f"| {np.mean([s.dawid_skene_worker_error for s in scores]):.3f} |"
            )
    return "\n".join(lines)


def format_worker_table(
    all_results: dict[str, dict[str, list[PolicyScore]]],
    true_accuracy: dict[str, dict[str, float]],
) -> str:
    """Return each worker's true and recovered accuracy under fixed 3 answers."""
    lines = [
        "| dataset | worker | true accuracy | majority vote estimate "
        "| Dawid-Skene estimate |",
        "|---|---|---|---|---|",
    ]
    for dataset, by_policy in all_results.items():
        scores = by_policy["fixed 3"]
        for worker, accuracy in true_accuracy[dataset].items():
            majority = np.mean([s.majority_worker_accuracy[worker] for s in scores])
            dawid_skene = np.mean(
                [s.dawid_skene_worker_accuracy[worker] for s in scores]
            )
            lines.append(
                f"| {dataset} | {worker} | {accuracy:.3f} | {majority:.3f} "
                f"| {dawid_skene:.3f} |"
            )
    return "\n".join(lines)


def _mean_score(scores: list[PolicyScore], field: str) -> float:
    return float(np.mean([getattr(score, field) for score in scores]))


def format_savings(all_results: dict[str, dict[str, list[PolicyScore]]]) -> str:
    """Return the answers each adaptive policy saves against fixed redundancy.

    The fixed policy of equal Dawid-Skene accuracy is interpolated linearly
    between fixed 3 and fixed 5 answers per item.
    """
    lines = [
        "| dataset | policy | answers / item | fixed answers / item at equal "
        "accuracy | answers saved |",
        "|---|---|---|---|---|",
    ]
    for dataset, by_policy in all_results.items():
        low = _mean_score(by_policy["fixed 3"], "dawid_skene_accuracy")
        high = _mean_score(by_policy["fixed 5"], "dawid_skene_accuracy")
        for policy, scores in by_policy.items():
            if not policy.startswith("adaptive"):
                continue
            accuracy = _mean_score(scores, "dawid_skene_accuracy")
            used = _mean_score(scores, "answers_per_item")
            fraction = (accuracy - low) / (high - low) if high > low else 1.0
            fixed = 3 + 2 * min(max(fraction, 0.0), 1.0)
            lines.append(
                f"| {dataset} | {policy} | {used:.2f} | {fixed:.2f} "
                f"| {1 - used / fixed:.1%} |"
            )
    return "\n".join(lines)


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's name."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def write_report(path: Path, table: str, *, seeds: list[int], seconds: float) -> None:
    """Write the benchmark page with its command, machine, date and table."""
    today = datetime.date.today().isoformat()
    text = f"""Command: `python benchmarks/consolidation.py --seeds {len(seeds)}`

Machine: `{platform.machine()}`, {cpu_model()}. Date: {today}. Wall time:
{seconds:.0f} s.

Simulated workers answer from the true labels of AG News (test split, 7,600 items,
4 classes) and CIFAR-10 (test split, 10,000 items, 10 classes). Five workers are
right with probabilities 0.55, 0.65, 0.75, 0.85 and 0.95 and otherwise answer
another class chosen uniformly; a sixth worker answers a uniformly random class.
Each item goes to distinct workers in a random order. The adaptive policies start
with {MIN_ANSWERS} answers per item, run Dawid-Skene after each round (warm-started
from the previous round) and ask the next worker, up to {MAX_ANSWERS}, where the
answers disagree or the top posterior is below {CONFIDENCE} ("disagreement or p <
{CONFIDENCE}"), or where the top posterior alone is below {CONFIDENCE} ("p <
{CONFIDENCE}"). Accuracy is against the dataset's labels, as the mean and minimum
over seeds {seeds}. The worker accuracy MAE compares each method's estimated
worker accuracy with the simulated one (1/K for the random worker), averaged over
the six workers.

{table}
"""
    write_section(
        "consolidation", "Consolidating several workers' answers", text, page=path
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, default=5, help="number of seeds (default: 5)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"markdown page whose section is written (default: {DEFAULT_OUTPUT})",
    )
    args = parser.parse_args(argv)

    root = data_dir()
    if not (root / "ag_news").is_dir() or not (root / "cifar10").is_dir():
        print(
            f"error: datasets not found under {root}; set LABELLOOP_DATA_DIR to "
            "the folder that contains ag_news/ and cifar10/",
            file=sys.stderr,
        )
        return 1

    seeds = list(range(args.seeds))
    start = time.perf_counter()
    all_results = {}
    true_accuracies: dict[str, dict[str, float]] = {}
    for dataset, loader in (
        ("AG News", load_ag_news_labels),
        ("CIFAR-10", load_cifar10_labels),
    ):
        truth, n_classes = loader(root)
        all_results[dataset] = benchmark_dataset(truth, n_classes, seeds)
        true_accuracies[dataset] = simulate_crowd(truth, n_classes, 0).true_accuracy
    seconds = time.perf_counter() - start

    table = (
        format_table(all_results)
        + "\n\nRecovered worker accuracies, mean over seeds, with 3 answers per "
        + "item:\n\n"
        + format_worker_table(all_results, true_accuracies)
        + "\n\nAnswers saved by adaptive redundancy against fixed redundancy of "
        + "equal Dawid-Skene accuracy (interpolated between 3 and 5 answers):\n\n"
        + format_savings(all_results)
    )
    print(table)
    write_report(args.output, table, seeds=seeds, seconds=seconds)
    print(f"\nwritten to {args.output} in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
