"""The job store: every state change of a job goes through one transaction here."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from labelloop.errors import ConfigError, DatabaseMissingError
from labelloop.store.schema import (
    GOLD_PURPOSE,
    GOLD_TASK_ROUND,
    Answer,
    Assignment,
    Base,
    Event,
    Feature,
    Item,
    ItemPosterior,
    Job,
    Label,
    Round,
    Task,
    Worker,
    WorkerEstimate,
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


def _file_id(path: str) -> tuple[int, int] | None:
    """Return the device and inode of ``path``, or None if it does not exist."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return (status.st_dev, status.st_ino)


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
        try:
            self.engine = make_engine(url)
        except (ArgumentError, ImportError) as error:
            # ImportError: the URL names a database whose driver is not installed.
            raise ConfigError(
                f"database_url {url!r} cannot be used: {error}; give a SQLAlchemy "
                "URL such as sqlite:///path/job.db, with its driver installed"
            ) from None
        try:
            Base.metadata.create_all(self.engine)
            _add_missing_columns(self.engine)
        except SQLAlchemyError as error:
            self.engine.dispose()
            reason = getattr(error, "orig", None) or error
            raise ConfigError(
                f"cannot open the job database {url}: {reason}; check that its "
                "folder is writable and that the file is a labelloop job database, "
                "or choose another output_path or database_url"
            ) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.path = self.engine.url.database if url.startswith("sqlite") else None
        if self.path in ("", ":memory:"):
            self.path = None
        self._file_id = _file_id(self.path) if self.path else None

    def check_file(self) -> None:
        """Raise ``DatabaseMissingError`` if the SQLite file is gone or replaced.

        SQLite keeps writing to a deleted file through its open handle, so
        without this check a job whose ``job.db`` was removed would go on and
        lose every answer it records. Other databases pass.
        """
        if self.path is None:
            return
        if _file_id(self.path) != self._file_id:
            raise DatabaseMissingError(
                f"the job database {self.path} was deleted or replaced while the "
                "job ran; answers recorded since then are lost. Restore the file "
                "from a backup or delete the output folder, then run the job again"
            )

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
        """Set the job's status; a completed job closes its open gold tasks."""
        with self.session() as session:
            job = session.scalars(select(Job)).one()
            job.status = status
            job.finished_at = utcnow() if status == "completed" else None
            if status == "completed":
                session.execute(
                    update(Task)
                    .where(Task.purpose == GOLD_PURPOSE, Task.status == "open")
                    .values(status="complete")
                )

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

    def count_answers(self) -> int:
        """Return the number of answers stored for the job."""
        with self.session() as session:
            return int(session.scalar(select(func.count(Answer.id))) or 0)

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

    # Gold items and worker quality

    def workers(self) -> list[Worker]:
        with self.session() as session:
            return list(session.scalars(select(Worker).order_by(Worker.id)))

    def add_gold_items(
        self, gold: Mapping[int, int], *, label_round: int = 1
    ) -> list[int]:
        """Mark items gold with their known class, in one transaction.

        Each new gold item gets its gold task and its known label (origin
        ``human``, confidence 1). Items that already have a task are left as
        they are. Returns the ids of the items marked now.
        """
        marked = []
        with self.session() as session:
            tasked = set(session.scalars(select(Task.item_id)))
            for item_id, class_index in sorted(gold.items()):
                item = session.get(Item, item_id)
                if item is None or item.status != "ok" or item_id in tasked:
                    continue
                item.is_gold = True
                item.gold_value = {"class": int(class_index)}
                session.add(
                    Task(item_id=item_id, round=GOLD_TASK_ROUND, purpose=GOLD_PURPOSE)
                )
                if session.get(Label, item_id) is None:
                    session.add(
                        Label(
                            item_id=item_id,
                            value={"class": int(class_index)},
                            confidence=1.0,
                            origin="human",
                            round=label_round,
                        )
                    )
                marked.append(item_id)
        return marked

    def gold_classes(self) -> dict[int, int]:
        """Return the known class of every valid gold item, by item id."""
        with self.session() as session:
            rows = session.execute(
                select(Item.id, Item.gold_value).where(
                    Item.is_gold.is_(True), Item.status == "ok"
                )
            )
            return {
                item_id: int(value["class"])
                for item_id, value in rows
                if isinstance(value, dict) and "class" in value
            }

    def set_required_answers(self, required: Mapping[int, int]) -> None:
        """Set the number of answers each task waits for, by task id."""
        with self.session() as session:
            for task_id, count in required.items():
                session.execute(
                    update(Task)
                    .where(Task.id == int(task_id))
                    .values(required_answers=int(count))
                )

    def worker_estimates(self) -> dict[str, WorkerEstimate]:
        with self.session() as session:
            return {
                row.worker_id: row for row in session.scalars(select(WorkerEstimate))
            }

    def excluded_workers(self) -> set[str]:
        """Return the ids of workers excluded for low quality, for good.

        NOTE: a web worker given a new link with ``labelloop workers add`` is
        active again and gets tasks, but stays in this set, so their answers
        keep weight 0.
        """
        with self.session() as session:
            flagged = set(
                session.scalars(
                    select(WorkerEstimate.worker_id).where(
                        WorkerEstimate.excluded.is_(True)
                    )
                )
            )
            logged = {
                (data or {}).get("worker_id")
                for data in session.scalars(
                    select(Event.data).where(Event.kind == "worker-excluded")
                )
            }
        return flagged | {worker for worker in logged if isinstance(worker, str)}

    def item_posteriors(self) -> dict[int, list[float]]:
        with self.session() as session:
            rows = session.execute(
                select(ItemPosterior.item_id, ItemPosterior.posterior)
            )
            return {item_id: list(posterior) for item_id, posterior in rows}

    def save_worker_quality(
        self,
        round_number: int,
        *,
        method: str,
        estimates: Sequence[dict[str, Any]],
        posteriors: Mapping[int, Sequence[float]],
    ) -> None:
        """Replace the worker estimates and item posteriors in one transaction.

        ``estimates`` are dicts with the columns of ``WorkerEstimate`` other
        than ``round``, ``method`` and ``updated_at``.
        """
        now = utcnow()
        with self.session() as session:
            for estimate in estimates:
                row = session.get(WorkerEstimate, estimate["worker_id"])
                if row is None:
                    row = WorkerEstimate(worker_id=estimate["worker_id"])
                    session.add(row)
                for key, value in estimate.items():
                    setattr(row, key, value)
                row.round = round_number
                row.method = method
                row.updated_at = now
            session.execute(delete(ItemPosterior))
            if posteriors:
                session.execute(
                    insert(ItemPosterior),
                    [
                        {
                            "item_id": int(item_id),
                            "posterior": [float(p) for p in posterior],
                            "round": round_number,
                        }
                        for item_id, posterior in posteriors.items()
                    ],
                )

    def exclude_worker(
        self, worker_id: str, *, message: str, data: dict[str, Any]
    ) -> int:
        """Deactivate a worker, cancel their active assignments and log why.

        Returns the number of assignments cancelled, whose tasks go back to the
        queue.
        """
        with self.session() as session:
            worker = session.get(Worker, worker_id)
            if worker is not None:
                worker.active = False
            estimate = session.get(WorkerEstimate, worker_id)
            if estimate is not None:
                estimate.excluded = True
            result = session.execute(
                update(Assignment)
                .where(Assignment.worker_id == worker_id, Assignment.status == "active")
                .values(status="cancelled")
            )
            cancelled = int(getattr(result, "rowcount", 0) or 0)
            session.add(
                Event(
                    kind="worker-excluded",
                    message=message,
                    data={**data, "worker_id": worker_id, "cancelled": cancelled},
                )
            )
        return cancelled

    # Labels

    def write_human_labels(
        self,
        round_number: int,
        labels: Sequence[tuple[int, dict[str, Any], float]],
        *,
        expired_task_ids: Sequence[int] = (),
    ) -> None:
        """Write consolidated human labels and close the round's tasks at once.

        A human label replaces a machine label of the same item, which happens
        when a validation item is drawn from the machine-labeled items. It never
        replaces an earlier human label.
        """
        with self.session() as session:
            for item_id, value, confidence in labels:
                existing = session.get(Label, item_id)
                if existing is not None and existing.origin == "human":
                    continue
                if existing is not None:
                    session.delete(existing)
                    session.flush()
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
        replace_machine_labels: bool = False,
    ) -> None:
        """Write a round's machine labels and statistics in one transaction.

        With ``replace_machine_labels``, every earlier machine label is removed
        first, so the round's labels become the job's whole machine-labeled
        set. Human labels are never replaced.
        """
        with self.session() as session:
            if replace_machine_labels:
                session.execute(delete(Label).where(Label.origin == "machine"))
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
                        + (
                            ", replacing every earlier one"
                            if replace_machine_labels
                            else ""
                        )
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
        reposted_ids: Sequence[int] = (),
        reposted_query_ids: Sequence[int] = (),
    ) -> None:
        """Open a round and post its tasks in one transaction.

        An item has one task, so the expired validation tasks of
        ``reposted_ids`` and the expired query tasks of ``reposted_query_ids``
        move to this round and open again, as if posted now, with their
        purpose unchanged. Their earlier rounds are kept in a
        ``tasks-reposted`` event.

        Raises
        ------
        ValueError
            If an item of ``reposted_ids`` has no expired validation task, or
            one of ``reposted_query_ids`` no expired query task; nothing is
            written then.
        """
        reposted = [(int(i), "validation") for i in reposted_ids] + [
            (int(i), "query") for i in reposted_query_ids
        ]
        with self.session() as session:
            session.add(
                Round(number=round_number, status="collecting", stats={"plan": plan})
            )
            earlier_rounds = []
            for item_id, purpose in reposted:
                task = session.scalar(select(Task).where(Task.item_id == item_id))
                if task is None or task.status != "expired" or task.purpose != purpose:
                    raise ValueError(
                        f"item {item_id} has no expired {purpose} task to post again"
                    )
                earlier_rounds.append(task.round)
                task.round = round_number
                task.status = "open"
                task.created_at = utcnow()
            if reposted:
                session.add(
                    Event(
                        kind="tasks-reposted",
                        message=(
                            f"round {round_number}: {len(reposted)} expired "
                            + ("task" if len(reposted) == 1 else "tasks")
                            + " posted again"
                        ),
                        data={
                            "round": round_number,
                            "item_ids": [item_id for item_id, _ in reposted],
                            "earlier_rounds": earlier_rounds,
                        },
                    )
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
        """Return the cached vectors of ``extractor`` for the ``item_ids`` with one."""
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


def _add_missing_columns(engine: Engine) -> None:
    """Add nullable columns that the tables gained after a job's database was made.

    ``create_all`` creates missing tables but leaves existing ones as they are,
    so a job created by an earlier version would lack newer columns.
    """
    inspector = inspect(engine)
    existing_tables = set(inspector.get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present or not column.nullable:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as connection:
                connection.execute(
                    text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                )
            logger.info("added column %s.%s to the job's database", table, column)


def machine_labels_in_force(rounds: Sequence[Round]) -> list[int]:
    """Return the count of machine labels in force after each of ``rounds``.

    A round records the count when it finishes, because a certified job's
    later test may replace the whole set. A round still in progress shows the
    count of the round before it.
    """
    counts: list[int] = []
    for row in rounds:
        stats = row.stats or {}
        if "machine_labeled" in stats:
            counts.append(int(stats["machine_labeled"] or 0))
        else:
            counts.append(counts[-1] if counts else 0)
    return counts


def isoformat(moment: datetime) -> str:
    """Format a timestamp as Ground Truth does (ISO 8601, microseconds)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")
