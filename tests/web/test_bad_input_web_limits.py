"""Oversized request bodies and unusable report names get 4xx JSON errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from labelloop.web import issue_admin_token
from labelloop.web.app import MAX_BODY_BYTES

from web_support import Job, build_text_job, login


@pytest.fixture
def job(tmp_path: Path) -> Iterator[Job]:
    built = build_text_job(tmp_path, ["first text", "second text"], ["a", "b"])
    yield built
    built.store.close()


def chunks(total: int) -> Iterator[bytes]:
    yield b'{"label": "'
    for _ in range(total // 65536):
        yield b"a" * 65536
    yield b'"}'


@pytest.mark.parametrize("streamed", [False, True])
def test_oversized_body_gets_413(job: Job, serve, streamed: bool) -> None:
    server = serve(job)
    client = server.client()
    size = MAX_BODY_BYTES * 4
    body = chunks(size) if streamed else b"".join(chunks(size))
    response = client.post(
        "/api/tasks/1/answer",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    assert "Content-Security-Policy" in response.headers

    worker = login(server, job.store, "alice")
    task = worker.get("/api/tasks/next").json()["task"]
    answered = worker.post(
        f"/api/tasks/{task['assignment_id']}/answer", json={"label": "a"}
    )
    assert answered.status_code == 200, answered.text


def test_unusable_report_names_get_404(job: Job, serve) -> None:
    report_dir = job.config.output_path / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    os.symlink("loop-b", report_dir / "loop-a")
    os.symlink("loop-a", report_dir / "loop-b")
    server = serve(job)
    client = server.client()
    token = issue_admin_token(job.store)
    assert client.get("/admin/login", params={"token": token}).status_code == 303

    for name in ["loop-a", "a%00b", "x" * 5000]:
        response = client.get(f"/admin/report/{name}")
        assert response.status_code == 404, (name[:20], response.text)
        assert "not found" in response.json()["detail"]
