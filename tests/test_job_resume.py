"""A job killed with SIGKILL at any point resumes with no answer lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from labelloop.config import load_job_config
from labelloop.importers import import_digits
from labelloop.loop import run_job

from jobs_support import write_job

Condition = Callable[[sqlite3.Connection], bool]


def _count(connection: sqlite3.Connection, query: str) -> int:
    try:
        return int(connection.execute(query).fetchone()[0])
    except sqlite3.OperationalError:
        return 0


KILL_POINTS: dict[str, Condition] = {
    "while extracting features": lambda db: (
        _count(db, "select count(*) from features") > 0
    ),
    "after the first answers": lambda db: (
        _count(db, "select count(*) from answers") > 0
    ),
    "in the second round": lambda db: _count(db, "select count(*) from rounds") >= 2,
    "after machine labels": lambda db: (
        _count(db, "select count(*) from labels where origin = 'machine'") > 0
    ),
}


def _make_job(folder: Path, manifest: Path, categories: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_job(
        folder,
        job_name="resume",
        task_type="image-classification",
        features="image-mid",
        label_category_file=str(categories),
        input_manifest=str(manifest),
        workforce={"type": "simulated", "error_rates": [0.0, 0.1, 0.0]},
        workers_per_item=2,
        human_batch_size=30,
        automated_labeling={
            "min_items": 100,
            "validation_size": 120,
            "target_accuracy": 0.9,
        },
        seed=3,
    )


def _answers(database: Path) -> set[tuple[int, str, str]]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("select item_id, worker_id, value from answers")
        return set(rows.fetchall())


def _kill_when(job_file: Path, database: Path, condition: Condition) -> bool:
    """Run the job in a child process and SIGKILL it once ``condition`` holds.

    Returns False when the job finished before the condition was seen.
    """
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "labelloop.cli", "run", str(job_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if database.exists():
                connection = sqlite3.connect(database, timeout=1)
                try:
                    if condition(connection):
                        process.send_signal(signal.SIGKILL)
                        process.wait()
                        return True
                finally:
                    connection.close()
            time.sleep(0.05)
        raise AssertionError(
            "the job neither finished nor reached the kill point in 300 s"
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def digits_slice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("digits")
    imported = import_digits(folder, limit=400, seed=5)
    return imported.manifest, folder / "class-labels.json"


@pytest.fixture(scope="module")
def uninterrupted(
    tmp_path_factory: pytest.TempPathFactory, digits_slice: tuple[Path, Path]
) -> dict:
    folder = tmp_path_factory.mktemp("uninterrupted")
    job_file = _make_job(folder, *digits_slice)
    report = run_job(load_job_config(job_file))
    report["answers"] = _answers(folder / "out" / "job.db")
    return report


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_job_resumes_same_counters(
    tmp_path: Path, digits_slice: tuple[Path, Path], uninterrupted: dict, point: str
) -> None:
    job_file = _make_job(tmp_path, *digits_slice)
    database = tmp_path / "out" / "job.db"

    killed = _kill_when(job_file, database, KILL_POINTS[point])
    assert killed, f"the job ended before the kill point {point!r}"
    before = _answers(database)

    report = run_job(load_job_config(job_file))
    after = _answers(database)

    assert before <= after
    assert report["status"] == "completed"
    assert report["counters"] == uninterrupted["counters"]
    assert after == uninterrupted["answers"]


def test_resume_with_spreading_turned_off(tmp_path: Path) -> None:
    imported = import_digits(tmp_path / "data", limit=900, seed=5)
    (tmp_path / "job").mkdir()
    job_file = write_job(
        tmp_path / "job",
        job_name="spreading-off",
        task_type="image-classification",
        features="image-mid",
        label_category_file=str(tmp_path / "data" / "class-labels.json"),
        input_manifest=str(imported.manifest),
        workforce={"type": "simulated", "error_rates": [0.0]},
        human_batch_size=40,
        automated_labeling={
            "min_items": 100,
            "validation_size": 200,
            "target_accuracy": 0.99,
        },
        seed=3,
    )
    first = run_job(load_job_config(job_file), max_rounds=1)
    assert first["rounds"][0]["spreading_alpha"] > 0, "round 1 is expected to spread"
    # A bare `off`, which YAML reads as False, as a user would write it.
    job_file.write_text(job_file.read_text() + "label_spreading: off\n")

    report = run_job(load_job_config(job_file), max_rounds=2)
    later = [entry for entry in report["rounds"][1:] if "spreading_alpha" in entry]

    assert later, "no later round scored the pool"
    assert {entry["spreading_alpha"] for entry in later} == {0.0}
