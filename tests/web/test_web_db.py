"""Write transactions of the web app on a real SQLite database."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select

from labelloop.store import JobStore
from labelloop.store.schema import Event
from labelloop.web.db import as_utc, write_transaction


def test_write_transaction_locks_before_first_write(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'job.db'}")
    reading = threading.Event()
    order: list[str] = []

    def read_then_write() -> None:
        with write_transaction(store) as session:
            session.scalars(select(Event)).all()
            reading.set()
            time.sleep(0.5)
            order.append("first commits")
            session.add(Event(kind="test", message="first"))

    def second_writer() -> None:
        reading.wait()
        with write_transaction(store) as session:
            order.append("second starts")
            session.add(Event(kind="test", message="second"))

    threads = [
        threading.Thread(target=read_then_write),
        threading.Thread(target=second_writer),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert order == ["first commits", "second starts"]
    assert [event.message for event in store.events("test")] == ["first", "second"]
    store.close()


def test_write_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'job.db'}")

    try:
        with write_transaction(store) as session:
            session.add(Event(kind="test", message="lost"))
            session.flush()
            raise RuntimeError("request failed")
    except RuntimeError:
        pass

    assert store.events("test") == []
    store.close()


def test_as_utc_reads_naive_as_utc() -> None:
    naive = datetime(2024, 5, 1, 12, 0, 0)
    shifted = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))

    assert as_utc(naive) == datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert as_utc(shifted) == datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert as_utc(shifted).tzinfo == UTC
