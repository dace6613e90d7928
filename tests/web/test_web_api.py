"""Web API over real HTTP: a uvicorn server on loopback and httpx clients."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import statistics
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text, update

from labelloop.store.schema import Answer, Assignment, Worker, utcnow
from labelloop.web import add_worker, deactivate_worker, issue_admin_token
from labelloop.web.tables import AdminToken, WebSession

from web_support import Job, LiveServer, build_job, login

ADMIN_ENDPOINTS = ["/api/admin/summary", "/api/admin/rounds", "/api/admin/workers"]


def admin_client(server: LiveServer, job: Job) -> httpx.Client:
    token = issue_admin_token(job.store)
    client = server.client()
    response = client.get("/admin/login", params={"token": token})
    assert response.status_code == 303, response.text
    client.headers["X-CSRF-Token"] = client.get("/api/me").json()["csrf_token"]
    return client


def take_task(client: httpx.Client) -> dict:
    response = client.get("/api/tasks/next")
    assert response.status_code == 200, response.text
    task = response.json()["task"]
    assert task is not None
    return task


def read_raw_response(connection: socket.socket) -> tuple[int, bytes]:
    """Read one HTTP/1.1 response with a Content-Length from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
    assert length is not None, head
    while len(body) < int(length.group(1)):
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        body += chunk
    return int(head.split()[1]), body


def database_bytes(job: Job) -> bytes:
    path = Path(job.config.database.removeprefix("sqlite:///"))
    found = b""
    for candidate in (path, Path(f"{path}-wal")):
        if candidate.exists():
            found += candidate.read_bytes()
    return found


def test_login_token_stored_only_hashed(text_job: Job, serve) -> None:
    server = serve(text_job)
    token = add_worker(text_job.store, "alice")

    with text_job.store.session() as session:
        stored = session.get(Worker, "alice").token_hash
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert token.encode() not in database_bytes(text_job)

    client = server.client()
    response = client.get("/login", params={"token": token})
    assert response.status_code == 303
    session_id = client.cookies["labelloop_session"]
    assert session_id.encode() not in database_bytes(text_job)

    admin_token = issue_admin_token(text_job.store)
    with text_job.store.session() as session:
        admin_hashes = session.scalars(select(AdminToken.token_hash)).all()
    assert admin_hashes == [hashlib.sha256(admin_token.encode()).hexdigest()]
    assert admin_token.encode() not in database_bytes(text_job)


def test_login_link_works_once(text_job: Job, serve) -> None:
    server = serve(text_job)
    token = add_worker(text_job.store, "alice")

    first = httpx.get(f"{server.base_url}/login", params={"token": token})
    second = httpx.get(f"{server.base_url}/login", params={"token": token})

    assert first.status_code == 303
    assert first.headers["location"] == "/"
    cookie = first.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "secure" not in cookie
    assert second.status_code == 401
    assert "already used" in second.json()["detail"]
    assert "set-cookie" not in second.headers


def test_login_rejects_unknown_token(text_job: Job, serve) -> None:
    server = serve(text_job)

    response = httpx.get(f"{server.base_url}/login", params={"token": "x" * 43})

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"


def test_secure_cookie_flag_configurable(text_job: Job, serve) -> None:
    server = serve(text_job, secure_cookies=True)
    token = add_worker(text_job.store, "alice")

    response = httpx.get(f"{server.base_url}/login", params={"token": token})

    assert "secure" in response.headers["set-cookie"].lower()


def test_api_without_session_gets_401(text_job: Job, serve) -> None:
    server = serve(text_job)
    client = server.client()
    requests = [
        ("GET", "/api/me"),
        ("GET", "/api/tasks/next"),
        ("POST", "/api/tasks/1/answer"),
        ("POST", "/api/tasks/1/skip"),
        ("GET", "/api/items/1/image"),
        *[("GET", path) for path in ADMIN_ENDPOINTS],
    ]

    for method, path in requests:
        response = client.request(method, path, json={"label": "World"})
        assert response.status_code == 401, path
        assert "not logged in" in response.json()["detail"], path
    assert text_job.store.answers() == []


