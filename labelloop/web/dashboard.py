"""Data of the owner dashboard: counters, rounds and worker activity."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select

from labelloop.store.schema import (
    Answer,
    Assignment,
    Job,
    Label,
    Round,
    Task,
    Worker,
    WorkerEstimate,
    utcnow,
)
from labelloop.store.store import machine_labels_in_force
from labelloop.web.auth import WEB_WORKER_KIND
from labelloop.web.context import WebContext
from labelloop.web.db import as_utc
from labelloop.web.models import RoundOut, SummaryOut, WorkerActivityOut
from labelloop.web.queue import ACTIVE

#: URL under which the app serves the job's report folder.
REPORT_URL_PREFIX = "/admin/report/"
#: File name of the job's HTML report inside its report folder.
REPORT_FILE_NAME = "report.html"
#: Counter of the items whose task the loop closed short of its answers, because
#: the task availability lifetime passed.
EXPIRED_COUNTER = "Expired"


def job_summary(context: WebContext) -> SummaryOut:
    """Return the job's counters, open work and report link."""
    config = context.config
    now = utcnow()
    with context.store.session() as session:
        job = session.scalars(select(Job)).first()
        open_tasks = session.scalar(
            select(func.count(Task.id)).where(Task.status == "open")
        )
        active = session.scalar(
            select(func.count(Assignment.id))
            .join(Task, Task.id == Assignment.task_id)
            .where(
                Assignment.status == ACTIVE,
                Assignment.deadline > now,
                Task.status == "open",
            )
        )
        expired = session.scalar(
            select(func.count(Task.id)).where(Task.status == "expired")
        )
        answers = session.scalar(select(func.count(Answer.id)))
        web_workers = session.scalar(
            select(func.count(Worker.id)).where(Worker.kind == WEB_WORKER_KIND)
        )

    report = context.report_dir / REPORT_FILE_NAME
    return SummaryOut(
        job_name=config.job_name,
        job_status=job.status if job is not None else "not started",
        task_type=config.task_type.value,
        categories=list(config.label_categories),
        workers_per_item=config.workers_per_item,
        counters={**context.store.counters(), EXPIRED_COUNTER: int(expired or 0)},
        open_tasks=int(open_tasks or 0),
        active_assignments=int(active or 0),
        answers=int(answers or 0),
        web_workers=int(web_workers or 0),
        report_url=REPORT_URL_PREFIX + REPORT_FILE_NAME if report.is_file() else None,
    )


def round_history(context: WebContext) -> list[RoundOut]:
    """Return every round in order with its numeric statistics.

    ``human_labeled`` and ``expired_tasks`` are counted from the labels and
    tasks of each round, as the job report counts them. ``machine_labeled`` is
    the count of machine labels in force after the round.
    """
    with context.store.session() as session:
        rounds = list(session.scalars(select(Round).order_by(Round.number)))
        labels = session.execute(
            select(Label.round, Label.origin, func.count()).group_by(
                Label.round, Label.origin
            )
        ).all()
        expired = session.execute(
            select(Task.round, func.count(Task.id))
            .where(Task.status == "expired")
            .group_by(Task.round)
        ).all()
    labeled = {(number, origin): count for number, origin, count in labels}
    expired_per_round = dict(expired)

    return [
        RoundOut(
            number=row.number,
            status=row.status,
            started_at=as_utc(row.started_at) if row.started_at else None,
            finished_at=as_utc(row.finished_at) if row.finished_at else None,
            stats={
                **numeric_stats(row.stats),
                "human_labeled": float(labeled.get((row.number, "human"), 0)),
                "machine_labeled": float(machine),
                "expired_tasks": float(expired_per_round.get(row.number, 0)),
            },
        )
        for row, machine in zip(rounds, machine_labels_in_force(rounds), strict=True)
    ]


def numeric_stats(stats: dict[str, Any] | None) -> dict[str, float]:
    """Keep the finite numbers of a round's statistics; booleans are left out."""
    numeric: dict[str, float] = {}
    for key, value in (stats or {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            numeric[str(key)] = float(value)
    return numeric


def worker_activity(context: WebContext) -> list[WorkerActivityOut]:
    """Return each worker's finished tasks, median time, agreement and quality."""
    seconds: dict[str, list[float]] = defaultdict(list)
    done: dict[str, int] = defaultdict(int)
    matches: dict[str, int] = defaultdict(int)
    compared: dict[str, int] = defaultdict(int)

    with context.store.session() as session:
        workers = list(session.scalars(select(Worker).order_by(Worker.id)))
        estimates = {
            row.worker_id: row for row in session.scalars(select(WorkerEstimate))
        }
        rows = session.execute(
            select(
                Answer.worker_id, Answer.seconds, Answer.value, Label.value
            ).outerjoin(
                Label, (Label.item_id == Answer.item_id) & (Label.origin == "human")
            )
        )
        for worker_id, answer_seconds, answer_value, label_value in rows:
            done[worker_id] += 1
            if answer_seconds is not None:
                seconds[worker_id].append(answer_seconds)
            if label_value is not None:
                compared[worker_id] += 1
                matches[worker_id] += int(answer_value == label_value)

    return [
        WorkerActivityOut(
            worker_id=worker.id,
            kind=worker.kind,
            active=worker.active,
            tasks_done=done[worker.id],
            median_seconds=(
                statistics.median(seconds[worker.id]) if seconds[worker.id] else None
            ),
            agreement=(
                matches[worker.id] / compared[worker.id]
                if compared[worker.id]
                else None
            ),
            compared=compared[worker.id],
            **_quality_fields(estimates.get(worker.id)),
        )
        for worker in workers
    ]


def _quality_fields(estimate: WorkerEstimate | None) -> dict[str, Any]:
    if estimate is None:
        return {}
    return {
        "estimated_accuracy": estimate.accuracy,
        "gold_answers": estimate.gold_answers,
        "gold_accuracy": (
            estimate.gold_correct / estimate.gold_answers
            if estimate.gold_answers
            else None
        ),
        "excluded": estimate.excluded,
    }
