"""Run complete labeling jobs on the public datasets and record what they cost.

Each job runs through ``labelloop run`` in a child process, the same code path a
user takes, with a simulated workforce answering from the true labels. Later
seeds of a dataset reuse the features that the first seed extracted (copied
into their databases), as a second job on the same manifest would. A stopped
benchmark started again with the same arguments keeps the jobs that finished
and runs the rest.

Usage::

    python benchmarks/jobs.py --datasets mnist cifar10 ag_news --seeds 1
    python benchmarks/jobs.py --datasets trec --seeds 5 --first-seed 5
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labelloop.config import load_job_config
from labelloop.features.cache import add_corpus_features, make_corpus_features
from labelloop.importers import import_dataset
from labelloop.job import open_job
from labelloop.models import make_model, tune_model
from labelloop.models.propagation import NeighborGraph, tune_alpha
from labelloop.store import JobStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import publish  # noqa: E402

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work"

#: File beside each job's ``job.yaml`` with its measured results. A benchmark
#: started again reads finished jobs back from it instead of running them.
RESULT_FILE = "run.json"

#: Task type and import options of each dataset.
DATASETS: dict[str, tuple[str, dict[str, Any]]] = {
    "mnist": ("image-classification", {}),
    "cifar10": ("image-classification", {}),
    "ag_news": ("text-classification", {}),
    "trec": ("text-classification", {"split": "train"}),
    "sms_spam": ("text-classification", {}),
}


@dataclass
class JobRun:
    dataset: str
    method: str
    seed: int
    items: int
    human: int
    machine: int
    unlabeled: int
    failed: int
    machine_accuracy: float | None
    labeled_accuracy: float | None
    certified_bound: float | None
    wall_seconds: float
    peak_rss_mib: float
    feature_seconds: float
    training_seconds: float
    rounds: int
    oracle_human: float | None = None
    oracle_budget: float | None = None
    validation_labels: int | None = None


#: Labeling methods compared. ``ground-truth`` follows Ground Truth's documented
#: procedure: empirical threshold, 10% validation sample, human batches of 1,000.
#: ``tbal`` uses TBAL's class-wise rule and margin sampling among ambiguous items.
METHODS: dict[str, dict[str, Any]] = {
    "certified": {},
    "ground-truth": {
        "automated_labeling": {"threshold_method": "empirical"},
        "human_batch_size": 1000,
        "validation_share": 0.10,
    },
    "tbal": {
        "automated_labeling": {"threshold_method": "tbal"},
        "query_strategy": "margin-sampled",
    },
    # The certified method without spreading over the neighbor graph, to
    # measure what spreading buys.
    "certified-no-spreading": {"label_spreading": "off"},
    # Text datasets only: the encoder's top layers train on the human labels,
    # or the whole encoder does.
    "certified-fine-tuned": {"model": "fine-tuned-minilm"},
    "certified-fine-tuned-whole": {
        "model": "fine-tuned-minilm",
        "fine_tuning": {"trainable_layers": None},
    },
}


def prepare(
    dataset: str, seed: int, *, method: str, limit: int | None, target: float
) -> Path:
    """Import the dataset once and write the job file of one run."""
    task_type, options = DATASETS[dataset]
    data = WORK / dataset / ("data" if limit is None else f"data-{limit}")
    if not (data / "manifest.jsonl").exists():
        import_dataset(dataset, data, limit=limit, seed=0, **options)
    n_items = sum(1 for _ in (data / "manifest.jsonl").open(encoding="utf-8"))
    suffix = "" if limit is None else f"-{limit}"
    folder = WORK / dataset / f"{method}-seed-{seed}{suffix}"
    folder.mkdir(parents=True, exist_ok=True)

    settings = METHODS[method]
    automated = {"target_accuracy": target, **settings.get("automated_labeling", {})}
    if "validation_share" in settings:
        automated["validation_size"] = round(settings["validation_share"] * n_items)
    job: dict[str, Any] = {
        "job_name": f"{dataset.replace('_', '-')}-{method}-seed-{seed}",
        "task_type": task_type,
        "label_attribute_name": "label",
        "label_category_file": str(data / "class-labels.json"),
        "input_manifest": str(data / "manifest.jsonl"),
        "output_path": str(folder / "out"),
        "workforce": {"type": "simulated", "error_rates": [0.0]},
        "automated_labeling": automated,
        "seed": seed,
    }
    for key in (
        "human_batch_size",
        "query_strategy",
        "model",
        "label_spreading",
        "fine_tuning",
    ):
        if key in settings:
            job[key] = settings[key]
    job_file = folder / "job.yaml"
    job_file.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    return job_file


def cached_features(dataset: str, limit: int | None, exclude: Path) -> Path | None:
    """Return the database of an earlier run on the same manifest that has features."""
    suffix = "" if limit is None else f"-{limit}"
    for database in sorted((WORK / dataset).glob(f"*-seed-*{suffix}/out/job.db")):
        if database == exclude:
            continue
        if (
            limit is None
            and not database.parent.parent.name.split("-seed-")[1].isdigit()
        ):
            continue
        with sqlite3.connect(database) as connection:
            try:
                count = connection.execute("select count(*) from features").fetchone()
            except sqlite3.DatabaseError:
                continue
        if count and count[0] > 0:
            return database
    return None


def copy_features(source_db: Path, job_file: Path) -> None:
    """Seed a new job's feature cache from an earlier job on the same manifest.

    Earlier jobs' features count as a cache, as a second job on the same data
    would use one: the wall time of a job that reused features leaves out
    their extraction, and its ``features`` column shows that.
    """
    config = load_job_config(job_file)
    store = open_job(config)
    store.close()
    target = config.output_path / "job.db"
    with sqlite3.connect(target) as connection:
        connection.execute("attach database ? as source", (str(source_db),))
        connection.execute(
            "insert or ignore into features select * from source.features"
        )
        connection.commit()


#: Shares of a dataset given to the oracle model as random human labels.
ORACLE_BUDGETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.35)


def job_features(job_file: Path) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Return a finished job's cached features, true classes and feature name.

    Classes index the job's label categories. Text jobs whose preset adds corpus
    features get them appended, as the loop does. Returns None when the job has no
    true-label key or no single feature extractor.
    """
    config = load_job_config(job_file)
    key = getattr(config.workforce, "true_label_key", None)
    if key is None:
        return None
    index = {name: position for position, name in enumerate(config.label_categories)}
    with sqlite3.connect(config.output_path / "job.db") as connection:
        extractors = [
            row[0]
            for row in connection.execute("select distinct extractor from features")
        ]
        if len(extractors) != 1:
            return None
        vectors = dict(
            connection.execute(
                "select item_id, vector from features where extractor = ?",
                (extractors[0],),
            )
        )
        truth = {}
        for item_id, record in connection.execute(
            "select id, record from items where status = 'ok'"
        ):
            value = json.loads(record).get(key) if record else None
            if value in index and item_id in vectors:
                truth[item_id] = index[value]
    ids = sorted(truth)
    if not ids:
        return None
    features = np.stack([np.frombuffer(vectors[i], dtype=np.float32) for i in ids])
    corpus = make_corpus_features(config)
    if corpus is None:
        return features, np.array([truth[i] for i in ids]), extractors[0]
    # The loop's own call, on every item with a vector as in the loop, so the
    # topics match a job's. An empty matrix makes it return the topics alone.
    valid = sorted(vectors)
    store = JobStore(f"sqlite:///{config.output_path / 'job.db'}")
    try:
        topics = add_corpus_features(
            store, valid, np.zeros((len(valid), 0), dtype=np.float32), corpus
        )
    finally:
        store.close()
    position = {item_id: k for k, item_id in enumerate(valid)}
    features = np.hstack([features, topics[[position[i] for i in ids]]])
    name = f"{extractors[0]}+{corpus.name}"
    return features, np.array([truth[i] for i in ids]), name


