"""Login by one-time token, server-side sessions and CSRF checks of the web app.

Login tokens and session ids are 256-bit random strings from `secrets`, stored only
as SHA-256 digests: a fast hash is enough for secrets of that entropy, which cannot
be guessed. The browser keeps the session id in an HttpOnly, SameSite=Strict
cookie. Every POST must also send the session's CSRF token in the ``X-CSRF-Token``
header; the page reads it from ``GET /api/me``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import delete, select

from labelloop.store import JobStore
from labelloop.store.schema import Worker, utcnow
from labelloop.web.context import WebContext, get_context
from labelloop.web.db import as_utc, write_transaction
from labelloop.web.errors import WebRequestError
from labelloop.web.tables import ROLE_ADMIN, ROLE_WORKER, AdminToken, WebSession

logger = logging.getLogger(__name__)

#: Name of the cookie that contains the session id.
SESSION_COOKIE = "labelloop_session"
#: Request header that carries the session's CSRF token on state-changing requests.
CSRF_HEADER = "X-CSRF-Token"
#: Kind of `Worker` row that logs in on the web.
WEB_WORKER_KIND = "web"

_TOKEN_BYTES = 32


def new_secret() -> str:
    """Return a fresh URL-safe random secret (256 bits)."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def hash_secret(secret: str) -> str:
    """Return the SHA-256 hex digest under which a secret is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The logged-in user of a request.

    Attributes
    ----------
    role : {"worker", "admin"}
        Whether the session labels tasks or reads the owner dashboard.
    worker_id : str or None
        The worker, for a worker session.
    csrf_token : str
        Token that state-changing requests of this session must send.
    session_hash : str
        Digest of the session id, the key of its row.
    """

    role: str
    worker_id: str | None
    csrf_token: str
    session_hash: str


def redeem_worker_token(store: JobStore, token: str) -> str | None:
    """Consume a worker's one-time login token and return the worker id.

    The token is cleared on use, so a second login with the same link fails.
    Returns None for an unknown or used token, or an inactive worker.
    """
    token_hash = hash_secret(token)
    with write_transaction(store) as session:
        worker = session.scalar(
            select(Worker).where(
                Worker.token_hash == token_hash, Worker.kind == WEB_WORKER_KIND
            )
        )
        if worker is None or not worker.active:
            return None
        worker.token_hash = None
        return worker.id


def redeem_admin_token(store: JobStore, token: str) -> bool:
    """Consume a one-time admin login token; return whether it was valid."""
    token_hash = hash_secret(token)
    with write_transaction(store) as session:
        row = session.get(AdminToken, token_hash)
        if row is None or row.used_at is not None:
            return False
        row.used_at = utcnow()
        return True


def open_session(
    store: JobStore, *, role: str, worker_id: str | None, lifetime_seconds: int
) -> str:
    """Store a new session and return its id, the cookie value.

    Expired sessions of every user are deleted at the same time.
    """
    session_id = new_secret()
    now = utcnow()
    with write_transaction(store) as session:
        session.execute(delete(WebSession).where(WebSession.expires_at <= now))
        session.add(
            WebSession(
                id_hash=hash_secret(session_id),
                role=role,
                worker_id=worker_id,
                csrf_token=new_secret(),
                created_at=now,
                expires_at=now + timedelta(seconds=lifetime_seconds),
            )
        )
    return session_id


def close_session(store: JobStore, session_hash: str) -> None:
    """Delete a session, which logs its browser out."""
    with write_transaction(store) as session:
        session.execute(delete(WebSession).where(WebSession.id_hash == session_hash))


def find_session(store: JobStore, session_id: str) -> Principal | None:
    """Return the principal of a live session id, or None.

    A session is dead once it expires, and a worker session also dies when its
    worker is deactivated or deleted.
    """
    session_hash = hash_secret(session_id)
    with store.session() as session:
        found = session.execute(
            select(WebSession, Worker.active)
            .outerjoin(Worker, Worker.id == WebSession.worker_id)
            .where(WebSession.id_hash == session_hash)
        ).first()
        if found is None:
            return None
        row, worker_active = found
        if as_utc(row.expires_at) <= utcnow():
            return None
        if row.role == ROLE_WORKER and not worker_active:
            return None
        return Principal(
            role=row.role,
            worker_id=row.worker_id,
            csrf_token=row.csrf_token,
            session_hash=session_hash,
        )


def login_redirect(
    context: WebContext, *, role: str, worker_id: str | None, target: str
) -> RedirectResponse:
    """Open a session and redirect to ``target`` with the session cookie set."""
    session_id = open_session(
        context.store,
        role=role,
        worker_id=worker_id,
        lifetime_seconds=context.session_lifetime_seconds,
    )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=context.session_lifetime_seconds,
        path="/",
        httponly=True,
        samesite="strict",
        secure=context.secure_cookies,
    )
    return response


# FastAPI dependencies.


def current_principal(
    request: Request, context: Annotated[WebContext, Depends(get_context)]
) -> Principal:
    """Return the request's principal; raise 401 without a live session.

    For POST, PUT, PATCH and DELETE the ``X-CSRF-Token`` header must equal the
    session's CSRF token, or the request fails with 403.
    """
    session_id = request.cookies.get(SESSION_COOKIE)
    principal = find_session(context.store, session_id) if session_id else None
    if principal is None:
        raise WebRequestError(
            401,
            "not logged in or the session expired; open the login link that the "
            "job owner gave you",
        )
    request.state.principal = principal

    if request.method not in ("GET", "HEAD", "OPTIONS"):
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), principal.csrf_token.encode()):
            raise WebRequestError(
                403,
                f"missing or invalid {CSRF_HEADER} header; reload the page and "
                "try again",
            )
    return principal


def current_worker(
    principal: Annotated[Principal, Depends(current_principal)],
) -> str:
    """Return the worker id of a worker session; raise 403 for other sessions."""
    if principal.role != ROLE_WORKER or principal.worker_id is None:
        raise WebRequestError(403, "this API is for workers; log in with a worker link")
    return principal.worker_id


def current_admin(
    principal: Annotated[Principal, Depends(current_principal)],
) -> Principal:
    """Return an admin session's principal; raise 403 for worker sessions."""
    if principal.role != ROLE_ADMIN:
        raise WebRequestError(
            403,
            "this API is for the job owner; log in with the admin link that "
            "'labelloop admin-token' prints",
        )
    return principal
