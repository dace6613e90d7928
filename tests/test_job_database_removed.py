"""A job stops with an error when its database is deleted or replaced mid-run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labelloop.config import load_job_config
from labelloop.demo import prepare_demo
from labelloop.errors import DatabaseMissingError
from labelloop.loop import run_job
from labelloop.store import JobStore


def test_check_file_passes_while_file_stays(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'job.db'}")

    store.check_file()

    assert store.path == str(tmp_path / "job.db")
    store.close()


def test_check_file_raises_when_deleted(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    store = JobStore(f"sqlite:///{path}")
    path.unlink()

    with pytest.raises(DatabaseMissingError, match="deleted or replaced") as caught:
        store.check_file()

    assert str(path) in str(caught.value)
    store.close()


def test_check_file_raises_when_replaced(tmp_path: Path) -> None:
    path = tmp_path / "job.db"
    store = JobStore(f"sqlite:///{path}")
    replacement = tmp_path / "other.db"
    JobStore(f"sqlite:///{replacement}").close()
    os.replace(replacement, path)

    with pytest.raises(DatabaseMissingError):
        store.check_file()

    store.close()


def test_job_stops_when_database_deleted_mid_round(tmp_path: Path) -> None:
    config = load_job_config(prepare_demo(tmp_path))
    database = config.output_path / "job.db"
    deleted = []

    def delete_during_training(step: str, completed: int, total: int) -> None:
        if "training" in step and not deleted:
            database.unlink()
            deleted.append(step)

    with pytest.raises(DatabaseMissingError):
        run_job(config, progress=delete_during_training)

    assert deleted
    assert not (
        config.output_path / "manifests" / "output" / "output.manifest"
    ).exists()
