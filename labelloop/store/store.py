"""The job store: every state change of a job goes through one transaction here."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from labelloop.store.schema import (
    Answer,
    Base,
    Event,
    Feature,
    Item,
    Job,
    Label,
    Round,
    Task,
    Worker,
    utcnow,
)

logger = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web server read while the loop writes; synchronous=FULL makes
    # every committed answer survive a power cut, not only a process kill.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Create an engine; SQLite gets WAL mode, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


class JobStore:
    """Read and write one job's state.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL, ``sqlite:///path/job.db`` by default.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session that commits on success and rolls back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    # Job and items

    def job(self) -> Job | None:
        with self.session() as session:
            return session.scalars(select(Job)).first()

    def create_job(
        self,
        *,
        name: str,
        task_type: str,
        class_names: Sequence[str],
        config: dict[str, Any],
        items: Iterable[tuple[int, dict[str, Any], str | None, str | None]],
        failures: Iterable[tuple[int, str]],
    ) -> None:
        """Create the job with its items in one transaction.

        ``items`` are ``(line, record, source_path, text)`` tuples; ``failures``
        are ``(line, reason)`` pairs for lines that could not be read.
        """
        with self.session() as session:
            session.add(
                Job(
                    name=name,
                    task_type=task_type,
                    class_names=list(class_names),
                    config=config,
                )
            )
            for line, record, source_path, text in items:
                session.add(
                    Item(
                        line=line,
                        record=record,
                        source_path=source_path,
                        text=text,
                        status="ok",
                    )
                )
            for line, reason in failures:
                session.add(Item(line=line, record=None, status="failed", error=reason))
                session.add(Event(kind="item-failed", message=f"line {line}: {reason}"))

    def items(self, *, status: str = "ok") -> list[Item]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(Item).where(Item.status == status).order_by(Item.id)
                )
            )

    def fail_item(self, item_id: int, reason: str) -> None:
        """Mark one item failed (for example an image that does not decode)."""
        with self.session() as session:
            item = session.get(Item, item_id)
            if item is None or item.status == "failed":
                return
            item.status = "failed"
            item.error = reason
            session.add(
                Event(
                    kind="item-failed",
                    message=f"line {item.line}: {reason}",
                    item_id=item_id,
                )
            )
        logger.warning("item %s (line %s) failed: %s", item_id, item.line, reason)

    def set_job_status(self, status: str) -> None:
        with self.session() as session:
            job = session.scalars(select(Job)).one()
            job.status = status
            job.finished_at = utcnow() if status == "completed" else None

    # Workers, tasks and answers

    def ensure_worker(self, worker_id: str, *, kind: str) -> None:
        with self.session() as session:
            if session.get(Worker, worker_id) is None:
                session.add(Worker(id=worker_id, kind=kind))

    def add_tasks(
        self, round_number: int, item_ids: Sequence[int], *, purpose: str
    ) -> None:
        with self.session() as session:
            for item_id in item_ids:
                session.add(
                    Task(item_id=int(item_id), round=round_number, purpose=purpose)
                )

    def tasks(
        self, *, round_number: int | None = None, status: str | None = None
    ) -> list[Task]:
        query = select(Task).order_by(Task.id)
        if round_number is not None:
            query = query.where(Task.round == round_number)
        if status is not None:
            query = query.where(Task.status == status)
        with self.session() as session:
            return list(session.scalars(query))

    def add_answers(
        self, rows: Iterable[tuple[int, int, str, dict[str, Any], float | None]]
    ) -> int:
        """Store answers ``(task_id, item_id, worker_id, value, seconds)`` at once.

        Answers already given by the same worker for the same item are skipped.
        Returns the number stored.
        """
        stored = 0
        with self.session() as session:
            for task_id, item_id, worker_id, value, seconds in rows:
                exists = session.scalar(
                    select(Answer.id).where(
                        Answer.item_id == item_id, Answer.worker_id == worker_id
                    )
                )
                if exists is not None:
                    continue
                session.add(
                    Answer(
                        task_id=task_id,
                        item_id=item_id,
                        worker_id=worker_id,
                        value=value,
                        seconds=seconds,
                    )
                )
                stored += 1
        return stored

    def answers(self, item_ids: Sequence[int] | None = None) -> list[Answer]:
        query = select(Answer).order_by(Answer.id)
        if item_ids is not None:
            query = query.where(Answer.item_id.in_([int(i) for i in item_ids]))
        with self.session() as session:
            return list(session.scalars(query))

    def answer_counts(self, round_number: int) -> dict[int, int]:
        """Return answers per task of a round, keyed by task id."""
        with self.session() as session:
            rows = session.execute(
                select(Task.id, func.count(Answer.id))
                .outerjoin(Answer, Answer.task_id == Task.id)
                .where(Task.round == round_number)
                .group_by(Task.id)
            )
            return {task_id: count for task_id, count in rows}

    # Labels

    def write_human_labels(
        self,
        round_number: int,
        labels: Sequence[tuple[int, dict[str, Any], float]],
        *,
        expired_task_ids: Sequence[int] = (),
    ) -> None:
        """Write consolidated human labels and close the round's tasks at once."""
        with self.session() as session:
            for item_id, value, confidence in labels:
                if session.get(Label, item_id) is None:
                    session.add(
                        Label(
                            item_id=item_id,
                            value=value,
                            confidence=confidence,
                            origin="human",
                            round=round_number,
                        )
                    )
            for task in session.scalars(select(Task).where(Task.round == round_number)):
                task.status = (
                    "expired" if task.id in set(expired_task_ids) else "complete"
                )
            round_row = session.get(Round, round_number)
            if round_row is not None:
                round_row.status = "labeled"

    def finish_round(
        self,
        round_number: int,
        *,
        machine_labels: Sequence[tuple[int, dict[str, Any], float]],
        stats: dict[str, Any],
    ) -> None:
        """Write a round's machine labels and statistics in one transaction."""
        with self.session() as session:
            for item_id, value, confidence in machine_labels:
                if session.get(Label, item_id) is None:
                    session.add(
                        Label(
                            item_id=item_id,
                            value=value,
                            confidence=confidence,
                            origin="machine",
                            round=round_number,
                        )
                    )
            round_row = session.get(Round, round_number)
            if round_row is None:
                raise LookupError(f"round {round_number} does not exist")
            round_row.stats = {**(round_row.stats or {}), **stats}
            round_row.status = "done"
            round_row.finished_at = utcnow()
            session.add(
                Event(
                    kind="round-done",
                    message=(
                        f"round {round_number}: {len(machine_labels)} machine labels"
                    ),
                    data={"round": round_number},
                )
            )

    def labels(self) -> dict[int, Label]:
        with self.session() as session:
            return {label.item_id: label for label in session.scalars(select(Label))}

    # Rounds

    def rounds(self) -> list[Round]:
        with self.session() as session:
            return list(session.scalars(select(Round).order_by(Round.number)))

    def start_round(
        self,
        round_number: int,
        *,
        validation_ids: Sequence[int],
        query_ids: Sequence[int],
        plan: dict[str, Any],
    ) -> None:
        """Open a round and post its tasks in one transaction."""
        with self.session() as session:
            session.add(
                Round(number=round_number, status="collecting", stats={"plan": plan})
            )
            for item_id in validation_ids:
                session.add(
                    Task(item_id=int(item_id), round=round_number, purpose="validation")
                )
            for item_id in query_ids:
                session.add(
                    Task(item_id=int(item_id), round=round_number, purpose="query")
                )

    # Features

    def features(
        self, extractor: str, item_ids: Sequence[int]
    ) -> dict[int, np.ndarray]:
        """Return cached vectors of ``extractor`` for those of ``item_ids`` that have one."""
        found: dict[int, np.ndarray] = {}
        wanted = [int(i) for i in item_ids]
        with self.session() as session:
            for start in range(0, len(wanted), 900):
                chunk = wanted[start : start + 900]
                rows = session.execute(
                    select(Feature.item_id, Feature.vector).where(
                        Feature.extractor == extractor, Feature.item_id.in_(chunk)
                    )
                )
                for item_id, vector in rows:
                    found[item_id] = np.frombuffer(vector, dtype=np.float32)
        return found

    def put_features(self, extractor: str, vectors: dict[int, np.ndarray]) -> None:
        with self.session() as session:
            for item_id, vector in vectors.items():
                session.merge(
                    Feature(
                        item_id=int(item_id),
                        extractor=extractor,
                        vector=np.asarray(vector, dtype=np.float32).tobytes(),
                    )
                )

    # Events and counters

    def log_event(
        self,
        kind: str,
        message: str,
        *,
        item_id: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        with self.session() as session:
            session.add(Event(kind=kind, message=message, item_id=item_id, data=data))

    def events(self, kind: str | None = None) -> list[Event]:
        query = select(Event).order_by(Event.id)
        if kind is not None:
            query = query.where(Event.kind == kind)
        with self.session() as session:
            return list(session.scalars(query))

    def counters(self) -> dict[str, int]:
        """Return Ground Truth's label counters for the job."""
        with self.session() as session:
            ok = (
                session.scalar(select(func.count(Item.id)).where(Item.status == "ok"))
                or 0
            )
            failed = (
                session.scalar(
                    select(func.count(Item.id)).where(Item.status == "failed")
                )
                or 0
            )
            human = (
                session.scalar(select(func.count()).where(Label.origin == "human")) or 0
            )
            machine = (
                session.scalar(select(func.count()).where(Label.origin == "machine"))
                or 0
            )
        return {
            "HumanLabeled": human,
            "MachineLabeled": machine,
            "TotalLabeled": human + machine,
            "Unlabeled": ok - human - machine,
            "FailedNonRetryableError": failed,
        }


def isoformat(moment: datetime) -> str:
    """Format a timestamp as Ground Truth does (ISO 8601, microseconds)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")
