"""Load test of the web workforce: many simulated workers against one server.

Creates an AG News job with one open round, starts ``labelloop serve`` on loopback
in a subprocess, and drives ``--workers`` concurrent workers (asyncio + httpx)
through login, fetching a task and answering it (or skipping 5 % of tasks) for
``--seconds``. Afterwards it checks the job database: every answer the server
acknowledged with 2xx is stored, no worker answered an item twice, and no task
has more than ``workers_per_item`` answers. It prints throughput and latency
percentiles and writes them to their section of ``docs/benchmarks.md``.

Run from the repository root::

    python benchmarks/web_load.py --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import yaml

from labelloop.config import load_job_config
from labelloop.importers import LABEL_CATEGORY_FILE_NAME, import_ag_news
from labelloop.job import open_job
from labelloop.web import add_worker, login_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import write_section  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SKIP_SHARE = 0.05


@dataclass
class WorkerLog:
    """What one simulated worker sent and what the server answered."""

    name: str
    fetch_seconds: list[float] = field(default_factory=list)
    submit_seconds: list[float] = field(default_factory=list)
    skip_seconds: list[float] = field(default_factory=list)
    accepted: list[tuple[str, int, int]] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    repeated_items: int = 0
    transport_errors: int = 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="run time")
    parser.add_argument("--workers", type=int, default=50, help="concurrent workers")
    parser.add_argument("--items", type=int, default=7600, help="AG News items")
    parser.add_argument("--workers-per-item", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO / "docs" / "benchmarks.md",
        help="Markdown page that receives the result table",
    )
    return parser.parse_args()


def make_job(folder: Path, args: argparse.Namespace) -> Path:
    """Import AG News, write the job file, create the job and post round 1."""
    import_ag_news(folder / "data", limit=args.items, seed=args.seed)
    job_file = folder / "job.yaml"
    document = {
        "job_name": "web-load",
        "task_type": "text-classification",
        "label_attribute_name": "topic",
        "label_category_file": f"data/{LABEL_CATEGORY_FILE_NAME}",
        "input_manifest": "data/manifest.jsonl",
        "output_path": "output",
        "workforce": {"type": "web"},
        "workers_per_item": args.workers_per_item,
    }
    job_file.write_text(yaml.safe_dump(document), encoding="utf-8")
    store = open_job(load_job_config(job_file))
    item_ids = [item.id for item in store.items()]
    store.start_round(1, validation_ids=item_ids, query_ids=[], plan={})
    store.close()
    return job_file


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(job_file: Path, port: int, log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-c",
        "from labelloop.web.commands import serve_command; serve_command()",
        str(job_file),
        "--port",
        str(port),
        "--no-run-loop",
    ]
    log = log_path.open("w")
    process = subprocess.Popen(command, stdout=log, stderr=log, cwd=REPO)
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5)
            return process
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"server did not start; see {log_path}") from None
            time.sleep(0.2)


async def run_worker(
    name: str, link: str, base_url: str, categories: list[str], stop_at: float
) -> WorkerLog:
    log = WorkerLog(name)
    rng = random.Random(name)
    seen_items: set[int] = set()
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        login = await client.get(link)
        if login.status_code != 303:
            raise RuntimeError(f"login of {name} failed: {login.status_code}")
        me = (await client.get("/api/me")).json()
        client.headers["X-CSRF-Token"] = me["csrf_token"]

        while time.perf_counter() < stop_at:
            try:
                started = time.perf_counter()
                response = await client.get("/api/tasks/next")
                log.fetch_seconds.append(time.perf_counter() - started)
                log.statuses[f"GET next {response.status_code}"] += 1
                task = response.json().get("task") if response.is_success else None
                if task is None:
                    await asyncio.sleep(0.5)
                    continue
                if task["item_id"] in seen_items:
                    log.repeated_items += 1

                path = f"/api/tasks/{task['assignment_id']}"
                if rng.random() < SKIP_SHARE:
                    started = time.perf_counter()
                    response = await client.post(f"{path}/skip")
                    log.skip_seconds.append(time.perf_counter() - started)
                    log.statuses[f"POST skip {response.status_code}"] += 1
                    continue

                class_index = rng.randrange(len(categories))
                started = time.perf_counter()
                response = await client.post(
                    f"{path}/answer", json={"label": categories[class_index]}
                )
                log.submit_seconds.append(time.perf_counter() - started)
                log.statuses[f"POST answer {response.status_code}"] += 1
                if response.is_success:
                    log.accepted.append((name, task["item_id"], class_index))
                    seen_items.add(task["item_id"])
            except httpx.TransportError:
                log.transport_errors += 1
    return log


async def drive(
    links: dict[str, str], base_url: str, categories: list[str], seconds: float
) -> tuple[list[WorkerLog], float]:
    started = time.perf_counter()
    stop_at = started + seconds
    logs = await asyncio.gather(
        *(
            run_worker(name, link, base_url, categories, stop_at)
            for name, link in links.items()
        )
    )
    return list(logs), time.perf_counter() - started


def check_database(database: Path, logs: list[WorkerLog], per_item: int) -> dict:
    """Compare the acknowledged answers with the database; return the findings."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT worker_id, item_id, task_id, json_extract(value, '$.class') "
            "FROM answers"
        ).fetchall()
    stored = Counter((worker, item, int(label)) for worker, item, _, label in rows)
    accepted = Counter(entry for log in logs for entry in log.accepted)
    per_task = Counter(task for _, _, task, _ in rows)
    per_worker_item = Counter((worker, item) for worker, item, _, _ in rows)
    return {
        "answers acknowledged (2xx)": sum(accepted.values()),
        "answers stored": len(rows),
        "acknowledged answers missing from the database": sum(
            (accepted - stored).values()
        ),
        "stored answers never acknowledged": sum((stored - accepted).values()),
        "items answered twice by one worker": sum(
            1 for count in per_worker_item.values() if count > 1
        ),
        "items offered again after the worker answered": sum(
            log.repeated_items for log in logs
        ),
        f"tasks with more than {per_item} answers": sum(
            1 for count in per_task.values() if count > per_item
        ),
        f"tasks with all {per_item} answers": sum(
            1 for count in per_task.values() if count == per_item
        ),
        "transport errors": sum(log.transport_errors for log in logs),
    }


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (float("nan"),) * 3
    p50, p90, p99 = np.percentile(np.array(values) * 1000, [50, 90, 99])
    return float(p50), float(p90), float(p99)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def report(
    args: argparse.Namespace,
    logs: list[WorkerLog],
    elapsed: float,
    findings: dict,
    command: str,
    load_before: float,
) -> str:
    rows = []
    for label, attribute in (
        ("fetch task (GET /api/tasks/next)", "fetch_seconds"),
        ("submit answer (POST .../answer)", "submit_seconds"),
        ("skip task (POST .../skip)", "skip_seconds"),
    ):
        values = [value for log in logs for value in getattr(log, attribute)]
        p50, p90, p99 = percentiles(values)
        rows.append(
            f"| {label} | {len(values)} | {len(values) / elapsed:.1f} | "
            f"{p50:.1f} | {p90:.1f} | {p99:.1f} |"
        )
    total = sum(
        len(log.fetch_seconds) + len(log.submit_seconds) + len(log.skip_seconds)
        for log in logs
    )
    statuses = Counter()
    for log in logs:
        statuses.update(log.statuses)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    lines = [
        "# Web workforce load test",
        "",
        f"{args.workers} simulated workers fetch and answer tasks of one AG News "
        f"round ({args.items} items, {args.workers_per_item} workers per item) for "
        f"{args.seconds:g} s against one `labelloop serve` process on loopback, "
        "with the job in SQLite (WAL, synchronous=FULL). Each worker sends its "
        "next request as soon as the previous one returns, so these numbers are "
        f"the server's saturation throughput; {SKIP_SHARE:.0%} of tasks are skipped.",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Machine: {cpu_model()}, {cores or os.cpu_count()} cores available; "
        "clients and server share them; 1-minute load average "
        f"{load_before:.1f} just before the run (other processes included)",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        "",
        f"Total: {total} requests in {elapsed:.1f} s, {total / elapsed:.1f} "
        "requests/s. For scale, an estimate rather than a measurement: a person "
        "who takes 5 s per item sends two requests per item, so 50 such people "
        "send about 20 requests/s.",
        "",
        "| request | count | per second | p50 ms | p90 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Checks against the job database after the run (all counts of problems "
        "must be 0):",
        "",
        "| check | value |",
        "|---|---:|",
        *[f"| {name} | {value} |" for name, value in findings.items()],
        "",
        "HTTP status counts:",
        "",
        "| request and status | count |",
        "|---|---:|",
        *[f"| {name} | {count} |" for name, count in sorted(statuses.items())],
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    command = "python benchmarks/web_load.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="labelloop-web-load-") as folder:
        job_file = make_job(Path(folder), args)
        config = load_job_config(job_file)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        store = open_job(config)
        links = {
            f"worker-{index:02d}": login_url(
                base_url, add_worker(store, f"worker-{index:02d}")
            )
            for index in range(args.workers)
        }
        store.close()

        server = start_server(job_file, port, Path(folder) / "server.log")
        load_before = os.getloadavg()[0]
        try:
            logs, elapsed = asyncio.run(
                drive(links, base_url, list(config.label_categories), args.seconds)
            )
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)

        database = config.output_path / "job.db"
        findings = check_database(database, logs, args.workers_per_item)

    page = report(args, logs, elapsed, findings, command, load_before)
    body = page.split("\n", 1)[1] if page.startswith("# ") else page
    write_section("web", "Web workforce under load", body, page=args.output)
    print(page)

    problems = [
        "acknowledged answers missing from the database",
        "items answered twice by one worker",
        "items offered again after the worker answered",
        f"tasks with more than {args.workers_per_item} answers",
    ]
    failed = [name for name in problems if findings[name] != 0]
    if failed:
        print("FAILED: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