def coverage(score: np.ndarray, wrong: np.ndarray, max_error: float) -> float:
    """Return the largest top share by ``score`` with error at most ``max_error``."""
    order = np.argsort(-score, kind="stable")
    error = np.cumsum(wrong[order]) / np.arange(1, len(order) + 1)
    within = np.flatnonzero(error <= max_error)
    return float((within[-1] + 1) / len(order)) if len(within) else 0.0


def oracle_floor(
    job_file: Path, *, target: float, seed: int
) -> dict[str, float] | None:
    """Return the fewest human labels any threshold on the job's model could need.

    For each budget in ``ORACLE_BUDGETS``, the job's model is tuned and
    trained on that share of the items, drawn at random with their true
    labels, and scores the rest. With the true labels known, a perfect
    threshold could machine-label the largest set of its most confident items
    whose error is at most ``1 - target``. Humans label everything else. The
    floor is the smallest human share over the budgets. The model's
    probabilities are spread over the neighbor graph as in the job, unless the
    job turned spreading off. Reads the features and true labels from the
    finished job's database.
    """
    found = job_features(job_file)
    if found is None or len(found[1]) < 100:
        return None
    features, labels, _ = found
    config = load_job_config(job_file)
    n_classes = len(config.label_categories)
    rng = np.random.default_rng(seed)
    graph = (
        NeighborGraph.build(features, random_state=seed)
        if config.label_spreading != "off"
        else None
    )
    best = {"human_share": 1.0, "budget": 1.0}
    for budget in ORACLE_BUDGETS:
        order = rng.permutation(len(labels))
        n_train = int(round(budget * len(labels)))
        train, rest = order[:n_train], order[n_train:]
        if len(np.unique(labels[train])) < 2:
            continue
        params = tune_model(
            config.model,
            n_classes=n_classes,
            random_state=seed,
            features=features[train],
            labels=labels[train],
        )

        def fit_predict(
            rows: np.ndarray,
            train: np.ndarray = train,
            params: dict[str, Any] = params,
        ) -> np.ndarray:
            """Train on ``train[rows]`` and return probabilities of every item."""
            model = make_model(
                config.model, n_classes=n_classes, random_state=seed, **params
            )
            model.fit(features[train[rows]], labels[train[rows]])
            return model.predict_proba(features)

        probabilities = fit_predict(np.arange(len(train)))
        if graph is not None:
            alpha = tune_alpha(
                graph, fit_predict, train, labels[train], random_state=seed
            )
            probabilities = graph.spread(
                probabilities, train, labels[train], alpha=alpha
            )
        probabilities = probabilities[rest]
        wrong = probabilities.argmax(axis=1) != labels[rest]
        share = coverage(probabilities.max(axis=1), wrong, 1.0 - target)
        machine = share * len(rest) / len(labels)
        if 1.0 - machine < best["human_share"]:
            best = {"human_share": float(1.0 - machine), "budget": budget}
    return best


