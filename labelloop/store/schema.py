"""Database tables of a labeling job.

A label is stored as JSON (``{"class": 3}`` for classification) so that tasks
with several objects per item (boxes, masks) fit the same tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: ``Task.purpose`` of a gold item's task, which every worker may answer once.
GOLD_PURPOSE = "gold"
#: ``Task.round`` of gold tasks: no round owns them, so closing a round leaves
#: them open.
GOLD_TASK_ROUND = 0


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Job(Base):
    """The job itself: one row per database."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    task_type: Mapped[str] = mapped_column(String(40))
    class_names: Mapped[list[Any]]
    config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="running")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Item(Base):
    """One manifest line; ``status`` is ``ok`` or ``failed`` (with ``error``).

    ``record`` is the manifest line as read, carried to the output unchanged;
    ``source_path`` is the resolved file of a ``source-ref`` item and ``text``
    the inline text of a ``source`` item.
    """

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    line: Mapped[int] = mapped_column(Integer, unique=True)
    record: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    source_path: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="ok", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    is_gold: Mapped[bool] = mapped_column(default=False)
    gold_value: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Worker(Base):
    """A human or simulated worker; web workers log in with a hashed token."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str | None] = mapped_column(String(128), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )


class Task(Base):
    """An item sent to the workforce in a round.

    ``purpose`` is ``validation`` (a uniform random sample, used to certify
    thresholds and to train), ``query`` (chosen by the query strategy, used to
    train only) or ``gold`` (an item of known class that checks the workers). A
    gold task belongs to no round: it has ``round`` 0 and stays open until the
    job completes. ``status`` is ``open``, ``complete`` or ``expired``.
    ``required_answers`` is the number of answers the task waits for, and None
    means the job's initial number per item.
    """

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), unique=True)
    round: Mapped[int] = mapped_column(Integer, index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    required_answers: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )


class Assignment(Base):
    """A task handed to one worker; it expires after the task time limit."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("task_id", "worker_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="active")
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Answer(Base):
    """One worker's answer for one item; a worker answers an item at most once."""

    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("item_id", "worker_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"), index=True)
    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.id"), index=True)
    value: Mapped[dict[str, Any]]
    seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )


class Label(Base):
    """The final label of an item; an item is labeled at most once."""

    __tablename__ = "labels"

    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True)
    value: Mapped[dict[str, Any]]
    confidence: Mapped[float] = mapped_column(Float)
    origin: Mapped[str] = mapped_column(String(20), index=True)
    round: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )


class Round(Base):
    """One iteration of the loop, with what it measured and decided.

    ``status`` moves ``collecting`` (tasks out) to ``labeled`` (human labels
    consolidated) to ``done`` (model trained, machine labels written).
    """

    __tablename__ = "rounds"

    number: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="collecting")
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WorkerEstimate(Base):
    """The latest quality estimate of one worker, from all answers of the job.

    ``accuracy`` and ``confusion`` (true class by row, answered class by
    column) come from the consolidation method; ``gold_answers`` and
    ``gold_correct`` count the worker's answers on gold items. ``excluded``
    stays set once the worker's accuracy fell below the job's floor.
    """

    __tablename__ = "worker_quality"

    worker_id: Mapped[str] = mapped_column(ForeignKey("workers.id"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(40))
    n_answers: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float] = mapped_column(Float)
    confusion: Mapped[list[Any]]
    gold_answers: Mapped[int] = mapped_column(Integer, default=0)
    gold_correct: Mapped[int] = mapped_column(Integer, default=0)
    excluded: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )


class ItemPosterior(Base):
    """The latest consolidated posterior of an item, the next warm start."""

    __tablename__ = "item_posteriors"

    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True)
    posterior: Mapped[list[Any]]
    round: Mapped[int] = mapped_column(Integer)


class Feature(Base):
    """A cached feature vector of one item for one extractor (float32 bytes)."""

    __tablename__ = "features"

    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), primary_key=True)
    extractor: Mapped[str] = mapped_column(String(80), primary_key=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class Event(Base):
    """A log line kept with the job: item failures, round ends, stops."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    message: Mapped[str] = mapped_column(Text)
    item_id: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
