"""Helpers of the web tests: real job databases, a live uvicorn server, logins."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from labelloop.config import AutomatedLabeling, JobConfig, TaskType, WebWorkforce
from labelloop.importers import (
    ImportResult,
    import_ag_news,
    import_cifar10,
    import_mnist,
)
from labelloop.manifest import read_manifest, write_manifest
from labelloop.store import JobStore
from labelloop.web import add_worker, create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Job:
    """A job database with one open round, as the loop would post it."""

    config: JobConfig
    store: JobStore
    item_ids: list[int]
    task_ids: list[int]


def build_job(
    folder: Path,
    *,
    dataset: str = "ag_news",
    n_items: int = 6,
    workers_per_item: int = 2,
    name: str = "web-test",
    seed: int = 0,
) -> Job:
    """Import a slice of a shared dataset into a new job and post all its tasks."""
    importers = {
        "ag_news": (import_ag_news, TaskType.TEXT_CLASSIFICATION),
        "mnist": (import_mnist, TaskType.IMAGE_CLASSIFICATION),
        "cifar10": (import_cifar10, TaskType.IMAGE_CLASSIFICATION),
    }
    importer, task_type = importers[dataset]
    imported = importer(folder / "import", limit=n_items, seed=seed)
    return job_from_manifest(
        folder,
        imported.manifest,
        imported.class_names,
        task_type=task_type,
        workers_per_item=workers_per_item,
        name=name,
    )


def build_text_job(
    folder: Path,
    texts: list[str],
    class_names: list[str],
    *,
    workers_per_item: int = 1,
    name: str = "web-text",
) -> Job:
    """Write the texts as a manifest and make a job of them with all tasks posted."""
    manifest = folder / "manifest.jsonl"
    write_manifest(manifest, [{"source": text} for text in texts])
    return job_from_manifest(
        folder,
        manifest,
        class_names,
        task_type=TaskType.TEXT_CLASSIFICATION,
        workers_per_item=workers_per_item,
        name=name,
    )


def job_from_manifest(
    folder: Path,
    manifest: Path,
    class_names: list[str],
    *,
    task_type: TaskType,
    workers_per_item: int,
    name: str,
) -> Job:
    """Create the job database of a manifest and post round 1 with every item."""
    config = JobConfig(
        job_name=name,
        task_type=task_type,
        label_attribute_name="category",
        label_categories=tuple(class_names),
        input_manifest=manifest,
        output_path=folder / "output",
        workforce=WebWorkforce(),
        workers_per_item=workers_per_item,
        task_time_limit_seconds=60,
    )
    config.output_path.mkdir(parents=True, exist_ok=True)
    store = JobStore(config.database)
    items, failures = read_manifest(manifest)
    store.create_job(
        name=name,
        task_type=task_type.value,
        class_names=class_names,
        config=config.model_dump(mode="json"),
        items=[
            (
                item.line,
                item.record,
                str(item.source_ref) if item.source_ref else None,
                item.source,
            )
            for item in items
        ],
        failures=[(error.line, error.reason) for error in failures],
    )
    item_ids = [item.id for item in store.items()]
    store.start_round(1, validation_ids=item_ids, query_ids=[], plan={})
    task_ids = [task.id for task in store.tasks(round_number=1)]
    return Job(config=config, store=store, item_ids=item_ids, task_ids=task_ids)


class LiveServer:
    """A uvicorn server on a free loopback port, run in a thread."""

    def __init__(self, app: object) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app, access_log=False, log_config=None, lifespan="on", ws="none"
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._clients: list[httpx.Client] = []

    def client(self) -> httpx.Client:
        """Return a new client of this server, closed when the server stops."""
        client = httpx.Client(base_url=self.base_url, timeout=60)
        self._clients.append(client)
        return client

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start within 20 s")
            time.sleep(0.02)

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self.server.should_exit = True
        self._thread.join(timeout=20)
        self._socket.close()


@dataclass
class WebLoop:
    """A job's labeling loop running in a thread beside a live server of the job."""

    config: JobConfig
    store: JobStore
    server: LiveServer
    thread: threading.Thread
    #: Exceptions raised by the loop, empty unless it failed.
    failures: list[BaseException]


def start_web_loop(
    folder: Path,
    imported: ImportResult,
    *,
    job_name: str,
    task_type: TaskType,
    attribute: str,
    poll_seconds: float,
    human_batch_size: int,
    **config_fields: Any,
) -> WebLoop:
    """Create a web job of the imported items, start its server, then its loop.

    Each item goes to two workers, and automated labeling is off unless
    ``config_fields``, which sets further `JobConfig` fields, turns it on.
    The loop runs in a daemon thread. The caller stops the server and closes
    the store.
    """
    config_fields.setdefault("automated_labeling", AutomatedLabeling(enabled=False))
    config = JobConfig(
        job_name=job_name,
        task_type=task_type,
        label_attribute_name=attribute,
        label_categories=tuple(imported.class_names),
        input_manifest=imported.manifest,
        output_path=folder / "output",
        workforce=WebWorkforce(poll_seconds=poll_seconds),
        workers_per_item=2,
        human_batch_size=human_batch_size,
        **config_fields,
    )
    config.output_path.mkdir(parents=True)
    store = JobStore(config.database)
    server = LiveServer(create_app(config, store))
    server.start()
    failures: list[BaseException] = []

    def run_loop() -> None:
        from labelloop.loop import run_job

        try:
            run_job(config)
        except BaseException as error:  # the test asserts that none was raised
            failures.append(error)

    thread = threading.Thread(target=run_loop, daemon=True)
    thread.start()
    return WebLoop(
        config=config, store=store, server=server, thread=thread, failures=failures
    )


def login(server: LiveServer, store: JobStore, name: str) -> httpx.Client:
    """Add a worker, follow their login link and return a client with the session.

    The client sends the session's CSRF token on every request.
    """
    token = add_worker(store, name)
    client = server.client()
    response = client.get("/login", params={"token": token})
    assert response.status_code == 303, response.text
    me = client.get("/api/me")
    assert me.status_code == 200, me.text
    client.headers["X-CSRF-Token"] = me.json()["csrf_token"]
    return client
