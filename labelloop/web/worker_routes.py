"""Routes of workers: login, the current session, tasks, answers and item images."""

from __future__ import annotations

import io
import logging
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from labelloop.errors import MediaError
from labelloop.media import load_image
from labelloop.store.schema import Item, utcnow
from labelloop.web.auth import (
    SESSION_COOKIE,
    Principal,
    close_session,
    current_principal,
    current_worker,
    login_redirect,
    redeem_worker_token,
)
from labelloop.web.context import WebContext, get_context
from labelloop.web.errors import WebRequestError
from labelloop.web.models import (
    AnswerRequest,
    AnswerResponse,
    MeResponse,
    NextTaskResponse,
    SkipResponse,
    TaskOut,
)
from labelloop.web.queue import AssignedTask
from labelloop.web.tables import ROLE_WORKER

logger = logging.getLogger(__name__)

router = APIRouter()

#: Image types that browsers display as they are; other images are sent as PNG.
BROWSER_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}

#: Largest row id the database stores (SQLite's signed 64-bit INTEGER); a larger id
#: in a URL is rejected with 422 before it reaches the database.
MAX_ROW_ID = 2**63 - 1

Context = Annotated[WebContext, Depends(get_context)]
WorkerId = Annotated[str, Depends(current_worker)]
LoginToken = Annotated[str, Query(min_length=16, max_length=256)]
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


@router.get("/login", include_in_schema=False)
def worker_login(token: LoginToken, context: Context) -> RedirectResponse:
    """Log a worker in with a one-time link; a used link is rejected with 401.

    NOTE: the link is consumed by a GET, so a mail or chat client that fetches
    links for previews uses it up; issue a new link with ``workers add``.
    """
    worker_id = redeem_worker_token(context.store, token)
    if worker_id is None:
        logger.info("worker login rejected: unknown or already used link")
        raise WebRequestError(
            401,
            "this login link is invalid or was already used; ask the job owner for "
            "a new link ('labelloop workers add NAME job.yaml')",
        )
    logger.info("worker %s logged in", worker_id)
    return login_redirect(context, role=ROLE_WORKER, worker_id=worker_id, target="/")


@router.post("/api/logout")
def logout(
    context: Context, principal: Annotated[Principal, Depends(current_principal)]
) -> JSONResponse:
    """End the session of the request."""
    close_session(context.store, principal.session_hash)
    logger.info("%s logged out", principal.worker_id or principal.role)
    response = JSONResponse({"detail": "logged out"})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/api/me")
def me(
    context: Context, principal: Annotated[Principal, Depends(current_principal)]
) -> MeResponse:
    """Return the session's role, CSRF token and the job's categories."""
    finished = (
        context.queue.finished_count(principal.worker_id) if principal.worker_id else 0
    )
    return MeResponse(
        role=principal.role,  # type: ignore[arg-type]
        worker_id=principal.worker_id,
        csrf_token=principal.csrf_token,
        job_name=context.config.job_name,
        task_type=context.config.task_type.value,
        categories=list(context.config.label_categories),
        finished_count=finished,
        task_time_limit_seconds=context.config.task_time_limit_seconds,
    )


@router.get("/api/tasks/next")
def next_task(context: Context, worker_id: WorkerId) -> NextTaskResponse:
    """Return the worker's current task, assigning the next open one if needed."""
    assigned = context.queue.next_task(worker_id)
    finished, job_status = context.queue.progress(worker_id)

    if assigned is not None:
        return NextTaskResponse(
            task=_task_out(assigned),
            finished_count=finished,
            job_status=job_status,
            message="",
        )
    if job_status == "completed":
        message = "The job is finished. Thank you!"
    else:
        message = "No task is open for you right now. This page checks again soon."
    return NextTaskResponse(
        task=None, finished_count=finished, job_status=job_status, message=message
    )


@router.post("/api/tasks/{assignment_id}/answer")
def answer_task(
    assignment_id: RowId,
    body: AnswerRequest,
    context: Context,
    worker_id: WorkerId,
) -> AnswerResponse:
    """Store the worker's answer, a class name from the job's categories."""
    answer_id = context.queue.submit(worker_id, assignment_id, body.label)
    logger.debug(
        "worker %s answered assignment %s (answer %s)",
        worker_id,
        assignment_id,
        answer_id,
    )
    return AnswerResponse(
        answer_id=answer_id, finished_count=context.queue.finished_count(worker_id)
    )


@router.post("/api/tasks/{assignment_id}/skip")
def skip_task(
    assignment_id: RowId, context: Context, worker_id: WorkerId
) -> SkipResponse:
    """Give an assignment back to the queue without answering it."""
    context.queue.skip(worker_id, assignment_id)
    logger.debug("worker %s skipped assignment %s", worker_id, assignment_id)
    return SkipResponse(assignment_id=assignment_id, status="skipped")


@router.get(
    "/api/items/{item_id}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
)
def item_image(item_id: RowId, context: Context, worker_id: WorkerId) -> Response:
    """Send an item's image to a worker who is assigned the item or answered it.

    The file path comes from the item's row, never from the request.
    """
    if not context.queue.can_view_item(worker_id, item_id):
        raise WebRequestError(403, f"item {item_id} is not assigned to you")
    item = _load_item(context, item_id)
    if item is None or item.source_path is None:
        raise WebRequestError(404, f"item {item_id} has no image")

    path = FilePath(item.source_path)
    if not path.is_file():
        logger.warning("image file of item %s is missing: %s", item_id, path)
        raise WebRequestError(404, f"the image file of item {item_id} is missing")
    headers = {"Cache-Control": "private, max-age=600"}
    media_type = BROWSER_IMAGE_TYPES.get(path.suffix.lower())
    if media_type is not None:
        return FileResponse(path, media_type=media_type, headers=headers)

    try:
        png = _encode_png(path)
    except MediaError as error:
        logger.warning("image of item %s cannot be decoded: %s", item_id, error)
        raise WebRequestError(
            404, f"the image file of item {item_id} cannot be decoded"
        ) from None
    return Response(png, media_type="image/png", headers=headers)


def _load_item(context: WebContext, item_id: int) -> Item | None:
    with context.store.session() as session:
        return session.get(Item, item_id)


def _encode_png(path: FilePath) -> bytes:
    buffer = io.BytesIO()
    load_image(path, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def _task_out(assigned: AssignedTask) -> TaskOut:
    is_text = assigned.text is not None
    return TaskOut(
        assignment_id=assigned.assignment_id,
        task_id=assigned.task_id,
        item_id=assigned.item_id,
        media="text" if is_text else "image",
        text=assigned.text,
        image_url=None if is_text else f"/api/items/{assigned.item_id}/image",
        started_at=assigned.started_at,
        deadline=assigned.deadline,
        seconds_left=max((assigned.deadline - utcnow()).total_seconds(), 0.0),
    )
