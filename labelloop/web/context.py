"""What every request handler of the web app shares: the job, its store and settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from labelloop.config import JobConfig
from labelloop.store import JobStore
from labelloop.web.queue import TaskQueue


@dataclass(frozen=True)
class WebContext:
    """The job served by one app.

    Attributes
    ----------
    config : JobConfig
        The job file.
    store : JobStore
        The job's database.
    queue : TaskQueue
        Task assignment over ``store``.
    secure_cookies : bool
        Whether cookies carry the ``Secure`` flag (set it when served over HTTPS).
    session_lifetime_seconds : int
        How long a login lasts.
    """

    config: JobConfig
    store: JobStore
    queue: TaskQueue
    secure_cookies: bool
    session_lifetime_seconds: int

    @property
    def report_dir(self) -> Path:
        """Folder of the job's HTML report, written when the job ends."""
        return self.config.output_path / "report"


def get_context(request: Request) -> WebContext:
    """Return the `WebContext` of the app that serves ``request``."""
    return request.app.state.labelloop
