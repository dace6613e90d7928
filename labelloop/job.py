"""Create a job's database from its job file and manifest, or reopen it."""

from __future__ import annotations

import logging

from labelloop.config import JobConfig
from labelloop.errors import ConfigError, ManifestError
from labelloop.manifest import read_manifest
from labelloop.store import JobStore

logger = logging.getLogger(__name__)


def open_job(config: JobConfig) -> JobStore:
    """Open the job's store, creating the job from its manifest on first use.

    A job that exists is resumed as it is; its manifest is not read again.

    Raises
    ------
    ConfigError
        When the database belongs to a job of another name or task type.
    ManifestError
        When the manifest is missing or has no valid line.
    """
    config.output_path.mkdir(parents=True, exist_ok=True)
    store = JobStore(config.database)
    job = store.job()
    if job is not None:
        if job.name != config.job_name or job.task_type != config.task_type.value:
            raise ConfigError(
                f"the database {config.database} contains job {job.name!r} "
                f"({job.task_type}), not {config.job_name!r} "
                f"({config.task_type.value}); choose another output_path or "
                "database_url"
            )
        if list(job.class_names) != list(config.label_categories):
            raise ConfigError(
                f"job {job.name!r} was created with labels {job.class_names}, but "
                f"the job file now lists {list(config.label_categories)}; labels "
                "cannot change while a job runs"
            )
        logger.info("resuming job %s from %s", job.name, config.database)
        return store

    items, errors = read_manifest(config.input_manifest)
    if not items:
        raise ManifestError(
            f"input manifest {config.input_manifest} has no valid line "
            f"({len(errors)} invalid); fix the lines listed in the job's events"
        )
    store.create_job(
        name=config.job_name,
        task_type=config.task_type.value,
        class_names=list(config.label_categories),
        config=config.model_dump(mode="json"),
        items=(
            (
                item.line,
                item.record,
                str(item.source_ref) if item.source_ref is not None else None,
                item.source,
            )
            for item in items
        ),
        failures=((error.line, error.reason) for error in errors),
    )
    for error in errors:
        logger.warning("%s", error)
    logger.info(
        "created job %s: %s items, %s invalid lines",
        config.job_name,
        len(items),
        len(errors),
    )
    return store
