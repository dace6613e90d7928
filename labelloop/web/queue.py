"""The web task queue: hands a round's open tasks to workers and stores answers.

Every method runs in one `write_transaction`, so these invariants hold with many
workers at once:

- a task has at most its required answers (``Task.required_answers``, by default
  ``workers_per_item``) plus unexpired active assignments, so an item goes to at
  most that many distinct workers;
- a gold task (``purpose`` ``gold``) has no such cap: every worker may answer it
  once, and a worker gets gold tasks while under its gold quota for the round;
- a worker who is not active (excluded or deactivated) gets no task;
- a worker answers an item at most once (also a unique constraint of the table);
- a worker holds at most one active assignment, and asking for the next task while
  holding one returns the same assignment.

An assignment is ``active`` until it is ``submitted``, ``skipped``, ``expired``
(its deadline passed) or ``cancelled`` (the loop closed its task). An active
assignment past its deadline no longer holds a slot, even before its status is
updated.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    CursorResult,
    ScalarSelect,
    case,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labelloop.quality import gold_quota
from labelloop.store import JobStore
from labelloop.store.schema import (
    GOLD_PURPOSE,
    Answer,
    Assignment,
    Item,
    Job,
    Round,
    Task,
    Worker,
    utcnow,
)
from labelloop.web.db import as_utc, write_transaction
from labelloop.web.errors import WebRequestError

logger = logging.getLogger(__name__)

ACTIVE = "active"
SUBMITTED = "submitted"
SKIPPED = "skipped"
EXPIRED = "expired"
CANCELLED = "cancelled"

# Candidate tasks locked and rechecked per request on databases other than SQLite,
# where two requests may pick the same candidate before either locks it.
_CANDIDATES = 8


@dataclass(frozen=True)
class AssignedTask:
    """A task held by one worker, with what the worker needs to label its item.

    Attributes
    ----------
    assignment_id, task_id, item_id : int
        Row ids of the assignment, its task and the task's item.
    text : str or None
        The item's text, for a text item.
    has_image : bool
        Whether the item is a file served by the image endpoint.
    started_at, deadline : datetime
        When the worker took the task and when the assignment expires (UTC).
    """

    assignment_id: int
    task_id: int
    item_id: int
    text: str | None
    has_image: bool
    started_at: datetime
    deadline: datetime


class TaskQueue:
    """Assign open tasks to web workers and store their answers.

    Parameters
    ----------
    store : JobStore
        The job's database.
    class_names : sequence of str
        Label categories in class-index order; an answer is stored as
        ``{"class": index}``.
    workers_per_item : int
        Distinct workers that answer a task whose ``required_answers`` is not
        set: the job's initial answers per item.
    time_limit_seconds : float
        How long a worker holds a task before it goes back to the queue.
    availability_seconds : float
        How long after it is posted a task is offered at all; gold tasks stay
        offered.
    gold_per_worker : int, default=0
        Gold items each worker answers over the job; 0 serves no gold task.
    """

    def __init__(
        self,
        store: JobStore,
        class_names: Sequence[str],
        *,
        workers_per_item: int,
        time_limit_seconds: float,
        availability_seconds: float,
        gold_per_worker: int = 0,
    ) -> None:
        self.store = store
        self.class_names = tuple(class_names)
        self.workers_per_item = workers_per_item
        self.time_limit_seconds = time_limit_seconds
        self.availability_seconds = availability_seconds
        self.gold_per_worker = gold_per_worker

    def next_task(
        self, worker_id: str, *, now: datetime | None = None
    ) -> AssignedTask | None:
        """Return the worker's active assignment, or assign the next open task.

        Tasks go out in the order they were posted, so earlier rounds first. Tasks
        that the worker skipped or let expire come last, so they return to this
        worker only when nothing else is open for them.

        A gold task comes first while the worker has answered fewer gold items
        than its quota for the round being collected.

        Returns
        -------
        AssignedTask or None
            None when no open task has a free slot for this worker, or when the
            worker is not active.
        """
        now = now or utcnow()
        with write_transaction(self.store) as session:
            self._release_stale(session, worker_id, now)
            worker = session.get(Worker, worker_id)
            if worker is not None and not worker.active:
                logger.info("worker %s is not active and gets no task", worker_id)
                return None

            current = session.scalars(
                select(Assignment)
                .join(Task, Task.id == Assignment.task_id)
                .where(
                    Assignment.worker_id == worker_id,
                    Assignment.status == ACTIVE,
                    Task.status == "open",
                )
                .order_by(Assignment.id)
            ).first()
            if current is not None:
                return self._describe(session, current)

            gold_task = self._due_gold_task(session, worker_id)
            if gold_task is not None:
                assignment = self._assign(session, gold_task, worker_id, now)
                logger.debug("assigned gold task %s to worker %s", gold_task, worker_id)
                return self._describe(session, assignment)

            serialized = session.get_bind().dialect.name == "sqlite"
            for task_id in self._candidates(session, worker_id, now):
                # SQLite runs this whole transaction under its write lock, so the
                # candidates are still free. Other databases lock the task row
                # and count again.
                # NOTE: the tests run on SQLite only, so the locking branch for
                # other databases has not been run against one.
                if not serialized and not self._lock_free_slot(
                    session, task_id, worker_id, now
                ):
                    continue
                assignment = self._assign(session, task_id, worker_id, now)
                logger.debug(
                    "assigned task %s to worker %s (assignment %s)",
                    task_id,
                    worker_id,
                    assignment.id,
                )
                return self._describe(session, assignment)
        return None

    def submit(
        self,
        worker_id: str,
        assignment_id: int,
        class_name: str,
        *,
        now: datetime | None = None,
    ) -> int:
        """Store the worker's answer for an assignment and return the answer id.

        Raises
        ------
        WebRequestError
            422 if ``class_name`` is not a label category, 404 if the assignment
            does not exist, 403 if it belongs to another worker, 409 if it was
            already answered, skipped, cancelled or is past its deadline, or if its
            task is closed. Nothing is stored in these cases.
        """
        if class_name not in self.class_names:
            allowed = ", ".join(repr(name) for name in self.class_names)
            raise WebRequestError(
                422,
                f"label {class_name!r} is not a category of this job; use one of: "
                f"{allowed}",
            )
        class_index = self.class_names.index(class_name)
        now = now or utcnow()

        with write_transaction(self.store) as session:
            assignment = self._owned_assignment(session, worker_id, assignment_id)
            task = session.get(Task, assignment.task_id)
            if task is None:
                raise WebRequestError(
                    404, f"task of assignment {assignment_id} not found"
                )

            already = session.scalar(
                select(Answer.id).where(
                    Answer.item_id == task.item_id, Answer.worker_id == worker_id
                )
            )
            if already is not None or assignment.status == SUBMITTED:
                raise WebRequestError(
                    409, f"assignment {assignment_id} was already answered"
                )
            self._check_active(assignment, task, now)

            answered = session.scalar(
                select(func.count(Answer.id)).where(Answer.task_id == task.id)
            )
            required = task.required_answers or self.workers_per_item
            if task.purpose != GOLD_PURPOSE and (answered or 0) >= required:
                raise WebRequestError(
                    409,
                    f"task {task.id} already has its {required} answers; "
                    "fetch the next task",
                )

            started = as_utc(assignment.started_at)
            answer = Answer(
                item_id=task.item_id,
                task_id=task.id,
                worker_id=worker_id,
                value={"class": class_index},
                seconds=max((now - started).total_seconds(), 0.0),
                created_at=now,
            )
            session.add(answer)
            assignment.status = SUBMITTED
            try:
                session.flush()
            except IntegrityError:
                raise WebRequestError(
                    409, f"assignment {assignment_id} was already answered"
                ) from None
            return answer.id

    def skip(
        self, worker_id: str, assignment_id: int, *, now: datetime | None = None
    ) -> None:
        """Release an active assignment so that the task goes back to the queue.

        Raises
        ------
        WebRequestError
            404, 403 or 409 as for `submit`.
        """
        now = now or utcnow()
        with write_transaction(self.store) as session:
            assignment = self._owned_assignment(session, worker_id, assignment_id)
            if assignment.status == SUBMITTED:
                raise WebRequestError(
                    409, f"assignment {assignment_id} was already answered"
                )
            task = session.get(Task, assignment.task_id)
            if task is None:
                raise WebRequestError(
                    404, f"task of assignment {assignment_id} not found"
                )
            self._check_active(assignment, task, now)
            assignment.status = SKIPPED

    def can_view_item(
        self, worker_id: str, item_id: int, *, now: datetime | None = None
    ) -> bool:
        """Return whether the worker answered the item or is assigned it now."""
        now = now or utcnow()
        with self.store.session() as session:
            answered = session.scalar(
                select(Answer.id).where(
                    Answer.item_id == item_id, Answer.worker_id == worker_id
                )
            )
            if answered is not None:
                return True
            assigned = session.scalar(
                select(Assignment.id)
                .join(Task, Task.id == Assignment.task_id)
                .where(
                    Task.item_id == item_id,
                    Assignment.worker_id == worker_id,
                    Assignment.status == ACTIVE,
                    Assignment.deadline > now,
                )
            )
            return assigned is not None

    def finished_count(self, worker_id: str) -> int:
        """Return the number of answers the worker has given."""
        return self.progress(worker_id)[0]

    def progress(self, worker_id: str) -> tuple[int, str]:
        """Return the worker's number of answers and the job's status.

        The status is ``not started`` until the loop has created the job.
        """
        with self.store.session() as session:
            count = session.scalar(
                select(func.count(Answer.id)).where(Answer.worker_id == worker_id)
            )
            status = session.scalar(select(Job.status))
        return int(count or 0), status or "not started"

    # Helpers that run inside the caller's transaction.

    def _release_stale(self, session: Session, worker_id: str, now: datetime) -> None:
        closed_tasks = select(Task.id).where(Task.status != "open")
        released = _rowcount(
            session.execute(
                update(Assignment)
                .where(
                    Assignment.worker_id == worker_id,
                    Assignment.status == ACTIVE,
                    (Assignment.deadline <= now) | Assignment.task_id.in_(closed_tasks),
                )
                .values(
                    status=case((Assignment.deadline <= now, EXPIRED), else_=CANCELLED)
                )
            )
        )
        if released:
            logger.info(
                "worker %s: released %d assignments that expired or whose task closed",
                worker_id,
                released,
            )

    def _candidates(self, session: Session, worker_id: str, now: datetime) -> list[int]:
        answered_by_worker = exists().where(
            Answer.item_id == Task.item_id, Answer.worker_id == worker_id
        )
        returned_by_worker = exists().where(
            Assignment.task_id == Task.id, Assignment.worker_id == worker_id
        )
        posted_after = now - timedelta(seconds=self.availability_seconds)
        open_with_slot = (
            select(Task.id)
            .join(Item, Item.id == Task.item_id)
            .where(
                Task.status == "open",
                Task.purpose != GOLD_PURPOSE,
                Task.created_at > posted_after,
                Item.status == "ok",
                ~answered_by_worker,
                self._answers_of_task() + self._holds_of_task(now)
                < func.coalesce(Task.required_answers, self.workers_per_item),
            )
            .order_by(Task.id)
            .limit(_CANDIDATES)
        )
        # Task ids grow in the order the loop posts tasks, so ordering by id
        # serves earlier rounds first. Two queries rather than one ORDER BY on
        # the "returned" flag let SQLite stop at the first free task.
        fresh = list(session.scalars(open_with_slot.where(~returned_by_worker)))
        if fresh:
            return fresh
        return list(session.scalars(open_with_slot.where(returned_by_worker)))

    def _lock_free_slot(
        self, session: Session, task_id: int, worker_id: str, now: datetime
    ) -> bool:
        locked = session.scalar(
            select(Task.id)
            .where(Task.id == task_id, Task.status == "open")
            .with_for_update()
        )
        return locked is not None and self._has_free_slot(
            session, task_id, worker_id, now
        )

    def _has_free_slot(
        self, session: Session, task_id: int, worker_id: str, now: datetime
    ) -> bool:
        answered = session.scalar(
            select(func.count(Answer.id)).where(Answer.task_id == task_id)
        )
        holds = session.scalar(
            select(func.count(Assignment.id)).where(
                Assignment.task_id == task_id,
                Assignment.status == ACTIVE,
                Assignment.deadline > now,
            )
        )
        task = session.get(Task, task_id)
        if task is None:
            return False
        answered_by_worker = session.scalar(
            select(Answer.id).where(
                Answer.item_id == task.item_id, Answer.worker_id == worker_id
            )
        )
        taken = (answered or 0) + (holds or 0)
        required = task.required_answers or self.workers_per_item
        return answered_by_worker is None and taken < required

    def _due_gold_task(self, session: Session, worker_id: str) -> int | None:
        """Return a gold task for the worker if its gold quota is not reached.

        NOTE: gold tasks go out before regular ones while due, so a worker meets
        each round's gold items at the start of the round.
        """
        if self.gold_per_worker <= 0:
            return None
        collecting = session.scalar(
            select(func.max(Round.number)).where(Round.status == "collecting")
        )
        quota = gold_quota(collecting or 0, self.gold_per_worker)
        if quota == 0:
            return None
        done = session.scalar(
            select(func.count(Answer.id))
            .join(Item, Item.id == Answer.item_id)
            .where(Answer.worker_id == worker_id, Item.is_gold.is_(True))
        )
        if (done or 0) >= quota:
            return None

        answered_by_worker = exists().where(
            Answer.item_id == Task.item_id, Answer.worker_id == worker_id
        )
        returned_by_worker = exists().where(
            Assignment.task_id == Task.id, Assignment.worker_id == worker_id
        )
        open_gold = (
            select(Task.id)
            .join(Item, Item.id == Task.item_id)
            .where(
                Task.status == "open",
                Task.purpose == GOLD_PURPOSE,
                Item.status == "ok",
                ~answered_by_worker,
            )
            .order_by(Task.id)
        )
        candidates = list(session.scalars(open_gold.where(~returned_by_worker)))
        if not candidates:
            candidates = list(session.scalars(open_gold.where(returned_by_worker)))
        if not candidates:
            return None
        # Workers see the gold items in different orders, fixed per worker.
        key = zlib.crc32(f"{worker_id}:{done or 0}".encode())
        return candidates[key % len(candidates)]

    @staticmethod
    def _answers_of_task() -> ScalarSelect[int]:
        return (
            select(func.count(Answer.id))
            .where(Answer.task_id == Task.id)
            .correlate(Task)
            .scalar_subquery()
        )

    @staticmethod
    def _holds_of_task(now: datetime) -> ScalarSelect[int]:
        return (
            select(func.count(Assignment.id))
            .where(
                Assignment.task_id == Task.id,
                Assignment.status == ACTIVE,
                Assignment.deadline > now,
            )
            .correlate(Task)
            .scalar_subquery()
        )

    def _assign(
        self, session: Session, task_id: int, worker_id: str, now: datetime
    ) -> Assignment:
        deadline = now + timedelta(seconds=self.time_limit_seconds)
        # A worker has one assignment row per task (a unique constraint), so a
        # task that comes back to the same worker reuses the row.
        assignment = session.scalar(
            select(Assignment).where(
                Assignment.task_id == task_id, Assignment.worker_id == worker_id
            )
        )
        if assignment is None:
            assignment = Assignment(task_id=task_id, worker_id=worker_id)
            session.add(assignment)
        assignment.status = ACTIVE
        assignment.started_at = now
        assignment.deadline = deadline
        session.flush()
        return assignment

    def _describe(self, session: Session, assignment: Assignment) -> AssignedTask:
        task = session.get(Task, assignment.task_id)
        item = session.get(Item, task.item_id) if task is not None else None
        if task is None or item is None:
            raise LookupError(f"assignment {assignment.id} has no task or item")
        return AssignedTask(
            assignment_id=assignment.id,
            task_id=task.id,
            item_id=item.id,
            text=item.text,
            has_image=item.source_path is not None,
            started_at=as_utc(assignment.started_at),
            deadline=as_utc(assignment.deadline),
        )

    @staticmethod
    def _owned_assignment(
        session: Session, worker_id: str, assignment_id: int
    ) -> Assignment:
        assignment = session.get(Assignment, assignment_id)
        if assignment is None:
            raise WebRequestError(404, f"assignment {assignment_id} not found")
        if assignment.worker_id != worker_id:
            raise WebRequestError(
                403, f"assignment {assignment_id} belongs to another worker"
            )
        return assignment

    @staticmethod
    def _check_active(assignment: Assignment, task: Task, now: datetime) -> None:
        if assignment.status != ACTIVE:
            raise WebRequestError(
                409,
                f"assignment {assignment.id} is {assignment.status}; fetch the next "
                "task",
            )
        deadline = as_utc(assignment.deadline)
        if deadline <= now:
            raise WebRequestError(
                409,
                f"assignment {assignment.id} expired at {deadline.isoformat()}; "
                "fetch the next task",
            )
        if task.status != "open":
            raise WebRequestError(
                409, f"task {task.id} is {task.status}; fetch the next task"
            )


def _rowcount(result: object) -> int:
    # UPDATE statements return a CursorResult, whose rowcount is the number of
    # rows changed.
    return result.rowcount if isinstance(result, CursorResult) else 0
