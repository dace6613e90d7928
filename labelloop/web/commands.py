"""Command-line commands of the web workforce: serve, workers and admin-token.

The main ``labelloop`` group attaches `serve_command`, `workers_group` and
`admin_token_command`.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from pathlib import Path

import click

from labelloop.config import JobConfig, load_job_config
from labelloop.errors import LabelloopError
from labelloop.store import JobStore
from labelloop.web.workers import (
    add_worker,
    admin_login_url,
    deactivate_worker,
    issue_admin_token,
    list_workers,
    login_url,
)

logger = logging.getLogger(__name__)

#: Address that printed links use when ``--base-url`` is not given.
DEFAULT_BASE_URL = "http://127.0.0.1:8000"

_JOB_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_BASE_URL_HELP = "Address that workers open, used to build the printed link."


def _open_job(job_file: Path) -> tuple[JobConfig, JobStore]:
    try:
        config = load_job_config(job_file)
    except LabelloopError as error:
        raise click.ClickException(str(error)) from None
    if config.database_url is None:
        # The default SQLite database lives in the output folder.
        config.output_path.mkdir(parents=True, exist_ok=True)
    return config, JobStore(config.database)


def _run_loop(config: JobConfig) -> None:
    from labelloop.loop import run_job

    logger.info("labeling loop of job %s started", config.job_name)
    try:
        run_job(config)
    except Exception:
        logger.exception("labeling loop of job %s failed", config.job_name)
        return
    logger.info(
        "labeling loop of job %s finished; the server keeps running until it is "
        "stopped (Ctrl+C)",
        config.job_name,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("serve")
@click.argument("job_file", type=_JOB_FILE)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="TCP port to listen on.",
)
@click.option(
    "--run-loop/--no-run-loop",
    default=False,
    show_default=True,
    help="Also run the labeling loop of the job in this process.",
)
@click.option(
    "--secure-cookies/--no-secure-cookies",
    default=False,
    show_default=True,
    help="Mark the session cookie Secure; required when served over HTTPS.",
)
@click.option(
    "--base-url",
    default=None,
    help="Address that workers open, for the printed admin link "
    "[default: http://HOST:PORT].",
)
def serve_command(
    job_file: Path,
    host: str,
    port: int,
    run_loop: bool,
    secure_cookies: bool,
    base_url: str | None,
) -> None:
    """Serve the worker pages and the owner dashboard of JOB_FILE.

    Prints a fresh one-time admin link at start. Stop with Ctrl+C.
    """
    import uvicorn

    from labelloop.web.app import create_app

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    config, store = _open_job(job_file)
    if config.workforce.type != "web":
        click.echo(
            f"warning: job {config.job_name} uses the {config.workforce.type} "
            "workforce, so the loop does not wait for answers given here; set "
            "'workforce: {type: web}' in the job file",
            err=True,
        )
    if not _is_loopback(host) and not secure_cookies:
        click.echo(
            f"warning: serving on {host} without --secure-cookies; put an HTTPS "
            "proxy in front and pass --secure-cookies",
            err=True,
        )
    if run_loop:
        try:
            from labelloop.loop import run_job  # noqa: F401
        except ImportError as error:
            raise click.ClickException(
                f"--run-loop needs labelloop.loop.run_job, which failed to import: "
                f"{error}"
            ) from None

    app = create_app(config, store, secure_cookies=secure_cookies)
    token = issue_admin_token(store)
    link_base = base_url or f"http://{host}:{port}"
    click.echo(f"Owner dashboard (one-time link): {admin_login_url(link_base, token)}")
    click.echo(f"Add workers with: labelloop workers add NAME {job_file}")

    if run_loop:
        thread = threading.Thread(
            target=_run_loop, args=(config,), name="labelloop-loop", daemon=True
        )
        thread.start()

    # The access log is off because login URLs carry tokens in their query
    # string; the app logs logins and rejected requests itself.
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, access_log=False, log_config=None)
    )
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn shuts down on Ctrl+C, then raises the signal again.
        pass
    finally:
        store.close()


@click.group("workers")
def workers_group() -> None:
    """Add, list and deactivate the web workers of a job."""


@workers_group.command("add")
@click.argument("name")
@click.argument("job_file", type=_JOB_FILE)
@click.option(
    "--base-url", default=DEFAULT_BASE_URL, show_default=True, help=_BASE_URL_HELP
)
def add_worker_command(name: str, job_file: Path, base_url: str) -> None:
    """Add worker NAME to JOB_FILE's job and print a one-time login link.

    For an existing web worker, a new link is issued and the previous unused
    link stops working. A link works once; a used link is rejected.
    """
    _config, store = _open_job(job_file)
    try:
        token = add_worker(store, name)
        click.echo(login_url(base_url, token))
    except LabelloopError as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()


@workers_group.command("list")
@click.argument("job_file", type=_JOB_FILE)
def list_workers_command(job_file: Path) -> None:
    """List the web workers of JOB_FILE's job with their answer counts."""
    _config, store = _open_job(job_file)
    try:
        workers = list_workers(store)
    finally:
        store.close()
    if not workers:
        click.echo(
            "no web workers yet; add one with 'labelloop workers add NAME JOB_FILE'"
        )
        return
    click.echo(f"{'worker':<24} {'active':<7} {'answers':>8}  unused link")
    for worker in workers:
        click.echo(
            f"{worker.name:<24} {'yes' if worker.active else 'no':<7} "
            f"{worker.answers:>8}  {'yes' if worker.has_unused_link else 'no'}"
        )


@workers_group.command("deactivate")
@click.argument("name")
@click.argument("job_file", type=_JOB_FILE)
def deactivate_worker_command(name: str, job_file: Path) -> None:
    """Log worker NAME out and reject their links; their answers are kept."""
    _config, store = _open_job(job_file)
    try:
        deactivate_worker(store, name)
    except LabelloopError as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()
    click.echo(f"deactivated {name}")


@click.command("admin-token")
@click.argument("job_file", type=_JOB_FILE)
@click.option(
    "--base-url", default=DEFAULT_BASE_URL, show_default=True, help=_BASE_URL_HELP
)
def admin_token_command(job_file: Path, base_url: str) -> None:
    """Print a fresh one-time login link of JOB_FILE's owner dashboard."""
    _config, store = _open_job(job_file)
    try:
        token = issue_admin_token(store)
        click.echo(admin_login_url(base_url, token))
    except LabelloopError as error:
        raise click.ClickException(str(error)) from None
    finally:
        store.close()
