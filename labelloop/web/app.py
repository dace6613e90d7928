"""The FastAPI app of the web workforce: worker pages, task API and owner dashboard.

Errors reach the client as JSON ``{"detail": "..."}`` that says what was wrong. An
unexpected error is logged with its traceback and answered with a generic 500, so
no traceback leaves the server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labelloop import __version__
from labelloop.config import JobConfig
from labelloop.store import JobStore
from labelloop.web.admin_routes import router as admin_router
from labelloop.web.context import WebContext
from labelloop.web.dashboard import REPORT_URL_PREFIX
from labelloop.web.errors import WebRequestError
from labelloop.web.queue import TaskQueue
from labelloop.web.tables import create_web_tables
from labelloop.web.worker_routes import router as worker_router

logger = logging.getLogger(__name__)

#: Folder of the HTML, CSS and JavaScript files that the app serves.
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Default lifetime of a login session, in seconds (7 days).
DEFAULT_SESSION_LIFETIME_SECONDS = 7 * 24 * 3600
#: Largest request body accepted, in bytes; API bodies are a few hundred bytes.
MAX_BODY_BYTES = 1 << 20

# The pages load scripts and styles from /static only, so injected markup cannot
# run script even if a page ever inserted item text as HTML.
_APP_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The job's report may use inline scripts and styles. The sandbox gives it an
# opaque origin, so its scripts cannot use the owner's session.
_REPORT_CSP = (
    "sandbox allow-scripts; default-src 'none'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
    "font-src data:; frame-ancestors 'none'"
)


def create_app(
    config: JobConfig,
    store: JobStore,
    *,
    secure_cookies: bool = False,
    session_lifetime_seconds: int = DEFAULT_SESSION_LIFETIME_SECONDS,
) -> FastAPI:
    """Build the web app of one job.

    Parameters
    ----------
    config : JobConfig
        The job; its categories, ``workers_per_item`` and time limits drive the
        task queue.
    store : JobStore
        The job's database, shared with the labeling loop. The web tables
        (sessions, admin tokens) are created in it if missing.
    secure_cookies : bool, default False
        Set the ``Secure`` flag on the session cookie. Turn it on whenever the
        app is served over HTTPS.
    session_lifetime_seconds : int, default 7 days
        How long a login lasts.

    Returns
    -------
    FastAPI
        The app, ready for uvicorn.
    """
    create_web_tables(store.engine)
    queue = TaskQueue(
        store,
        config.label_categories,
        workers_per_item=config.initial_answers_per_item,
        time_limit_seconds=config.task_time_limit_seconds,
        availability_seconds=config.task_availability_lifetime_seconds,
        gold_per_worker=(
            config.worker_quality.gold_per_worker
            if config.worker_quality.gold_label_key is not None
            else 0
        ),
    )
    context = WebContext(
        config=config,
        store=store,
        queue=queue,
        secure_cookies=secure_cookies,
        session_lifetime_seconds=session_lifetime_seconds,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        logger.info(
            "web app of job %s started (database %s)",
            config.job_name,
            store.engine.url.render_as_string(hide_password=True),
        )
        yield
        logger.info("web app of job %s stopped", config.job_name)

    # The interactive docs pages load their scripts from a CDN, so only the
    # OpenAPI schema itself is served.
    app = FastAPI(
        title=f"labelloop web workforce: {config.job_name}",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.labelloop = context

    _add_error_handlers(app)
    # The middleware added last runs first, so error responses get the headers.
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.include_router(worker_router)
    app.include_router(admin_router)

    @app.get("/", include_in_schema=False)
    def worker_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "worker.html", media_type="text/html")

    @app.get("/admin", include_in_schema=False)
    def admin_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "admin.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


class SecurityHeadersMiddleware:
    """Add a Content-Security-Policy and related headers to every response.

    API and login responses also get ``Cache-Control: no-store`` unless the route
    set its own caching header.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        is_report = path.startswith(REPORT_URL_PREFIX)
        is_dynamic = path.startswith("/api/") or path.endswith("/login")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = (
                    _REPORT_CSP if is_report else _APP_CSP
                )
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                if is_dynamic and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class UnexpectedErrorMiddleware:
    """Turn an unhandled exception into a generic JSON 500 and log it once.

    Starlette's handler for ``Exception`` raises the error again after it
    responds, so uvicorn logs it a second time and closes the client's
    keep-alive connection. This middleware sends the 500 itself and keeps the
    connection open. An error raised after the response started is raised
    again, because no other response can be sent then.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_tracking(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as error:
            if response_started:
                raise
            response = _internal_error(Request(scope), error)
            await response(scope, receive, send)


class BodySizeLimitMiddleware:
    """Send a 413 response to a request whose body is larger than `MAX_BODY_BYTES`.

    A body announced by ``Content-Length`` is rejected before it is read; a
    streamed body is counted as it arrives and rejected once it passes the
    limit, so no request makes the server hold more than the limit in memory.
    After the 413, the app sees the client as gone and its response is
    dropped.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject_too_large(scope, receive, send)
            return
        received = 0
        rejected = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    rejected = True
                    if not response_started:
                        await self._reject_too_large(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if rejected:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # The app may fail on the body cut short; the client has its 413.
            if not rejected:
                raise

    async def _reject_too_large(
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response = _reject(
            Request(scope),
            413,
            f"request body is larger than {self.max_bytes} bytes; send a smaller body",
        )
        # The server closes the connection after the 413 and reads no more of it.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _internal_error(request: Request, error: Exception) -> JSONResponse:
    logger.error(
        "unexpected error on %s %s for %s",
        request.method,
        request.url.path,
        _who(request),
        exc_info=error,
    )
    return JSONResponse(
        {"detail": "internal server error; the server log has the details"},
        status_code=500,
    )


def _who(request: Request) -> str:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return "anonymous"
    return principal.worker_id or principal.role


def _reject(request: Request, status_code: int, detail: str) -> JSONResponse:
    logger.info(
        "rejected %s %s with %d for %s: %s",
        request.method,
        request.url.path,
        status_code,
        _who(request),
        detail,
    )
    return JSONResponse({"detail": detail}, status_code=status_code)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WebRequestError)
    async def web_request_error(
        request: Request, error: WebRequestError
    ) -> JSONResponse:
        return _reject(request, error.status_code, error.detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(
        request: Request, error: StarletteHTTPException
    ) -> JSONResponse:
        response = _reject(request, error.status_code, str(error.detail))
        if error.headers:
            response.headers.update(error.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(
        request: Request, error: RequestValidationError
    ) -> JSONResponse:
        problems = []
        for problem in error.errors():
            location = ".".join(str(part) for part in problem.get("loc", ()))
            problems.append(f"{location or 'request'}: {problem.get('msg', 'invalid')}")
        return _reject(request, 422, "invalid request: " + "; ".join(problems))

    # Errors raised outside `UnexpectedErrorMiddleware` end here.
    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        return _internal_error(request, error)
