"""The ``labelloop`` command line: run, status, demo (and serve, workers)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from labelloop.config import load_job_config
from labelloop.errors import LabelloopError

console = Console(stderr=True)

STEP_NAMES = {"features": "Extracting features"}


class _ProgressBars:
    """Adapt the library's ``progress(step, done, total)`` calls to rich bars."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, step: str, completed: int, total: int) -> None:
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(
                STEP_NAMES.get(step, step), total=total
            )
        self.progress.update(self.tasks[step], completed=completed, total=total)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    for noisy in ("sentence_transformers", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """Label datasets with human workers and certified machine labels."""
    _configure_logging(verbose)


def _run(job_file: Path) -> dict[str, Any]:
    from labelloop.loop import run_job

    config = load_job_config(job_file)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        return run_job(config, progress=_ProgressBars(progress))


def _print_summary(report: dict[str, Any]) -> None:
    table = Table(title=f"Job {report['job_name']}: {report['status']}")
    table.add_column("counter")
    table.add_column("items", justify="right")
    for name, value in report["counters"].items():
        table.add_row(name, str(value))
    Console().print(table)
    machine = report.get("machine_labels") or {}
    bound = machine.get("certified_error_bound")
    if machine.get("count") and bound is not None:
        Console().print(
            f"Machine labels: {machine['count']}, certified error bound "
            f"{bound:.2%} at {report['confidence']:.0%} confidence"
        )
    elif machine.get("count"):
        estimated = machine.get("estimated_accuracy")
        Console().print(
            f"Machine labels: {machine['count']}, not certified "
            f"({report.get('guarantee', '')})"
            + (f"; estimated accuracy {estimated:.2%}" if estimated is not None else "")
        )
    measured = report.get("measured") or {}
    if measured.get("machine_accuracy") is not None:
        Console().print(
            f"Measured machine-label accuracy: {measured['machine_accuracy']:.2%}"
        )
    outputs = report.get("outputs")
    if outputs:
        Console().print(f"Output manifest: {outputs['manifest']}")
        Console().print(f"Report: {outputs['report_html']}")


@main.command()
@click.argument("job_file", type=click.Path(path_type=Path))
def run(job_file: Path) -> None:
    """Create the job in JOB_FILE, or resume it, and run it to its end."""
    try:
        report = _run(job_file)
    except LabelloopError as error:
        raise click.ClickException(str(error)) from None
    _print_summary(report)


@main.command()
@click.argument("job_file", type=click.Path(path_type=Path))
def status(job_file: Path) -> None:
    """Print the counters and rounds of the job in JOB_FILE."""
    from labelloop.store import JobStore

    try:
        config = load_job_config(job_file)
    except LabelloopError as error:
        raise click.ClickException(str(error)) from None
    database = config.output_path / "job.db"
    if config.database_url is None and not database.exists():
        raise click.ClickException(
            f"job {config.job_name!r} has not started: no database at {database}; "
            f"start it with `labelloop run {job_file}`"
        )
    try:
        store = JobStore(config.database)
    except LabelloopError as error:
        raise click.ClickException(str(error)) from None
    try:
        job = store.job()
        out = Console()
        out.print(f"Job {config.job_name}: {job.status if job else 'not created'}")
        counters = Table(title="Counters")
        counters.add_column("counter")
        counters.add_column("items", justify="right")
        for name, value in store.counters().items():
            counters.add_row(name, str(value))
        out.print(counters)
        rounds = Table(title="Rounds")
        for column in (
            "round",
            "status",
            "human",
            "machine (in force)",
            "threshold",
            "validation acc.",
            "bound of the round's test",
        ):
            rounds.add_column(column)
        for round_row in store.rounds():
            stats = round_row.stats
            plan = stats.get("plan", {})
            rounds.add_row(
                str(round_row.number),
                round_row.status,
                str(plan.get("validation", 0) + plan.get("query", 0)),
                str(stats.get("machine_labeled", "")),
                _format(stats.get("threshold")),
                _format(stats.get("validation_accuracy")),
                _format(stats.get("certified_error_bound")),
            )
        out.print(rounds)
    finally:
        store.close()


def _format(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ""


@main.command()
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=Path("labelloop-output/digits-demo"),
    show_default=True,
    help="Folder for the demo's manifest, database and outputs.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Random seed of the job."
)
def demo(output: Path, seed: int) -> None:
    """Label scikit-learn's handwritten digits with a simulated workforce."""
    from labelloop.demo import prepare_demo

    try:
        job_file = prepare_demo(output, seed=seed)
        console.print(f"Demo job file: {job_file}")
        report = _run(job_file)
    except LabelloopError as error:
        raise click.ClickException(str(error)) from None
    _print_summary(report)


def _attach_web_commands() -> None:
    try:
        from labelloop.web.commands import (
            admin_token_command,
            serve_command,
            workers_group,
        )
    except ImportError as error:
        logging.getLogger(__name__).debug("web commands unavailable: %s", error)
        return
    main.add_command(serve_command, "serve")
    main.add_command(workers_group, "workers")
    main.add_command(admin_token_command, "admin-token")


_attach_web_commands()


if __name__ == "__main__":
    sys.exit(main())