def run_one(job_file: Path, dataset: str, method: str, seed: int) -> JobRun:
    """Run ``labelloop run`` in a child process; measure its time and peak memory."""
    started = time.perf_counter()
    log = job_file.parent / "run.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "labelloop.cli", "run", str(job_file)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, COLUMNS="120"),
        )
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"job {job_file} failed; see {log}")
    config = load_job_config(job_file)
    report = json.loads((config.output_path / "report" / "report.json").read_text())
    counters = report["counters"]
    measured = report.get("measured") or {}
    timing = report.get("timing") or {}
    return JobRun(
        dataset=dataset,
        method=method,
        seed=seed,
        items=report["dataset"]["items"],
        human=counters["HumanLabeled"],
        machine=counters["MachineLabeled"],
        unlabeled=counters["Unlabeled"],
        failed=counters["FailedNonRetryableError"],
        machine_accuracy=measured.get("machine_accuracy"),
        labeled_accuracy=measured.get("labeled_accuracy"),
        certified_bound=(report.get("machine_labels") or {}).get(
            "certified_error_bound"
        ),
        wall_seconds=wall,
        peak_rss_mib=usage.ru_maxrss / 1024,
        feature_seconds=timing.get("features", 0.0),
        training_seconds=timing.get("training", 0.0),
        rounds=len(report.get("rounds", [])),
        validation_labels=(report.get("human_label_sources") or {}).get("validation"),
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _share(count: int | None, items: int) -> str:
    return "n/a" if count is None else f"{count:,} ({count / items:.1%})"


def table(runs: list[JobRun]) -> str:
    """Return one row per run."""
    header = (
        "| dataset | method | seed | items | human labels | of them validation "
        "| machine labels | machine-label accuracy | certified error bound "
        "| all labels accuracy | rounds | wall time | features | training "
        "| other time | peak memory |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for run in runs:
        other = max(run.wall_seconds - run.feature_seconds - run.training_seconds, 0.0)
        rows.append(
            f"| {run.dataset} | {run.method} | {run.seed} | {run.items:,} "
            f"| {run.human:,} ({run.human / run.items:.1%}) "
            f"| {_share(run.validation_labels, run.items)} "
            f"| {run.machine:,} ({run.machine / run.items:.1%}) "
            f"| {_percent(run.machine_accuracy)} | {_percent(run.certified_bound)} "
            f"| {_percent(run.labeled_accuracy)} | {run.rounds} "
            f"| {run.wall_seconds:.0f} s | {run.feature_seconds:.0f} s "
            f"| {run.training_seconds:.0f} s "
            f"| {other:.0f} s ({other / run.wall_seconds:.0%}) "
            f"| {run.peak_rss_mib:,.0f} MiB |"
        )
    return header + "\n".join(rows) + "\n"


def summary(runs: list[JobRun], *, target: float) -> str:
    """Return one row per dataset and method, over its seeds."""
    header = (
        "| dataset | method | seeds | human labels (mean share) "
        "| machine-labeled (mean share) | machine-label error: mean "
        "| worst seed | seeds above target | oracle floor (human share) "
        "| mean wall time |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    groups: dict[tuple[str, str], list[JobRun]] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.method), []).append(run)
    rows = []
    for (dataset, method), group in groups.items():
        errors = [
            1 - run.machine_accuracy
            for run in group
            if run.machine_accuracy is not None
        ]
        above = sum(1 for error in errors if error > 1 - target)
        human = sum(run.human / run.items for run in group) / len(group)
        machine = sum(run.machine / run.items for run in group) / len(group)
        wall = sum(run.wall_seconds for run in group) / len(group)
        mean_error = f"{100 * sum(errors) / len(errors):.2f}%" if errors else "n/a"
        worst = f"{100 * max(errors):.2f}%" if errors else "n/a"
        floors = [run.oracle_human for run in group if run.oracle_human is not None]
        floor = f"{sum(floors) / len(floors):.1%}" if floors else "n/a"
        rows.append(
            f"| {dataset} | {method} | {len(group)} | {human:.1%} | {machine:.1%} "
            f"| {mean_error} | {worst} | {above} of {len(errors)} | {floor} "
            f"| {wall:.0f} s |"
        )
    return header + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["mnist", "cifar10", "ag_news"],
        choices=sorted(DATASETS),
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["certified"],
        choices=list(METHODS),
        help="Labeling methods to compare on the same data and seeds.",
    )
    parser.add_argument(
        "--seeds", type=int, default=1, help="Seeds per dataset, from --first-seed."
    )
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="First seed to run; later seeds count up from it (default 0).",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="Items per dataset (default: all)."
    )
    parser.add_argument(
        "--target", type=float, default=0.95, help="Target accuracy of machine labels."
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "results" / "jobs.json",
        help="JSON file of the results.",
    )
    parser.add_argument(
        "--no-oracle",
        dest="oracle",
        action="store_false",
        help="Skip the oracle floor (see oracle_floor).",
    )
    parser.add_argument(
        "--section",
        default="jobs",
        help="Section of docs/benchmarks.md that --record replaces.",
    )
    parser.add_argument(
        "--title",
        default="Complete labeling jobs",
        help="Heading of that section.",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="Write the tables into docs/benchmarks.md.",
    )
    args = parser.parse_args(argv)

    runs: list[JobRun] = []
    floors: dict[tuple[str, int], dict[str, float] | None] = {}
    for dataset in args.datasets:
        first_db: Path | None = None
        for method in args.methods:
            if (
                "model" in METHODS[method]
                and DATASETS[dataset][0] != "text-classification"
            ):
                print(f"skipping {method} on {dataset}: it fine-tunes a text encoder")
                continue
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                job_file = prepare(
                    dataset, seed, method=method, limit=args.limit, target=args.target
                )
                config = load_job_config(job_file)
                result_file = job_file.parent / RESULT_FILE
                read_back = result_file.exists()
                if read_back:
                    run = JobRun(**json.loads(result_file.read_text()))
                else:
                    if (config.output_path / "job.db").exists():
                        raise SystemExit(
                            f"{config.output_path} contains a job database but "
                            f"no {RESULT_FILE}, so its run did not finish; "
                            "delete the folder to run the job again"
                        )
                    if first_db is None:
                        first_db = cached_features(
                            dataset, args.limit, config.output_path / "job.db"
                        )
                    if first_db is not None:
                        copy_features(first_db, job_file)
                    run = run_one(job_file, dataset, method, seed)
                if args.oracle and run.oracle_human is None:
                    if (dataset, seed) not in floors:
                        floors[dataset, seed] = oracle_floor(
                            job_file, target=args.target, seed=seed
                        )
                    floor = floors[dataset, seed]
                    if floor is not None:
                        run.oracle_human = floor["human_share"]
                        run.oracle_budget = floor["budget"]
                result_file.write_text(json.dumps(vars(run), indent=2))
                runs.append(run)
                row = table([run]).splitlines()[-1]
                print(row + (" (read back)" if read_back else ""), flush=True)
                if first_db is None:
                    first_db = config.output_path / "job.db"

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps([vars(run) for run in runs], indent=2))
    publish(
        "jobs.py",
        argv,
        "Complete jobs through `labelloop run`, with a simulated workforce "
        + "answering from the true labels (one worker, no errors) and automated "
        + f"labeling at target accuracy {args.target}. Machine-label accuracy is "
        + "measured against the true labels; the certified error bound is the "
        + "job's own bound, at 95% confidence. Wall time includes feature "
        + "extraction, except for runs after the first on a dataset, which reuse "
        + "its features. `ground-truth` is Ground Truth's documented procedure "
        + "(empirical threshold, 10% validation, human batches of 1,000) and "
        + "`tbal` TBAL's rule; both run through the same loop and models. "
        + "Labeling everything by hand costs 100% human labels. The oracle "
        + "floor is the smallest human share that a perfect threshold on the "
        + "same features and model could reach with random human labels, the "
        + "true labels known (see `oracle_floor` in the script). Other time is "
        + "wall time outside feature extraction and training: the database, "
        + "the simulated workforce, certification and the outputs.\n\n"
        + summary(runs, target=args.target)
        + "\n"
        + table(runs),
        section=args.section,
        title=args.title,
        record=args.record,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
