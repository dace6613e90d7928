"""The labeling loop with the web workforce: expired tasks and a killed loop.

Workers answer over real HTTP while the loop runs, in a thread beside a live
server or as ``labelloop run`` in a subprocess beside ``labelloop serve``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import update

from labelloop.config import AutomatedLabeling, TaskType, load_job_config
from labelloop.importers import LABEL_CATEGORY_FILE_NAME, import_ag_news
from labelloop.store import JobStore
from labelloop.store.schema import Task, utcnow
from labelloop.web import issue_admin_token

from web_support import login, start_web_loop

N_ITEMS = 8
LIFETIME_SECONDS = 60
# Upper bound on each wait for the loop: loading the text model, a round, outputs.
LOOP_TIMEOUT_SECONDS = 300


def wait_until(condition, *, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.2)


@dataclass
class Labels:
    """The label that every worker gives an item, chosen per item text in turn."""

    categories: list[str]
    by_text: dict[str, str] = field(default_factory=dict)

    def of(self, text: str) -> str:
        if text not in self.by_text:
            position = len(self.by_text) % len(self.categories)
            self.by_text[text] = self.categories[position]
        return self.by_text[text]


def answer_next(client: httpx.Client, labels: Labels) -> dict | None:
    """Answer the client's next task; return it, or None when none is open."""
    response = client.get("/api/tasks/next")
    assert response.status_code == 200, response.text
    task = response.json()["task"]
    if task is None:
        return None
    answer = client.post(
        f"/api/tasks/{task['assignment_id']}/answer",
        json={"label": labels.of(task["text"])},
    )
    assert answer.status_code == 200, answer.text
    return task


def output_records(output_path: Path) -> list[dict]:
    manifest = output_path / "manifests" / "output" / "output.manifest"
    return [json.loads(line) for line in manifest.read_text().splitlines()]


@pytest.mark.slow
def test_expired_tasks_counted_in_report(tmp_path: Path, shared_data: Path) -> None:
    imported = import_ag_news(tmp_path / "import", limit=N_ITEMS, seed=4)
    web_loop = start_web_loop(
        tmp_path,
        imported,
        job_name="web-expiry",
        task_type=TaskType.TEXT_CLASSIFICATION,
        attribute="topic",
        poll_seconds=0.1,
        human_batch_size=N_ITEMS,
        task_availability_lifetime_seconds=LIFETIME_SECONDS,
    )
    config, store, server = web_loop.config, web_loop.store, web_loop.server
    try:
        wait_until(
            lambda: len(store.tasks()) == N_ITEMS,
            timeout=LOOP_TIMEOUT_SECONDS,
            message="the loop did not post its tasks",
        )
        alice = login(server, store, "alice")
        bob = login(server, store, "bob")
        labels = Labels(list(config.label_categories))
        for _ in range(5):
            assert answer_next(alice, labels) is not None
            assert answer_next(bob, labels) is not None
        partial = answer_next(alice, labels)
        assert partial is not None

        # The availability lifetime passes: the tasks were posted that long ago.
        with store.session() as session:
            session.execute(
                update(Task).values(
                    created_at=utcnow() - timedelta(seconds=LIFETIME_SECONDS + 1)
                )
            )
        offered_after_lifetime = bob.get("/api/tasks/next").json()["task"]
        # The two items left without a label get one more try in round 2.
        wait_until(
            lambda: len(store.tasks(round_number=2)) == 2,
            timeout=LOOP_TIMEOUT_SECONDS,
            message="the loop did not post the expired items again",
        )
        second_try = answer_next(alice, labels)
        assert second_try is not None
        # Each item needs two answers, so Bob answers the same item.
        second_answer = answer_next(bob, labels)
        assert second_answer is not None
        assert second_answer["item_id"] == second_try["item_id"]
        with store.session() as session:
            session.execute(
                update(Task)
                .where(Task.round == 2)
                .values(created_at=utcnow() - timedelta(seconds=LIFETIME_SECONDS + 1))
            )
        web_loop.thread.join(timeout=LOOP_TIMEOUT_SECONDS)
        assert not web_loop.thread.is_alive(), "the loop did not finish"
        assert web_loop.failures == []

        admin = server.client()
        token = issue_admin_token(store)
        assert admin.get("/admin/login", params={"token": token}).status_code == 303
        summary = admin.get("/api/admin/summary").json()
        rounds = admin.get("/api/admin/rounds").json()
        after_job = alice.get("/api/tasks/next").json()
    finally:
        server.stop()

    report = json.loads((config.output_path / "report" / "report.json").read_text())
    report_html = (config.output_path / "report" / "report.html").read_text()
    records = output_records(config.output_path)
    tasks = store.tasks()
    store.close()

    assert offered_after_lifetime is None
    assert sorted(task.status for task in tasks) == ["complete"] * 6 + ["expired"] * 2
    expired = {task.item_id: task.round for task in tasks if task.status == "expired"}
    # The partly answered item is labeled from its one answer, so it stays in
    # round 1. The other item that got no answer expired again in round 2.
    assert expired[partial["item_id"]] == 1
    assert sorted(expired.values()) == [1, 2]
    assert second_try["item_id"] not in expired
    assert summary["job_status"] == "completed"
    assert summary["counters"]["Expired"] == 2
    assert rounds[0]["stats"]["expired_tasks"] == 1
    assert rounds[1]["stats"]["expired_tasks"] == 1
    assert after_job["task"] is None
    assert after_job["message"] == "The job is finished. Thank you!"
    assert report["counters"]["Expired"] == 2
    assert report["counters"]["HumanLabeled"] == 7
    assert report["counters"]["Unlabeled"] == 1
    assert [r["expired_tasks"] for r in report["rounds"]] == [1, 1]
    assert ">Expired<" in report_html
    labeled = [record for record in records if "topic-metadata" in record]
    assert len(records) == N_ITEMS
    assert len(labeled) == 7
    for record in labeled:
        assert record["topic-metadata"]["human-annotated"] == "yes"
        assert (
            record["topic-metadata"]["class-name"] == labels.by_text[record["source"]]
        )


