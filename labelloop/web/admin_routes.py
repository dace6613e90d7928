"""Routes of the job owner: admin login, dashboard data and the job's report."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, RedirectResponse

from labelloop.web.auth import (
    Principal,
    current_admin,
    login_redirect,
    redeem_admin_token,
)
from labelloop.web.context import WebContext, get_context
from labelloop.web.dashboard import (
    REPORT_URL_PREFIX,
    job_summary,
    round_history,
    worker_activity,
)
from labelloop.web.errors import WebRequestError
from labelloop.web.models import RoundOut, SummaryOut, WorkerActivityOut
from labelloop.web.tables import ROLE_ADMIN

logger = logging.getLogger(__name__)

router = APIRouter()

Context = Annotated[WebContext, Depends(get_context)]
Admin = Annotated[Principal, Depends(current_admin)]


@router.get("/admin/login", include_in_schema=False)
def admin_login(
    token: Annotated[str, Query(min_length=16, max_length=256)], context: Context
) -> RedirectResponse:
    """Log the job owner in with a one-time admin link; a used link gets 401."""
    if not redeem_admin_token(context.store, token):
        logger.info("admin login rejected: unknown or already used link")
        raise WebRequestError(
            401,
            "this admin link is invalid or was already used; print a new one with "
            "'labelloop admin-token job.yaml'",
        )
    logger.info("job owner logged in to the dashboard")
    return login_redirect(context, role=ROLE_ADMIN, worker_id=None, target="/admin")


@router.get("/api/admin/summary")
def admin_summary(context: Context, _admin: Admin) -> SummaryOut:
    """Return the job's label counters, open work and report link."""
    return job_summary(context)


@router.get("/api/admin/rounds")
def admin_rounds(context: Context, _admin: Admin) -> list[RoundOut]:
    """Return every round with its numeric statistics (threshold, accuracy...)."""
    return round_history(context)


@router.get("/api/admin/workers")
def admin_workers(context: Context, _admin: Admin) -> list[WorkerActivityOut]:
    """Return each worker's finished tasks, median time and agreement."""
    return worker_activity(context)


@router.get(REPORT_URL_PREFIX + "{name:path}", include_in_schema=False)
def admin_report(name: str, context: Context, _admin: Admin) -> FileResponse:
    """Send a file of the job's report folder; only files inside it are served."""
    folder = context.report_dir.resolve()
    try:
        target = (folder / name).resolve()
        found = target.is_relative_to(folder) and target.is_file()
    except (OSError, RuntimeError, ValueError):
        # A name too long, a symlink loop or a null byte names no report file.
        found = False
    if not found:
        raise WebRequestError(
            404,
            f"report file {name!r} not found; the report is written when the job ends",
        )
    return FileResponse(target)
