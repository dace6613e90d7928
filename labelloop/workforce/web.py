"""People answering in the browser: the loop waits for their answers to arrive."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from labelloop.config import JobConfig, WebWorkforce
from labelloop.store.schema import utcnow
from labelloop.workforce.base import WORKFORCES

if TYPE_CHECKING:
    from labelloop.store import JobStore

logger = logging.getLogger(__name__)


class WebWorkers:
    """Wait until each open task has its required answers or expires.

    A task requires its ``required_answers``, or by default the job's initial
    answers per item (``workers_per_item``, or ``min_answers`` under adaptive
    redundancy).

    Answers arrive through ``labelloop serve`` into the same database, from
    this process or another one. A task still short of answers after the
    availability lifetime (counted from when it was posted) expires. Tasks of
    items that failed (an image that does not decode) are not waited for,
    because the server no longer offers them.
    """

    def __init__(self, *, config: JobConfig, class_names: list[str]) -> None:
        settings = config.workforce
        if not isinstance(settings, WebWorkforce):
            raise TypeError("WebWorkers needs a web workforce config")
        self.poll_seconds = settings.poll_seconds
        self.initial_answers = config.initial_answers_per_item
        self.lifetime = timedelta(seconds=config.task_availability_lifetime_seconds)
        del class_names

    def collect(self, store: JobStore, round_number: int) -> list[int]:
        logger.info("round %s: waiting for web workers' answers", round_number)
        while True:
            store.check_file()
            tasks = {task.id: task for task in store.tasks(round_number=round_number)}
            counts = store.answer_counts(round_number)
            failed = {item.id for item in store.items(status="failed")}
            now = utcnow()
            expired = []
            waiting = 0
            for task_id, task in tasks.items():
                if task.item_id in failed:
                    continue
                required = task.required_answers or self.initial_answers
                if counts.get(task_id, 0) >= required:
                    continue
                created = task.created_at
                if created.tzinfo is None:
                    created = created.replace(tzinfo=now.tzinfo)
                if now - created > self.lifetime:
                    expired.append(task_id)
                else:
                    waiting += 1
            if waiting == 0:
                return expired
            time.sleep(self.poll_seconds)


@WORKFORCES.register("web")
def _make_web(**kwargs: Any) -> WebWorkers:
    return WebWorkers(**kwargs)
