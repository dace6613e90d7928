"""Web workers and owner logins: one-time login tokens and the links that carry them.

A worker logs in once per token: `add_worker` creates the worker, or issues a new
token for an existing web worker, which invalidates the previous unused token. The
token is returned to the caller and stored only as its SHA-256 digest.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from sqlalchemy import func, select

from labelloop.store import JobStore
from labelloop.store.schema import Answer, Worker
from labelloop.web.auth import WEB_WORKER_KIND, hash_secret, new_secret
from labelloop.web.db import write_transaction
from labelloop.web.errors import WorkforceError
from labelloop.web.tables import AdminToken, create_web_tables

logger = logging.getLogger(__name__)

#: Worker names: a letter or digit, then up to 63 letters, digits or ``._@-``.
WORKER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
#: Path of the worker login link.
WORKER_LOGIN_PATH = "/login"
#: Path of the owner dashboard login link.
ADMIN_LOGIN_PATH = "/admin/login"


@dataclass(frozen=True)
class WorkerSummary:
    """A web worker as listed by `list_workers`."""

    name: str
    active: bool
    answers: int
    has_unused_link: bool


def add_worker(store: JobStore, name: str) -> str:
    """Create a web worker, or issue a new login token to an existing one.

    Parameters
    ----------
    store : JobStore
        The job's database.
    name : str
        Worker id, shown on the dashboard; see `WORKER_NAME_PATTERN`.

    Returns
    -------
    str
        The one-time login token; pass it to `login_url`.

    Raises
    ------
    WorkforceError
        If the name is invalid or belongs to a worker that is not a web worker
        (a simulated one).
    """
    if not WORKER_NAME_PATTERN.fullmatch(name):
        raise WorkforceError(
            f"invalid worker name {name!r}; use 1 to 64 letters, digits or '._@-', "
            "starting with a letter or digit"
        )
    token = new_secret()
    with write_transaction(store) as session:
        worker = session.get(Worker, name)
        if worker is None:
            session.add(
                Worker(
                    id=name,
                    kind=WEB_WORKER_KIND,
                    token_hash=hash_secret(token),
                    active=True,
                )
            )
            created = True
        elif worker.kind != WEB_WORKER_KIND:
            raise WorkforceError(
                f"worker {name!r} exists as a {worker.kind} worker, not a web "
                "worker; choose another name"
            )
        else:
            worker.token_hash = hash_secret(token)
            worker.active = True
            created = False
    logger.info(
        "%s web worker %s with a new login link",
        "created" if created else "reissued",
        name,
    )
    return token


def deactivate_worker(store: JobStore, name: str) -> None:
    """Log a web worker out and reject their links; their answers stay.

    Raises
    ------
    WorkforceError
        If no web worker has this name.
    """
    with write_transaction(store) as session:
        worker = session.get(Worker, name)
        if worker is None or worker.kind != WEB_WORKER_KIND:
            raise WorkforceError(
                f"no web worker named {name!r}; 'labelloop workers list' shows them"
            )
        worker.active = False
        worker.token_hash = None
    logger.info("deactivated web worker %s", name)


def list_workers(store: JobStore) -> list[WorkerSummary]:
    """Return the job's web workers with their answer counts, by name."""
    with store.session() as session:
        counts = dict(
            session.execute(
                select(Answer.worker_id, func.count(Answer.id)).group_by(
                    Answer.worker_id
                )
            ).all()
        )
        workers = session.scalars(
            select(Worker).where(Worker.kind == WEB_WORKER_KIND).order_by(Worker.id)
        )
        return [
            WorkerSummary(
                name=worker.id,
                active=worker.active,
                answers=int(counts.get(worker.id, 0)),
                has_unused_link=worker.token_hash is not None,
            )
            for worker in workers
        ]


def issue_admin_token(store: JobStore) -> str:
    """Store a new one-time login token of the owner dashboard and return it."""
    create_web_tables(store.engine)
    token = new_secret()
    with write_transaction(store) as session:
        session.add(AdminToken(token_hash=hash_secret(token)))
    logger.info("issued a new admin login link")
    return token


def login_url(base_url: str, token: str) -> str:
    """Build a worker's login link from the server's base URL and a token.

    Raises
    ------
    WorkforceError
        If ``base_url`` is not an http(s) URL.
    """
    return _link(base_url, WORKER_LOGIN_PATH, token)


def admin_login_url(base_url: str, token: str) -> str:
    """Build the owner dashboard's login link; see `login_url`."""
    return _link(base_url, ADMIN_LOGIN_PATH, token)


def _link(base_url: str, path: str, token: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise WorkforceError(
            f"invalid base URL {base_url!r}; give the address workers open, such "
            "as http://127.0.0.1:8000"
        )
    return f"{base_url.rstrip('/')}{path}?{urlencode({'token': token})}"
