"""A job runs in one process at a time and keeps the settings it certified under."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labelloop.config import load_job_config
from labelloop.errors import ConfigError, JobBusyError
from labelloop.importers import import_digits
from labelloop.job import _same_file, lock_job
from labelloop.loop import run_job

from jobs_support import write_job


def digits_job(folder: Path, *, n_items: int, **fields: object) -> Path:
    imported = import_digits(folder / "data", limit=n_items, seed=0)
    return write_job(
        folder,
        task_type="image-classification",
        label_category_file=str(folder / "data" / "class-labels.json"),
        input_manifest=str(imported.manifest),
        features="image-mid",
        **fields,
    )


def test_second_run_of_a_running_job_stops(tmp_path: Path) -> None:
    config = load_job_config(
        digits_job(tmp_path, n_items=10, automated_labeling={"enabled": False})
    )
    lock = lock_job(config)
    try:
        with pytest.raises(JobBusyError, match="already running in process"):
            run_job(config)
        assert not (config.output_path / "job.db").exists()
    finally:
        lock.release()

    report = run_job(config)

    assert report["counters"]["HumanLabeled"] == 10
    # The finished run released its lock and removed the file.
    assert not (config.output_path / "job.lock").exists()
    lock_job(config).release()


def test_stale_lock_file_taken_over(tmp_path: Path) -> None:
    config = load_job_config(
        digits_job(tmp_path, n_items=10, automated_labeling={"enabled": False})
    )
    config.output_path.mkdir(parents=True)
    # A killed process leaves its file behind, but the system dropped its lock.
    (config.output_path / "job.lock").write_text("12345\n", encoding="utf-8")

    report = run_job(config)

    assert report["counters"]["HumanLabeled"] == 10
    assert not (config.output_path / "job.lock").exists()


def test_lock_on_removed_file_ignored(tmp_path: Path) -> None:
    config = load_job_config(
        digits_job(tmp_path, n_items=10, automated_labeling={"enabled": False})
    )
    first = lock_job(config)
    path = config.output_path / "job.lock"
    # A second process opened the file just before the first one finished.
    stale = path.open("a+", encoding="utf-8")
    try:
        assert _same_file(stale, path)
        first.release()
        # The handle now refers to a removed file, so a lock on it would not
        # keep out a third run, which creates a new file.
        assert not _same_file(stale, path)
        second = lock_job(config)
        # The new lock is on a new file, not the one the stale handle refers to.
        assert not _same_file(stale, path)
        with pytest.raises(JobBusyError):
            lock_job(config)
        second.release()
    finally:
        stale.close()


def test_certified_settings_cannot_change_after_machine_labels(
    tmp_path: Path,
) -> None:
    settings = {"min_items": 100, "target_accuracy": 0.6, "validation_size": 100}
    job_file = digits_job(tmp_path, n_items=300, automated_labeling=settings)
    first = run_job(load_job_config(job_file), max_rounds=1)
    assert first["counters"]["MachineLabeled"] > 0

    job = yaml.safe_load(job_file.read_text(encoding="utf-8"))
    job["automated_labeling"]["target_accuracy"] = 0.9
    job_file.write_text(yaml.safe_dump(job), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"target_accuracy=0\.6.*now sets 0\.9"):
        run_job(load_job_config(job_file))

    job["automated_labeling"]["target_accuracy"] = 0.6
    job_file.write_text(yaml.safe_dump(job), encoding="utf-8")
    second = run_job(load_job_config(job_file), max_rounds=2)
    assert second["counters"]["MachineLabeled"] >= first["counters"]["MachineLabeled"]
