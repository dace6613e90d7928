"""A whole job under a reference threshold rule, run through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from labelloop.cli import main
from labelloop.demo import prepare_demo


def test_empirical_job_reports_no_bound(tmp_path: Path) -> None:
    job_file = prepare_demo(tmp_path)
    job = yaml.safe_load(job_file.read_text(encoding="utf-8"))
    job["automated_labeling"]["threshold_method"] = "empirical"
    job_file.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")

    result = CliRunner().invoke(main, ["run", str(job_file)])

    assert result.exit_code == 0, result.output
    report = json.loads(
        (tmp_path / "job" / "report" / "report.json").read_text(encoding="utf-8")
    )
    assert report["counters"]["MachineLabeled"] > 0
    assert report["machine_labels"]["certified_error_bound"] is None
    assert report["guarantee"].startswith("No guarantee")
    assert "not certified" in result.output
    assert "estimated accuracy" in result.output
