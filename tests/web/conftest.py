"""Fixtures of the web tests: real job databases and a live uvicorn server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labelloop.data import data_dir
from labelloop.web import create_app

from web_support import Job, LiveServer, build_job


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_dir()
    if not (root / "ag_news" / "test.csv").is_file():
        pytest.skip(f"shared datasets not found under {root} (set LABELLOOP_DATA_DIR)")
    return root


@pytest.fixture
def serve() -> Iterator[Callable[[Job], LiveServer]]:
    """Start the web app of a job on loopback; every server stops after the test."""
    servers: list[LiveServer] = []

    def start(job: Job, **options: object) -> LiveServer:
        server = LiveServer(create_app(job.config, job.store, **options))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def text_job(tmp_path: Path, shared_data: Path) -> Iterator[Job]:
    job = build_job(tmp_path / "text", dataset="ag_news", n_items=6)
    yield job
    job.store.close()


@pytest.fixture
def image_job(tmp_path: Path, shared_data: Path) -> Iterator[Job]:
    job = build_job(tmp_path / "image", dataset="mnist", n_items=4, name="web-images")
    yield job
    job.store.close()
