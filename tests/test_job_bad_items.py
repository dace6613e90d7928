"""Bad manifest lines and items fail alone; the rest of the job is labeled."""

from __future__ import annotations

import json
from pathlib import Path

from labelloop.config import load_job_config
from labelloop.importers import import_digits
from labelloop.loop import run_job
from labelloop.store import JobStore

from jobs_support import write_job


def test_image_job_reports_each_bad_line(tmp_path: Path) -> None:
    imported = import_digits(tmp_path / "data", limit=30, seed=0)
    good = [
        json.loads(line)
        for line in imported.manifest.read_text(encoding="utf-8").splitlines()
    ]
    for record in good:
        record["source-ref"] = str(
            (imported.manifest.parent / record["source-ref"]).resolve()
        )
    not_an_image = tmp_path / "data" / "notes.png"
    not_an_image.write_text("this is text, not a PNG", encoding="utf-8")
    truncated = tmp_path / "data" / "truncated.png"
    truncated.write_bytes(Path(good[0]["source-ref"]).read_bytes()[:40])

    bad_lines = {
        3: '{"source-ref": "images/missing.png", "true-label": "1"',
        6: json.dumps({"true-label": "2"}),
        9: json.dumps(
            {"source": "text", "source-ref": good[0]["source-ref"], "true-label": "3"}
        ),
        12: json.dumps(
            {"source-ref": str(tmp_path / "nowhere.png"), "true-label": "4"}
        ),
        15: json.dumps({"source-ref": str(not_an_image), "true-label": "5"}),
        18: json.dumps({"source-ref": str(truncated), "true-label": "6"}),
    }
    lines = []
    good_iter = iter(good)
    for number in range(1, len(good) + len(bad_lines) + 1):
        lines.append(
            bad_lines[number] if number in bad_lines else json.dumps(next(good_iter))
        )
    manifest = tmp_path / "mixed.manifest"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")

    job_file = write_job(
        tmp_path,
        task_type="image-classification",
        label_category_file=str(tmp_path / "data" / "class-labels.json"),
        input_manifest=str(manifest),
        automated_labeling={"enabled": False},
        features="image-mid",
    )
    report = run_job(load_job_config(job_file))

    assert report["counters"]["FailedNonRetryableError"] == 6
    assert report["counters"]["HumanLabeled"] == 30
    assert report["counters"]["Unlabeled"] == 0
    reasons = {failure["line"]: failure["reason"] for failure in report["failures"]}
    assert sorted(reasons) == sorted(bad_lines)
    assert "JSON" in reasons[3]
    assert "source" in reasons[6]
    assert "both" in reasons[9]
    assert "nowhere.png" in reasons[12]
    assert "notes.png" in reasons[15]
    assert "truncated.png" in reasons[18]

    output = [
        json.loads(line)
        for line in Path(report["outputs"]["manifest"]).read_text().splitlines()
    ]
    failed = [
        line for line in output if "failure-reason" in line.get("category-metadata", {})
    ]
    # Lines 15 and 18 were valid JSON with a file, so they stay in the output.
    assert len(failed) == 2
    assert all("category" not in line for line in failed)
    assert sum(1 for line in output if "category" in line) == 30


def test_text_job_fails_empty_text_alone(tmp_path: Path) -> None:
    records = [
        {
            "source": "Stocks rallied after the central bank held rates.",
            "true-label": "business",
        },
        {"source": "   ", "true-label": "sport"},
        {"source": "The striker scored twice in the final.", "true-label": "sport"},
        {"source": "Shares of the chip maker fell 5%.", "true-label": "business"},
        {"source": "The team signed a new goalkeeper.", "true-label": "sprot"},
    ]
    manifest = tmp_path / "texts.manifest"
    manifest.write_text(
        "\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8"
    )
    job_file = write_job(
        tmp_path,
        task_type="text-classification",
        label_categories=["business", "sport"],
        input_manifest=str(manifest),
        automated_labeling={"enabled": False},
    )
    report = run_job(load_job_config(job_file))

    assert report["counters"]["HumanLabeled"] == 3
    assert report["counters"]["FailedNonRetryableError"] == 2
    reasons = {failure["line"]: failure["reason"] for failure in report["failures"]}
    assert "empty" in reasons[2]
    assert "'sprot'" in reasons[5]
    assert "true-label" in reasons[5]


def test_automated_labeling_refused_under_floor(tmp_path: Path) -> None:
    imported = import_digits(tmp_path / "data", limit=40, seed=0)
    job_file = write_job(
        tmp_path,
        task_type="image-classification",
        label_category_file=str(tmp_path / "data" / "class-labels.json"),
        input_manifest=str(imported.manifest),
        features="image-mid",
    )
    report = run_job(load_job_config(job_file))

    assert report["counters"]["HumanLabeled"] == 40
    assert report["counters"]["MachineLabeled"] == 0
    note = report["automated_labeling_note"]
    assert "1250" in note
    assert "humans only" in note
    store = JobStore(load_job_config(job_file).database)
    try:
        assert store.counters()["TotalLabeled"] == 40
    finally:
        store.close()
