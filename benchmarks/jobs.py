"""Run complete labeling jobs on the public datasets and record what they cost.

Each job runs through ``labelloop run`` in a child process, the same code path a
user takes, with a simulated workforce answering from the true labels. Later
seeds of a dataset reuse the features that the first seed extracted (copied
into their databases), as a second job on the same manifest would.

Usage::

    python benchmarks/jobs.py --datasets mnist cifar10 ag_news --seeds 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labelloop.config import load_job_config
from labelloop.importers import import_dataset
from labelloop.job import open_job

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work"

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


def machine_description() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} {platform.machine()}"


def prepare(dataset: str, seed: int, *, limit: int | None, target: float) -> Path:
    """Import the dataset once and write the job file of one seed."""
    task_type, options = DATASETS[dataset]
    data = WORK / dataset / ("data" if limit is None else f"data-{limit}")
    if not (data / "manifest.jsonl").exists():
        import_dataset(dataset, data, limit=limit, seed=0, **options)
    folder = (
        WORK / dataset / f"seed-{seed}"
        if limit is None
        else WORK / dataset / f"seed-{seed}-{limit}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    job = {
        "job_name": f"{dataset.replace('_', '-')}-seed-{seed}",
        "task_type": task_type,
        "label_attribute_name": "label",
        "label_category_file": str(data / "class-labels.json"),
        "input_manifest": str(data / "manifest.jsonl"),
        "output_path": str(folder / "out"),
        "workforce": {"type": "simulated", "error_rates": [0.0]},
        "automated_labeling": {"target_accuracy": target},
        "seed": seed,
    }
    job_file = folder / "job.yaml"
    job_file.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    return job_file


def copy_features(source_db: Path, job_file: Path) -> None:
    """Seed a new job's feature cache from an earlier job on the same manifest."""
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


def run_one(job_file: Path, dataset: str, seed: int) -> JobRun:
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
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def table(runs: list[JobRun]) -> str:
    header = (
        "| dataset | seed | items | human labels | machine labels | machine-label accuracy "
        "| certified error bound | all labels accuracy | rounds | wall time | features "
        "| training | peak memory |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for run in runs:
        rows.append(
            f"| {run.dataset} | {run.seed} | {run.items:,} | {run.human:,} "
            f"({run.human / run.items:.1%}) | {run.machine:,} ({run.machine / run.items:.1%}) "
            f"| {_percent(run.machine_accuracy)} | {_percent(run.certified_bound)} "
            f"| {_percent(run.labeled_accuracy)} | {run.rounds} | {run.wall_seconds:.0f} s "
            f"| {run.feature_seconds:.0f} s | {run.training_seconds:.0f} s "
            f"| {run.peak_rss_mib:,.0f} MiB |"
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
        "--seeds", type=int, default=1, help="Seeds per dataset (0, 1, ...)."
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
    args = parser.parse_args(argv)

    runs: list[JobRun] = []
    for dataset in args.datasets:
        first_db: Path | None = None
        for seed in range(args.seeds):
            job_file = prepare(dataset, seed, limit=args.limit, target=args.target)
            config = load_job_config(job_file)
            if (config.output_path / "job.db").exists():
                raise SystemExit(
                    f"{config.output_path} holds an earlier run; delete it to rerun"
                )
            if first_db is not None:
                copy_features(first_db, job_file)
            run = run_one(job_file, dataset, seed)
            runs.append(run)
            print(table([run]).splitlines()[-1], flush=True)
            if first_db is None:
                first_db = config.output_path / "job.db"

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps([vars(run) for run in runs], indent=2))
    command = "python benchmarks/jobs.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    print()
    print(f"Command: `{command}`  ")
    print(f"Machine: {machine_description()}  ")
    print(f"Date: {datetime.date.today().isoformat()}")
    print()
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