@pytest.mark.slow
def test_expired_validation_task_answered_later(
    tmp_path: Path, shared_data: Path
) -> None:
    imported = import_ag_news(tmp_path / "import", limit=N_ITEMS, seed=5)
    web_loop = start_web_loop(
        tmp_path,
        imported,
        job_name="web-posted-again",
        task_type=TaskType.TEXT_CLASSIFICATION,
        attribute="topic",
        poll_seconds=0.1,
        human_batch_size=N_ITEMS // 2,
        task_availability_lifetime_seconds=LIFETIME_SECONDS,
    )
    config, store, server = web_loop.config, web_loop.store, web_loop.server
    try:
        wait_until(
            lambda: len(store.tasks()) == N_ITEMS // 2,
            timeout=LOOP_TIMEOUT_SECONDS,
            message="the loop did not post round 1",
        )
        alice = login(server, store, "alice")
        bob = login(server, store, "bob")
        labels = Labels(list(config.label_categories))
        for _ in range(N_ITEMS // 2 - 1):
            assert answer_next(alice, labels) is not None
            assert answer_next(bob, labels) is not None
        answered = {answer.task_id for answer in store.answers()}
        (unanswered,) = [task for task in store.tasks() if task.id not in answered]

        # The availability lifetime of round 1 passes with one task unanswered.
        with store.session() as session:
            session.execute(
                update(Task).values(
                    created_at=utcnow() - timedelta(seconds=LIFETIME_SECONDS + 1)
                )
            )
        wait_until(
            lambda: len(store.rounds()) == 2,
            timeout=LOOP_TIMEOUT_SECONDS,
            message="the loop did not post round 2",
        )
        first_offered = answer_next(alice, labels)
        deadline = time.monotonic() + LOOP_TIMEOUT_SECONDS
        while web_loop.thread.is_alive():
            assert time.monotonic() < deadline, "the loop did not finish"
            if [answer_next(alice, labels), answer_next(bob, labels)] == [None, None]:
                time.sleep(0.2)
        assert web_loop.failures == []
    finally:
        server.stop()

    report = json.loads((config.output_path / "report" / "report.json").read_text())
    records = output_records(config.output_path)
    tasks = store.tasks()
    rounds = store.rounds()
    store.close()

    assert first_offered is not None
    assert first_offered["item_id"] == unanswered.item_id
    posted_again = next(task for task in tasks if task.id == unanswered.id)
    assert posted_again.round == 2
    assert posted_again.status == "complete"
    assert posted_again.purpose == "validation"
    assert [task.status for task in tasks] == ["complete"] * N_ITEMS
    plan = rounds[1].stats["plan"]
    assert plan["reposted_validation"] == 1
    assert plan["validation"] == N_ITEMS // 2 + 1
    assert (
        "1 validation item whose task expired unanswered is posted again"
        in plan["reason"]
    )
    assert report["counters"]["HumanLabeled"] == N_ITEMS
    assert report["counters"]["Unlabeled"] == 0
    assert len(records) == N_ITEMS
    for record in records:
        assert record["topic-metadata"]["human-annotated"] == "yes"
        assert (
            record["topic-metadata"]["class-name"] == labels.by_text[record["source"]]
        )


@pytest.mark.slow
def test_never_answered_query_item_ends_job(tmp_path: Path, shared_data: Path) -> None:
    n_items = 24
    imported = import_ag_news(tmp_path / "import", limit=n_items, seed=7)
    web_loop = start_web_loop(
        tmp_path,
        imported,
        job_name="web-never-answered",
        task_type=TaskType.TEXT_CLASSIFICATION,
        attribute="topic",
        poll_seconds=0.1,
        human_batch_size=n_items,
        task_availability_lifetime_seconds=LIFETIME_SECONDS,
        automated_labeling=AutomatedLabeling(min_items=n_items, validation_size=20),
    )
    config, store, server = web_loop.config, web_loop.store, web_loop.server

    def pass_lifetime() -> None:
        with store.session() as session:
            session.execute(
                update(Task).values(
                    created_at=utcnow() - timedelta(seconds=LIFETIME_SECONDS + 1)
                )
            )

    try:
        wait_until(
            lambda: len(store.tasks()) == 20,
            timeout=LOOP_TIMEOUT_SECONDS,
            message="the loop did not post round 1",
        )
        alice = login(server, store, "alice")
        bob = login(server, store, "bob")
        labels = Labels(list(config.label_categories))
        for client in (alice, bob):
            while answer_next(client, labels) is not None:
                pass
        # Round 2 is the remaining batch: the other 4 items, as query tasks.
        wait_until(
            lambda: len(store.tasks()) == n_items,
            timeout=LOOP_TIMEOUT_SECONDS,
            message="the loop did not post round 2",
        )
        for _ in range(3):
            assert answer_next(alice, labels) is not None
            assert answer_next(bob, labels) is not None
        answered = {answer.task_id for answer in store.answers()}
        (never,) = [task for task in store.tasks() if task.id not in answered]

        # The availability lifetime passes, then the item goes out once more,
        # and no worker answers it again.
        pass_lifetime()
        wait_until(
            lambda: len(store.rounds()) == 3 or not web_loop.thread.is_alive(),
            timeout=LOOP_TIMEOUT_SECONDS,
            message="the loop neither posted round 3 nor finished",
        )
        assert len(store.rounds()) == 3, "the job ended without posting the item again"
        offered_again = alice.get("/api/tasks/next").json()["task"]
        pass_lifetime()
        web_loop.thread.join(timeout=LOOP_TIMEOUT_SECONDS)
        assert not web_loop.thread.is_alive(), "the loop did not finish"
        assert web_loop.failures == []
    finally:
        server.stop()

    report = json.loads((config.output_path / "report" / "report.json").read_text())
    tasks = store.tasks()
    rounds = store.rounds()
    (reposted,) = store.events("tasks-reposted")
    stop = store.events("job-stop")
    store.close()

    assert never.purpose == "query"
    assert never.round == 2
    assert offered_again is not None
    assert offered_again["item_id"] == never.item_id
    assert [(t.id, t.round, t.status) for t in tasks if t.id == never.id] == [
        (never.id, 3, "expired")
    ]
    assert [(t.purpose, t.status) for t in tasks].count(("query", "complete")) == 3
    assert reposted.data == {
        "round": 3,
        "item_ids": [never.item_id],
        "earlier_rounds": [2],
    }
    assert [row.stats["plan"]["reposted_query"] for row in rounds] == [0, 0, 1]
    assert rounds[2].stats["plan"]["remaining"]
    assert (
        "1 query item whose task expired unanswered is posted again"
        in rounds[2].stats["plan"]["reason"]
    )
    # After its second expiry the item is not posted again and the job ends.
    assert len(rounds) == 3
    assert stop[-1].message == "no unlabeled item is left to send to humans"
    assert report["status"] == "completed"
    assert report["counters"]["HumanLabeled"] == n_items - 1
    assert report["counters"]["Unlabeled"] == 1


def labelloop_command() -> list[str]:
    """Return the ``labelloop`` command of the Python that runs the tests."""
    script = Path(sys.executable).with_name("labelloop")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "labelloop.cli"]


