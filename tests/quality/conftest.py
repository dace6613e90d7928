"""Fixtures of the worker-quality tests: whole jobs on a slice of the digits."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from labelloop.config import JobConfig, load_job_config
from labelloop.importers import import_digits
from labelloop.loop import run_job
from labelloop.store import JobStore

DIGITS = [str(digit) for digit in range(10)]


@dataclass
class DigitsJob:
    """A job on a slice of scikit-learn's digits, with its database open."""

    config: JobConfig
    job_file: Path
    store: JobStore
    truth: dict[int, int]

    def rerun(self, **options: Any) -> dict[str, Any]:
        """Resume the job (``max_rounds`` may cap it) and return its report."""
        return run_job(self.config, **options)


@pytest.fixture
def digits_job(tmp_path: Path) -> Iterator[Callable[..., tuple[DigitsJob, dict]]]:
    """Return a function that writes and runs a digits job, then its report.

    Keyword arguments: ``name`` (sub-folder), ``limit`` (digits drawn),
    ``classes`` (keep only items of these classes, which become the label
    categories), ``categories`` (label categories, default ``classes``),
    ``gold`` (the first ``gold`` items get a ``gold-label`` key),
    ``max_rounds`` and any job file field.
    """
    stores: list[JobStore] = []

    def run(
        *,
        name: str = "job",
        limit: int = 150,
        classes: list[str] | None = None,
        categories: list[str] | None = None,
        gold: int = 0,
        max_rounds: int | None = None,
        **fields: Any,
    ) -> tuple[DigitsJob, dict]:
        folder = tmp_path / name
        imported = import_digits(folder / "data", limit=limit, seed=0)
        lines = imported.manifest.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines]
        classes = classes or DIGITS
        records = [record for record in records if record["true-label"] in classes]
        for record in records[:gold]:
            record["gold-label"] = record["true-label"]
        manifest = folder / "data" / "job.manifest"
        manifest.write_text(
            "".join(json.dumps(record) + "\n" for record in records), encoding="utf-8"
        )

        job = {
            "job_name": f"quality-{name}",
            "task_type": "image-classification",
            "label_attribute_name": "digit",
            "label_categories": categories or classes,
            "input_manifest": str(manifest),
            "output_path": str(folder / "out"),
            "automated_labeling": {"enabled": False},
            "human_batch_size": 50,
            "seed": 0,
        }
        job.update(fields)
        job_file = folder / "job.yaml"
        job_file.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
        config = load_job_config(job_file)
        report = run_job(config, max_rounds=max_rounds)

        store = JobStore(config.database)
        stores.append(store)
        index = {name: k for k, name in enumerate(config.label_categories)}
        truth = {
            item.id: index[item.record["true-label"]]
            for item in store.items()
            if item.record and item.record.get("true-label") in index
        }
        return DigitsJob(config, job_file, store, truth), report

    yield run
    for store in stores:
        store.close()
