"""Write transactions that serialize concurrent web requests on the job database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from labelloop.store import JobStore


@contextmanager
def write_transaction(store: JobStore) -> Iterator[Session]:
    """Yield a session whose transaction holds the database's write lock.

    On SQLite the transaction starts with ``BEGIN IMMEDIATE``, so two requests
    that read a count and then write (assign a task slot, store an answer) run one
    after the other, and the second waits for the busy timeout rather than failing.
    Other databases start an ordinary transaction, and callers lock the rows they
    update with ``SELECT ... FOR UPDATE``. The session commits on success and rolls
    back on any error.
    """
    with Session(store.engine, expire_on_commit=False) as session:
        if store.engine.dialect.name == "sqlite":
            session.execute(text("BEGIN IMMEDIATE"))
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        session.commit()


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` as an aware UTC time.

    SQLite drops the time zone of stored timestamps, and the job store writes UTC,
    so a naive value read back is UTC.
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
