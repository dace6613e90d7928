"""Unreadable job, category and database files get errors that name the fix."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from labelloop.cli import main
from labelloop.config import load_job_config
from labelloop.errors import ConfigError
from labelloop.job import open_job
from labelloop.store import JobStore

JOB = {
    "job_name": "bad-input",
    "task_type": "text-classification",
    "label_attribute_name": "topic",
    "label_categories": ["a", "b"],
    "input_manifest": "input.manifest",
    "output_path": "out",
    "automated_labeling": {"enabled": False},
}


def write_job(folder: Path, **fields: object) -> Path:
    (folder / "input.manifest").write_text(
        '{"source": "some text", "true-label": "a"}\n', encoding="utf-8"
    )
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump({**JOB, **fields}), encoding="utf-8")
    return path


def test_job_file_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Is a directory"):
        load_job_config(tmp_path)


def test_job_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(b"job_name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8.*save it as UTF-8"):
        load_job_config(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "Is a directory"), (b"\xff\xfe{}", "not UTF-8")],
)
def test_unreadable_label_category_file(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    categories = tmp_path / "categories.json"
    if content is None:
        categories.mkdir()
    else:
        categories.write_bytes(content)
    job = {**JOB, "label_category_file": "categories.json"}
    del job["label_categories"]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_job_config(path)


def test_yaml_alias_bomb_error_stays_short(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, 12):
        aliases = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    lines.append("job_name: [*a11]")
    path = tmp_path / "job.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    started = time.perf_counter()
    with pytest.raises(ConfigError) as raised:
        load_job_config(path)

    assert time.perf_counter() - started < 10
    job_name_line = next(
        line for line in str(raised.value).splitlines() if "job_name" in line
    )
    assert len(job_name_line) < 300


@pytest.mark.parametrize("under", [False, True])
def test_output_path_that_is_a_file(tmp_path: Path, under: bool) -> None:
    (tmp_path / "taken").write_text("a file", encoding="utf-8")
    output = "taken/out" if under else "taken"
    config = load_job_config(write_job(tmp_path, output_path=output))
    with pytest.raises(ConfigError, match="output_path .* cannot be used"):
        open_job(config)
    assert (tmp_path / "taken").read_text(encoding="utf-8") == "a file"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "cannot be used"),
        ("nosuchdialect://x", "cannot be used"),
        ("sqlite:////nonexistent-folder/x/job.db", "cannot open the job database"),
    ],
)
def test_unusable_database_url(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        JobStore(url)


def test_corrupt_database_file(tmp_path: Path) -> None:
    job_file = write_job(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "job.db").write_text("not a database", encoding="utf-8")

    with pytest.raises(ConfigError, match="file is not a database"):
        open_job(load_job_config(job_file))

    result = CliRunner().invoke(main, ["status", str(job_file)])
    assert result.exit_code == 1
    assert "file is not a database" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_status_of_unreadable_job_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_bytes(json.dumps(JOB).encode("utf-16"))
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 1
    assert "not UTF-8" in result.output
    assert isinstance(result.exception, SystemExit)
