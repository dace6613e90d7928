"""Command-line commands of the web workforce: workers, admin-token and serve."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from click.testing import CliRunner

from labelloop.config import load_job_config
from labelloop.importers import LABEL_CATEGORY_FILE_NAME, import_ag_news
from labelloop.store import JobStore
from labelloop.store.schema import Worker
from labelloop.web.auth import hash_secret
from labelloop.web.commands import admin_token_command, workers_group


@pytest.fixture
def job_file(tmp_path: Path, shared_data: Path) -> Path:
    import_ag_news(tmp_path / "data", limit=4, seed=1)
    path = tmp_path / "job.yaml"
    document = {
        "job_name": "cli-job",
        "task_type": "text-classification",
        "label_attribute_name": "topic",
        "label_category_file": f"data/{LABEL_CATEGORY_FILE_NAME}",
        "input_manifest": "data/manifest.jsonl",
        "output_path": "output",
        "workforce": {"type": "web"},
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link.strip()).query)["token"][0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_workers_add_prints_login_link(job_file: Path) -> None:
    result = CliRunner().invoke(
        workers_group,
        ["add", "alice", str(job_file), "--base-url", "http://127.0.0.1:9000"],
    )

    assert result.exit_code == 0, result.output
    link = result.output.strip()
    assert link.startswith("http://127.0.0.1:9000/login?token=")
    store = JobStore(load_job_config(job_file).database)
    with store.session() as session:
        worker = session.get(Worker, "alice")
    store.close()
    assert worker.kind == "web"
    assert worker.token_hash == hash_secret(token_of(link))


def test_workers_add_rejects_bad_name(job_file: Path) -> None:
    result = CliRunner().invoke(workers_group, ["add", "../alice", str(job_file)])

    assert result.exit_code != 0
    assert "invalid worker name '../alice'" in result.output


def test_workers_list_and_deactivate(job_file: Path) -> None:
    runner = CliRunner()
    runner.invoke(workers_group, ["add", "alice", str(job_file)])
    runner.invoke(workers_group, ["add", "bob", str(job_file)])

    deactivated = runner.invoke(workers_group, ["deactivate", "bob", str(job_file)])
    listing = runner.invoke(workers_group, ["list", str(job_file)])
    unknown = runner.invoke(workers_group, ["deactivate", "carol", str(job_file)])

    assert deactivated.exit_code == 0
    rows = {line.split()[0]: line.split() for line in listing.output.splitlines()[1:]}
    assert rows["alice"][1:] == ["yes", "0", "yes"]
    assert rows["bob"][1:] == ["no", "0", "no"]
    assert unknown.exit_code != 0
    assert "no web worker named 'carol'" in unknown.output


def test_admin_token_prints_admin_link(job_file: Path) -> None:
    result = CliRunner().invoke(admin_token_command, [str(job_file)])

    assert result.exit_code == 0, result.output
    assert result.output.startswith("http://127.0.0.1:8000/admin/login?token=")


def test_serve_runs_until_interrupted(job_file: Path) -> None:
    port = free_port()
    worker_link = (
        CliRunner()
        .invoke(
            workers_group,
            ["add", "alice", str(job_file), "--base-url", f"http://127.0.0.1:{port}"],
        )
        .output.strip()
    )
    command = [
        sys.executable,
        "-c",
        "from labelloop.web.commands import serve_command; serve_command()",
        str(job_file),
        "--port",
        str(port),
        "--no-run-loop",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        admin_line = process.stdout.readline()
        assert admin_line.startswith("Owner dashboard (one-time link): "), admin_line
        admin_link = admin_line.split(": ", 1)[1].strip()
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/openapi.json")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "serve did not start in 30 s"
                time.sleep(0.2)

        with httpx.Client() as owner, httpx.Client() as worker:
            assert owner.get(admin_link).status_code == 303
            summary = owner.get(f"http://127.0.0.1:{port}/api/admin/summary")
            assert worker.get(worker_link).status_code == 303
            next_task = worker.get(f"http://127.0.0.1:{port}/api/tasks/next")
    finally:
        process.send_signal(signal.SIGINT)
        _, log = process.communicate(timeout=30)

    assert summary.status_code == 200
    assert summary.json()["job_name"] == "cli-job"
    assert summary.json()["job_status"] == "not started"
    assert next_task.status_code == 200
    assert next_task.json()["task"] is None
    assert process.returncode == 0
    assert "worker alice logged in" in log
    assert "web app of job cli-job stopped" in log
    assert token_of(admin_link) not in log
    assert token_of(worker_link) not in log
