"""The web workforce: a FastAPI app where people log in, label tasks and follow the job.

`create_app` builds the app of one job, `add_worker` and `issue_admin_token` create
the one-time login links, and `labelloop.web.commands` holds the ``serve``,
``workers`` and ``admin-token`` commands.
"""

from labelloop.web.app import create_app
from labelloop.web.workers import (
    add_worker,
    admin_login_url,
    deactivate_worker,
    issue_admin_token,
    list_workers,
    login_url,
)

__all__ = [
    "add_worker",
    "admin_login_url",
    "create_app",
    "deactivate_worker",
    "issue_admin_token",
    "list_workers",
    "login_url",
]
