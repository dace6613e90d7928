"""Manifest lines that Python's JSON reader or path handling trips on fail alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

from labelloop.config import load_job_config
from labelloop.importers import import_digits
from labelloop.loop import run_job
from labelloop.manifest import read_manifest

from jobs_support import write_job

GOOD = '{"source": "a good line", "true-label": "a"}'


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_unreadable_json_lines_fail_alone(tmp_path: Path) -> None:
    manifest = write_lines(
        tmp_path / "input.manifest",
        [
            GOOD.encode(),
            b'{"source": "x", "n": ' + b"9" * 5000 + b"}",
            b'{"source": "x", "n": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            b'{"source": "lone \\ud800 surrogate"}',
            b'{"source": "x", "\\udc00": 1}',
            b'{"source": "a pair \\ud83d\\ude00 is one character"}',
            b'{"source": "x", "n": ' + b"[" * 990 + b"]" * 990 + b"}",
        ],
    )
    items, errors = read_manifest(manifest)

    assert [item.line for item in items] == [1, 6]
    reasons = {error.line: error.reason for error in errors}
    assert sorted(reasons) == [2, 3, 4, 5, 7]
    assert "digits" in reasons[2]
    assert "string" in reasons[2]
    assert "nested more than" in reasons[3]
    assert "surrogate" in reasons[4]
    assert "'\\ud800'" in reasons[4]
    assert "surrogate" in reasons[5]
    # Nesting that json.loads reads but the database's JSON encoder cannot write.
    assert "nested more than" in reasons[7]


def test_source_ref_paths_that_break_pathlib_fail_alone(tmp_path: Path) -> None:
    os.symlink("loop-b", tmp_path / "loop-a")
    os.symlink("loop-a", tmp_path / "loop-b")
    (tmp_path / "image.png").write_bytes(b"not decoded while reading")
    manifest = write_lines(
        tmp_path / "input.manifest",
        [
            json.dumps({"source-ref": "image.png"}).encode(),
            json.dumps({"source-ref": "loop-a"}).encode(),
            json.dumps({"source-ref": "x" * 5000}).encode(),
            json.dumps({"source-ref": "a\u0000b.png"}).encode(),
            json.dumps({"source-ref": "file:///tmp/%00.png"}).encode(),
        ],
    )
    items, errors = read_manifest(manifest)

    assert [item.line for item in items] == [1]
    reasons = {error.line: error.reason for error in errors}
    assert sorted(reasons) == [2, 3, 4, 5]
    assert "loop" in reasons[2].lower()
    assert "too long" in reasons[3]
    assert len(reasons[3]) < 400
    assert "null byte" in reasons[4]
    assert "null byte" in reasons[5]


def test_surrogate_line_leaves_outputs_written(tmp_path: Path) -> None:
    imported = import_digits(tmp_path / "data", limit=12, seed=0)
    lines = imported.manifest.read_bytes().splitlines()
    record = json.loads(lines[0])
    bad = json.dumps({**record, "note": "x"}).replace('"x"', '"\\udc00"')
    lines.insert(3, bad.encode())
    manifest = write_lines(imported.manifest, lines)
    job_file = write_job(
        tmp_path,
        task_type="image-classification",
        label_category_file=str(tmp_path / "data" / "class-labels.json"),
        input_manifest=str(manifest),
        automated_labeling={"enabled": False},
        features="image-mid",
    )

    report = run_job(load_job_config(job_file))

    assert report["counters"]["HumanLabeled"] == 12
    assert report["counters"]["FailedNonRetryableError"] == 1
    assert [failure["line"] for failure in report["failures"]] == [4]
    output = Path(report["outputs"]["manifest"]).read_text(encoding="utf-8")
    assert len(output.splitlines()) == 12