def test_expired_session_gets_401(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")
    assert worker.get("/api/tasks/next").status_code == 200

    with text_job.store.session() as session:
        session.execute(
            update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    response = worker.get("/api/tasks/next")

    assert response.status_code == 401
    assert "session expired" in response.json()["detail"]


def test_worker_on_admin_api_gets_403(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")

    for path in ADMIN_ENDPOINTS:
        response = worker.get(path)
        assert response.status_code == 403, path
        assert "job owner" in response.json()["detail"]


def test_admin_on_worker_api_gets_403(text_job: Job, serve) -> None:
    server = serve(text_job)
    admin = admin_client(server, text_job)

    response = admin.get("/api/tasks/next")

    assert response.status_code == 403
    assert "for workers" in response.json()["detail"]


def test_admin_link_works_once(text_job: Job, serve) -> None:
    server = serve(text_job)
    token = issue_admin_token(text_job.store)

    first = httpx.get(f"{server.base_url}/admin/login", params={"token": token})
    second = httpx.get(f"{server.base_url}/admin/login", params={"token": token})
    worker_token = add_worker(text_job.store, "alice")
    as_worker = httpx.get(
        f"{server.base_url}/admin/login", params={"token": worker_token}
    )

    assert first.status_code == 303
    assert first.headers["location"] == "/admin"
    assert second.status_code == 401
    assert as_worker.status_code == 401


def test_post_without_csrf_token_rejected(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")
    task = take_task(worker)
    path = f"/api/tasks/{task['assignment_id']}/answer"

    missing = worker.post(path, json={"label": "World"}, headers={"X-CSRF-Token": ""})
    wrong = worker.post(path, json={"label": "World"}, headers={"X-CSRF-Token": "x"})
    logout = worker.post("/api/logout", headers={"X-CSRF-Token": ""})

    for response in (missing, wrong, logout):
        assert response.status_code == 403
        assert "X-CSRF-Token" in response.json()["detail"]
    assert text_job.store.answers() == []
    assert worker.get("/api/me").status_code == 200
    assert worker.post(path, json={"label": "World"}).status_code == 200


def test_answer_stores_class_index(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")
    task = take_task(worker)

    response = worker.post(
        f"/api/tasks/{task['assignment_id']}/answer", json={"label": "Business"}
    )

    assert response.status_code == 200
    assert response.json()["finished_count"] == 1
    [answer] = text_job.store.answers()
    assert answer.value == {"class": 2}
    assert answer.worker_id == "alice"
    assert answer.item_id == task["item_id"]
    assert answer.task_id == task["task_id"]
    assert answer.seconds is not None and answer.seconds >= 0


def test_answer_rejects_unknown_label(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")
    task = take_task(worker)
    path = f"/api/tasks/{task['assignment_id']}/answer"

    bodies = (
        {"label": "Weather"},
        {"label": 1},
        {"label": ""},
        {"label": "x" * 501},
        {},
        {"x": 1},
        {"label": "World", "worker_id": "bob"},
        ["World"],
    )
    for body in bodies:
        response = worker.post(path, json=body)
        assert response.status_code == 422, body
        assert isinstance(response.json()["detail"], str)
    assert text_job.store.answers() == []


def test_ids_out_of_range_rejected(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")
    take_task(worker)
    too_large = [str(2**63), str(10**30)]

    requests = [
        *[("POST", f"/api/tasks/{value}/answer") for value in ["0", "-1", *too_large]],
        *[("POST", f"/api/tasks/{value}/skip") for value in ["0", *too_large]],
        *[("GET", f"/api/items/{value}/image") for value in ["0", *too_large]],
    ]
    for method, path in requests:
        response = worker.request(method, path, json={"label": "World"})
        assert response.status_code == 422, (path, response.text)
        assert response.headers["content-type"] == "application/json", path
        assert "invalid request" in response.json()["detail"], path
    assert text_job.store.answers() == []


def test_answer_rejects_foreign_assignment(text_job: Job, serve) -> None:
    server = serve(text_job)
    alice = login(server, text_job.store, "alice")
    bob = login(server, text_job.store, "bob")
    task = take_task(alice)

    foreign = bob.post(
        f"/api/tasks/{task['assignment_id']}/answer", json={"label": "World"}
    )
    unknown = bob.post("/api/tasks/9999/answer", json={"label": "World"})
    skip = bob.post(f"/api/tasks/{task['assignment_id']}/skip")

    assert foreign.status_code == 403
    assert unknown.status_code == 404
    assert skip.status_code == 403
    assert text_job.store.answers() == []
    assert take_task(alice)["assignment_id"] == task["assignment_id"]


def test_answer_rejects_second_answer(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")
    task = take_task(worker)
    path = f"/api/tasks/{task['assignment_id']}/answer"

    first = worker.post(path, json={"label": "World"})
    second = worker.post(path, json={"label": "Sports"})

    assert first.status_code == 200
    assert second.status_code == 409
    assert "already answered" in second.json()["detail"]
    assert [a.value for a in text_job.store.answers()] == [{"class": 0}]


def test_answer_rejects_expired_assignment(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")
    task = take_task(worker)
    with text_job.store.session() as session:
        session.execute(
            update(Assignment)
            .where(Assignment.id == task["assignment_id"])
            .values(deadline=utcnow() - timedelta(seconds=1))
        )

    response = worker.post(
        f"/api/tasks/{task['assignment_id']}/answer", json={"label": "World"}
    )

    assert response.status_code == 409
    assert "expired" in response.json()["detail"]
    assert text_job.store.answers() == []


def test_answer_rejects_closed_task(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")
    task = take_task(worker)
    text_job.store.write_human_labels(1, [], expired_task_ids=text_job.task_ids)

    response = worker.post(
        f"/api/tasks/{task['assignment_id']}/answer", json={"label": "World"}
    )
    after = worker.get("/api/tasks/next").json()

    assert response.status_code == 409
    assert text_job.store.answers() == []
    assert after["task"] is None
    assert after["message"]


def test_skip_returns_task_to_queue(text_job: Job, serve) -> None:
    server = serve(text_job)
    alice = login(server, text_job.store, "alice")
    bob = login(server, text_job.store, "bob")
    carol = login(server, text_job.store, "carol")
    held = take_task(alice)
    assert take_task(bob)["task_id"] == held["task_id"]
    assert take_task(carol)["task_id"] != held["task_id"]

    skipped = alice.post(f"/api/tasks/{held['assignment_id']}/skip")
    again = alice.post(f"/api/tasks/{held['assignment_id']}/skip")
    answered_after_skip = alice.post(
        f"/api/tasks/{held['assignment_id']}/answer", json={"label": "World"}
    )
    dave = login(server, text_job.store, "dave")

    assert skipped.status_code == 200
    assert skipped.json() == {
        "assignment_id": held["assignment_id"],
        "status": "skipped",
    }
    assert again.status_code == 409
    assert answered_after_skip.status_code == 409
    assert "skipped" in answered_after_skip.json()["detail"]
    assert text_job.store.answers() == []
    assert take_task(dave)["task_id"] == held["task_id"]


def test_image_served_only_to_assigned_worker(image_job: Job, serve) -> None:
    server = serve(image_job)
    alice = login(server, image_job.store, "alice")
    bob = login(server, image_job.store, "bob")
    task = take_task(alice)
    other_item = next(i for i in image_job.item_ids if i != task["item_id"])
    with image_job.store.session() as session:
        path = Path(
            session.execute(
                text("SELECT source_path FROM items WHERE id = :id"),
                {"id": task["item_id"]},
            ).scalar_one()
        )

    own = alice.get(task["image_url"])
    unassigned = alice.get(f"/api/items/{other_item}/image")
    missing = alice.get("/api/items/99999/image")
    foreign = bob.get(task["image_url"])
    anonymous = httpx.get(server.base_url + task["image_url"])

    assert task["media"] == "image"
    assert task["text"] is None
    assert own.status_code == 200
    assert own.headers["content-type"] == "image/png"
    assert own.content == path.read_bytes()
    assert unassigned.status_code == 403
    assert missing.status_code in (403, 404)
    assert foreign.status_code == 403
    assert anonymous.status_code == 401

    alice.post(f"/api/tasks/{task['assignment_id']}/answer", json={"label": "7"})
    assert alice.get(task["image_url"]).status_code == 200


def test_image_of_other_job_rejected(tmp_path: Path, shared_data: Path, serve) -> None:
    small = build_job(tmp_path / "a", dataset="mnist", n_items=2, name="job-a")
    large = build_job(tmp_path / "b", dataset="cifar10", n_items=5, name="job-b")
    server = serve(small)
    worker = login(server, small.store, "alice")
    take_task(worker)
    foreign_ids = [i for i in large.item_ids if i not in small.item_ids]

    for item_id in foreign_ids:
        response = worker.get(f"/api/items/{item_id}/image")
        assert response.status_code in (403, 404)
        assert response.headers["content-type"] == "application/json"
    small.store.close()
    large.store.close()


def test_text_item_has_no_image(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")
    task = take_task(worker)

    response = worker.get(f"/api/items/{task['item_id']}/image")

    assert task["media"] == "text"
    assert task["image_url"] is None
    assert task["text"]
    assert response.status_code == 404


def test_errors_are_json_without_traceback(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")
    admin = admin_client(server, text_job)

    bad_path = worker.post("/api/tasks/abc/answer", json={"label": "World"})
    bad_json = worker.post(
        "/api/tasks/1/answer",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    unknown_route = worker.get("/api/nothing-here")
    with text_job.store.session() as session:
        session.execute(text("DROP TABLE rounds"))
    crashed = admin.get("/api/admin/rounds")

    assert bad_path.status_code == 422
    assert "assignment_id" in bad_path.json()["detail"]
    assert bad_json.status_code == 422
    assert unknown_route.status_code == 404
    assert unknown_route.json() == {"detail": "Not Found"}
    assert crashed.status_code == 500
    assert crashed.json() == {
        "detail": "internal server error; the server log has the details"
    }
    assert "Traceback" not in crashed.text


def test_unexpected_error_keeps_connection(text_job: Job, serve) -> None:
    server = serve(text_job)
    admin = admin_client(server, text_job)
    cookie = admin.cookies["labelloop_session"]
    with text_job.store.session() as session:
        session.execute(text("DROP TABLE rounds"))
    host, port = server.base_url.removeprefix("http://").split(":")

    with socket.create_connection((host, int(port)), timeout=30) as connection:
        for path in ("/api/admin/rounds", "/api/admin/summary"):
            connection.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                f"Cookie: labelloop_session={cookie}\r\n\r\n".encode()
            )
            if path == "/api/admin/rounds":
                crashed = read_raw_response(connection)
                # Time for the server to close the connection, were it to.
                time.sleep(0.3)
            else:
                after = read_raw_response(connection)

    assert crashed[0] == 500
    assert json.loads(crashed[1]) == {
        "detail": "internal server error; the server log has the details"
    }
    assert after[0] == 200
    assert json.loads(after[1])["job_name"] == text_job.config.job_name


def test_responses_carry_security_headers(text_job: Job, serve) -> None:
    server = serve(text_job)

    for path in ("/", "/admin", "/api/me", "/static/worker.js"):
        response = httpx.get(server.base_url + path)
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy, path
        assert "'unsafe-inline'" not in policy, path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY", path
    api = httpx.get(server.base_url + "/api/me")
    assert api.headers["cache-control"] == "no-store"


def test_logout_ends_session(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")
    session_cookie = worker.cookies["labelloop_session"]

    response = worker.post("/api/logout")
    replay = httpx.get(
        f"{server.base_url}/api/me", cookies={"labelloop_session": session_cookie}
    )

    assert response.status_code == 200
    assert replay.status_code == 401


def test_deactivated_worker_loses_session(text_job: Job, serve) -> None:
    server = serve(text_job)
    worker = login(server, text_job.store, "alice")

    deactivate_worker(text_job.store, "alice")

    assert worker.get("/api/tasks/next").status_code == 401


def test_dashboard_reports_rounds_and_workers(text_job: Job, serve) -> None:
    server = serve(text_job)
    alice = login(server, text_job.store, "alice")
    bob = login(server, text_job.store, "bob")
    given = {"alice": ["World", "Sports"], "bob": ["World", "World"]}
    items = []
    for name, client in (("alice", alice), ("bob", bob)):
        for label in given[name]:
            task = take_task(client)
            items.append(task["item_id"])
            path = f"/api/tasks/{task['assignment_id']}/answer"
            assert client.post(path, json={"label": label}).status_code == 200
    first, second = sorted(set(items))
    unanswered = [
        task.id for task in text_job.store.tasks() if task.item_id not in items
    ]
    text_job.store.write_human_labels(
        1,
        [(first, {"class": 0}, 1.0), (second, {"class": 0}, 0.5)],
        expired_task_ids=unanswered[:3],
    )
    stats = {
        "threshold": 0.8,
        "validation_accuracy": 0.91,
        "human_labeled": 5,
        "plan": {"size": 2},
        "note": "text",
        "converged": True,
    }
    text_job.store.finish_round(1, machine_labels=[], stats=stats)
    admin = admin_client(server, text_job)

    summary = admin.get("/api/admin/summary").json()
    rounds = admin.get("/api/admin/rounds").json()
    workers = {w["worker_id"]: w for w in admin.get("/api/admin/workers").json()}

    assert summary["counters"]["HumanLabeled"] == 2
    assert summary["counters"]["Expired"] == 3
    assert summary["open_tasks"] == 0
    assert summary["answers"] == 4
    assert summary["report_url"] is None
    assert rounds[0]["number"] == 1
    assert rounds[0]["stats"] == {
        "threshold": 0.8,
        "validation_accuracy": 0.91,
        "human_labeled": 2.0,
        "machine_labeled": 0.0,
        "expired_tasks": 3.0,
    }
    assert workers["alice"]["tasks_done"] == 2
    assert workers["alice"]["agreement"] == 0.5
    assert workers["bob"]["agreement"] == 1.0
    assert workers["bob"]["compared"] == 2
    with text_job.store.session() as session:
        seconds = session.scalars(
            select(Answer.seconds).where(Answer.worker_id == "bob")
        ).all()
    assert workers["bob"]["median_seconds"] == pytest.approx(statistics.median(seconds))


def test_report_served_once_written(text_job: Job, serve) -> None:
    server = serve(text_job)
    admin = admin_client(server, text_job)
    worker = login(server, text_job.store, "alice")
    assert admin.get("/admin/report/report.html").status_code == 404

    report_dir = text_job.config.output_path / "report"
    report_dir.mkdir()
    (report_dir / "report.html").write_text("<h1>Job report</h1>", encoding="utf-8")

    summary = admin.get("/api/admin/summary").json()
    report = admin.get(summary["report_url"])
    as_worker = worker.get(summary["report_url"])
    escaped = admin.get("/admin/report/%2e%2e/job.db")
    sibling = admin.get("/admin/report/..%2Fjob.db")

    assert summary["report_url"] == "/admin/report/report.html"
    assert report.status_code == 200
    assert report.text == "<h1>Job report</h1>"
    assert report.headers["content-security-policy"].startswith("sandbox")
    assert as_worker.status_code == 403
    assert escaped.status_code == 404
    assert sibling.status_code == 404


def test_openapi_schema_lists_api(text_job: Job, serve) -> None:
    server = serve(text_job)

    schema = httpx.get(f"{server.base_url}/openapi.json").json()

    for path in (
        "/api/tasks/next",
        "/api/tasks/{assignment_id}/answer",
        "/api/tasks/{assignment_id}/skip",
        "/api/items/{item_id}/image",
        *ADMIN_ENDPOINTS,
    ):
        assert path in schema["paths"], path
    assert "AnswerRequest" in json.dumps(schema)


def test_concurrent_http_workers_keep_limits(
    tmp_path: Path, shared_data: Path, serve
) -> None:
    job = build_job(tmp_path, n_items=8, workers_per_item=3)
    server = serve(job)
    clients = [login(server, job.store, f"w{index}") for index in range(20)]
    accepted: list[tuple[str, int]] = []

    async def work(index: int, sync_client: httpx.Client) -> None:
        async with httpx.AsyncClient(
            base_url=server.base_url,
            cookies=sync_client.cookies,
            headers={"X-CSRF-Token": sync_client.headers["X-CSRF-Token"]},
            timeout=60,
        ) as client:
            while True:
                task = (await client.get("/api/tasks/next")).json()["task"]
                if task is None:
                    return
                label = job.config.label_categories[index % 4]
                response = await client.post(
                    f"/api/tasks/{task['assignment_id']}/answer", json={"label": label}
                )
                assert response.status_code == 200, response.text
                accepted.append((f"w{index}", task["item_id"]))

    async def run_all() -> None:
        await asyncio.gather(*(work(i, c) for i, c in enumerate(clients)))

    asyncio.run(run_all())

    answers = job.store.answers()
    assert sorted((a.worker_id, a.item_id) for a in answers) == sorted(accepted)
    assert len(answers) == 8 * 3
    assert max(Counter(a.task_id for a in answers).values()) == 3
    assert len({(a.worker_id, a.item_id) for a in answers}) == len(answers)
    job.store.close()