def write_job_file(folder: Path, name: str) -> Path:
    import_ag_news(folder / "data", limit=N_ITEMS, seed=6)
    document = {
        "job_name": name,
        "task_type": "text-classification",
        "label_attribute_name": "topic",
        "label_category_file": f"data/{LABEL_CATEGORY_FILE_NAME}",
        "input_manifest": "data/manifest.jsonl",
        "output_path": "output",
        "workforce": {"type": "web", "poll_seconds": 0.2},
        "workers_per_item": 2,
        "human_batch_size": N_ITEMS,
        "automated_labeling": {"enabled": False},
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def start(command: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as stream:
        return subprocess.Popen(
            command,
            stdout=stream,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_killed_loop_resumes_open_tasks(tmp_path: Path, shared_data: Path) -> None:
    job_file = write_job_file(tmp_path, "web-restart")
    config = load_job_config(job_file)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    labelloop = labelloop_command()
    processes: list[subprocess.Popen] = []
    clients: list[httpx.Client] = []

    def add_worker(name: str) -> httpx.Client:
        added = subprocess.run(
            [*labelloop, "workers", "add", name, str(job_file), "--base-url", base_url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        link = added.stdout.strip().splitlines()[-1]
        assert link.startswith(f"{base_url}/login?token="), added.stdout
        client = httpx.Client(base_url=base_url, timeout=60)
        clients.append(client)
        assert client.get(link).status_code == 303
        client.headers["X-CSRF-Token"] = client.get("/api/me").json()["csrf_token"]
        return client

    serve = start(
        [*labelloop, "serve", str(job_file), "--port", str(port), "--no-run-loop"],
        tmp_path / "serve.log",
    )
    processes.append(serve)
    try:

        def serving() -> bool:
            try:
                return httpx.get(f"{base_url}/openapi.json").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(serving, timeout=60, message="labelloop serve did not start")
        alice = add_worker("alice")
        bob = add_worker("bob")
        first_run = start([*labelloop, "run", str(job_file)], tmp_path / "run-1.log")
        processes.append(first_run)

        def alice_has_task() -> bool:
            return alice.get("/api/tasks/next").json()["task"] is not None

        wait_until(
            alice_has_task,
            timeout=LOOP_TIMEOUT_SECONDS,
            message="the loop did not post tasks",
        )
        labels = Labels(list(config.label_categories))
        for _ in range(3):
            assert answer_next(alice, labels) is not None
        for _ in range(2):
            assert answer_next(bob, labels) is not None
        held = alice.get("/api/tasks/next").json()["task"]

        first_run.send_signal(signal.SIGKILL)
        first_run.wait(timeout=30)
        # The server takes answers while the loop is down.
        assert answer_next(bob, labels) is not None

        store = JobStore(config.database)
        tasks_before = store.tasks()
        answers_before = {
            (a.id, a.worker_id, a.item_id, a.value["class"]) for a in store.answers()
        }
        rounds_before = [(r.number, r.status) for r in store.rounds()]
        store.close()

        second_run = start([*labelloop, "run", str(job_file)], tmp_path / "run-2.log")
        processes.append(second_run)
        held_again = alice.get("/api/tasks/next").json()["task"]
        deadline = time.monotonic() + LOOP_TIMEOUT_SECONDS
        while second_run.poll() is None:
            assert time.monotonic() < deadline, "the resumed loop did not finish"
            answered_tasks = [answer_next(alice, labels), answer_next(bob, labels)]
            if answered_tasks == [None, None]:
                time.sleep(0.3)
        second_log = (tmp_path / "run-2.log").read_text()
        finished = alice.get("/api/tasks/next").json()
    finally:
        for client in clients:
            client.close()
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=30)

    store = JobStore(config.database)
    tasks_after = store.tasks()
    answers_after = {
        (a.id, a.worker_id, a.item_id, a.value["class"]) for a in store.answers()
    }
    rounds_after = [(r.number, r.status) for r in store.rounds()]
    store.close()
    records = output_records(config.output_path)

    assert first_run.returncode == -signal.SIGKILL
    assert [t.status for t in tasks_before] == ["open"] * N_ITEMS
    assert rounds_before == [(1, "collecting")]
    assert len(answers_before) == 6
    assert held is not None
    assert held_again is not None
    assert held_again["assignment_id"] == held["assignment_id"]
    assert second_run.returncode == 0, second_log
    assert "resuming job web-restart" in second_log
    assert [t.id for t in tasks_after] == [t.id for t in tasks_before]
    assert rounds_after == [(1, "done")]
    assert answers_before <= answers_after
    assert len(answers_after) == 2 * N_ITEMS
    assert finished["job_status"] == "completed"
    assert len(records) == N_ITEMS
    for record in records:
        assert record["topic-metadata"]["human-annotated"] == "yes"
        assert (
            record["topic-metadata"]["class-name"] == labels.by_text[record["source"]]
        )


@pytest.mark.slow
def test_serve_runs_loop_to_report(tmp_path: Path, shared_data: Path) -> None:
    job_file = write_job_file(tmp_path, "web-serve-loop")
    config = load_job_config(job_file)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    labelloop = labelloop_command()
    serve = start(
        [*labelloop, "serve", str(job_file), "--port", str(port), "--run-loop"],
        tmp_path / "serve.log",
    )
    clients: list[httpx.Client] = []
    try:
        owner_link = ""
        deadline = time.monotonic() + 60
        while "Owner dashboard" not in owner_link:
            assert time.monotonic() < deadline, "labelloop serve printed no link"
            time.sleep(0.2)
            owner_link = (tmp_path / "serve.log").read_text()
        owner_link = owner_link.split("(one-time link): ", 1)[1].split()[0]
        workers = []
        for name in ("alice", "bob"):
            added = subprocess.run(
                [*labelloop, "workers", "add", name, str(job_file)]
                + ["--base-url", base_url],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            client = httpx.Client(base_url=base_url, timeout=60)
            clients.append(client)
            link = added.stdout.strip().splitlines()[-1]
            assert client.get(link).status_code == 303
            client.headers["X-CSRF-Token"] = client.get("/api/me").json()["csrf_token"]
            workers.append(client)
        owner = httpx.Client(base_url=base_url, timeout=60)
        clients.append(owner)
        assert owner.get(owner_link).status_code == 303

        labels = Labels(list(config.label_categories))
        deadline = time.monotonic() + LOOP_TIMEOUT_SECONDS
        while owner.get("/api/admin/summary").json()["report_url"] is None:
            assert time.monotonic() < deadline, "the job did not finish"
            if [answer_next(client, labels) for client in workers] == [None, None]:
                time.sleep(0.3)
        summary = owner.get("/api/admin/summary").json()
        report = owner.get(summary["report_url"])
    finally:
        for client in clients:
            client.close()
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=30)
    log = (tmp_path / "serve.log").read_text()

    assert summary["job_status"] == "completed"
    assert summary["counters"]["HumanLabeled"] == N_ITEMS
    assert summary["answers"] == 2 * N_ITEMS
    assert report.status_code == 200
    assert "web-serve-loop" in report.text
    assert "labeling loop of job web-serve-loop finished" in log
    assert serve.returncode == 0
    for record in output_records(config.output_path):
        assert record["topic-metadata"]["human-annotated"] == "yes"
        assert (
            record["topic-metadata"]["class-name"] == labels.by_text[record["source"]]
        )
