"""Build job files on real data for the job-level tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from labelloop.data import data_dir


def require_shared_data(*parts: str) -> Path:
    """Return the shared data folder, or skip when ``parts`` is not under it."""
    root = data_dir()
    if not root.joinpath(*parts).exists():
        pytest.skip(
            f"shared dataset {'/'.join(parts)} not found under {root}; set "
            "LABELLOOP_DATA_DIR to the folder of the labeled datasets"
        )
    return root


def write_job(folder: Path, **fields: Any) -> Path:
    """Write a job file into ``folder`` and return its path."""
    job = {
        "job_name": "test-job",
        "label_attribute_name": "category",
        "output_path": str(folder / "out"),
        "seed": 0,
    }
    job.update(fields)
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    return path
