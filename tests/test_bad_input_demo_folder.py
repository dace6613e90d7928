"""The demo writes only into a new, empty or earlier demo folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from labelloop.cli import main
from labelloop.demo import prepare_demo
from labelloop.errors import ConfigError


def test_demo_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("job_name: mine\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not empty"):
        prepare_demo(tmp_path)
    assert (tmp_path / "job.yaml").read_text(encoding="utf-8") == "job_name: mine\n"
    assert not (tmp_path / "data").exists()


def test_demo_output_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("a file", encoding="utf-8")
    result = CliRunner().invoke(main, ["demo", "--output", str(target)])
    assert result.exit_code == 1
    assert "is a file" in result.output
    assert isinstance(result.exception, SystemExit)


def test_demo_folder_can_be_prepared_twice(tmp_path: Path) -> None:
    first = prepare_demo(tmp_path / "demo")
    second = prepare_demo(tmp_path / "demo")
    assert first == second
    assert "digits-demo" in second.read_text(encoding="utf-8")
