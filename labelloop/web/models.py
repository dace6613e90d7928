"""Request and response bodies of the web API, as pydantic models."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnswerRequest(_Body):
    """A worker's answer: the class name, exactly as in the job's categories."""

    label: str = Field(min_length=1, max_length=500)


class MeResponse(_Body):
    """The logged-in session, with what its page needs to render."""

    role: Literal["worker", "admin"]
    worker_id: str | None
    csrf_token: str
    job_name: str
    task_type: str
    categories: list[str]
    finished_count: int
    task_time_limit_seconds: int


class TaskOut(_Body):
    """A task held by the worker.

    ``text`` is set for text items and ``image_url`` for image items; the page
    must render ``text`` as text, never as HTML.
    """

    assignment_id: int
    task_id: int
    item_id: int
    media: Literal["text", "image"]
    text: str | None
    image_url: str | None
    started_at: datetime
    deadline: datetime
    seconds_left: float


class NextTaskResponse(_Body):
    """The worker's current task, or None with a message saying why."""

    task: TaskOut | None
    finished_count: int
    job_status: str
    message: str


class AnswerResponse(_Body):
    answer_id: int
    finished_count: int


class SkipResponse(_Body):
    assignment_id: int
    status: Literal["skipped"]


class SummaryOut(_Body):
    """The job's state on the owner dashboard.

    ``counters`` are Ground Truth's label counters (HumanLabeled, MachineLabeled,
    TotalLabeled, Unlabeled, FailedNonRetryableError) and ``Expired``, the items
    whose task expired short of its answers. ``report_url`` is set once the
    job's HTML report exists.
    """

    job_name: str
    job_status: str
    task_type: str
    categories: list[str]
    workers_per_item: int
    counters: dict[str, int]
    open_tasks: int
    active_assignments: int
    answers: int
    web_workers: int
    report_url: str | None


class RoundOut(_Body):
    """One round of the loop with the numeric statistics it recorded.

    ``stats`` keeps the numeric entries of the round's statistics, such as
    ``threshold``, ``validation_accuracy`` and ``certified_error_bound``, and
    leaves out the others. ``human_labeled`` and ``expired_tasks`` count the
    round's human labels and expired tasks; ``machine_labeled`` counts the
    machine labels in force after the round.
    """

    number: int
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    stats: dict[str, float]


class WorkerActivityOut(_Body):
    """Activity and estimated quality of one worker.

    ``agreement`` is the share of the worker's answers equal to the item's
    consolidated human label, over the ``compared`` answers whose item has one;
    None when there is none yet. ``estimated_accuracy`` comes from the latest
    consolidation of all answers and ``gold_accuracy`` from the worker's
    ``gold_answers``; both are None until measured. ``excluded`` is set once
    the worker's estimated accuracy fell below the job's floor.
    """

    worker_id: str
    kind: str
    active: bool
    tasks_done: int
    median_seconds: float | None
    agreement: float | None
    compared: int
    estimated_accuracy: float | None = None
    gold_answers: int = 0
    gold_accuracy: float | None = None
    excluded: bool = False
