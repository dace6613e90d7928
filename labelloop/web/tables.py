"""Database tables of the web workforce: login sessions and admin login tokens.

They live in the job's database beside the tables of `labelloop.store.schema`, under
their own metadata, so the job store needs no change to serve the web UI. Secrets
(session ids, admin tokens) are stored only as SHA-256 hex digests.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from labelloop.store.schema import utcnow

#: Role of a session that labels tasks.
ROLE_WORKER = "worker"
#: Role of a session that may read the owner dashboard.
ROLE_ADMIN = "admin"


class WebBase(DeclarativeBase):
    pass


class WebSession(WebBase):
    """A logged-in browser: a worker or the job owner.

    ``id_hash`` is the SHA-256 digest of the session id held in the browser's
    cookie. ``csrf_token`` must come back in the ``X-CSRF-Token`` header of every
    state-changing request of the session.
    """

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))
    worker_id: Mapped[str | None] = mapped_column(String(64), index=True)
    csrf_token: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class AdminToken(WebBase):
    """A one-time login token of the owner dashboard; ``used_at`` is set on login."""

    __tablename__ = "web_admin_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow
    )
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def create_web_tables(engine: Engine) -> None:
    """Create the web tables in the job's database if they do not exist yet."""
    WebBase.metadata.create_all(engine)
