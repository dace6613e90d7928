"""Create a job's database from its job file and manifest, or reopen it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO

from labelloop.config import JobConfig
from labelloop.errors import ConfigError, JobBusyError, ManifestError
from labelloop.manifest import read_manifest
from labelloop.store import JobStore

try:
    import fcntl
except ImportError:  # Windows has no flock.
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: File in the output folder that the process running a job's loop holds locked.
LOCK_FILE_NAME = "job.lock"


def make_output_folder(config: JobConfig) -> None:
    """Create the job's output folder if it does not exist yet.

    Raises
    ------
    ConfigError
        When ``output_path`` is a file, lies under a file, or cannot be created.
    """
    try:
        config.output_path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        if config.output_path.is_file():
            reason = "it is a file"
        else:
            reason = f"{error.strerror or error} ({error.filename})"
        raise ConfigError(
            f"output_path {str(config.output_path)!r} cannot be used as the job's "
            f"output folder: {reason}; choose a folder that can be created or "
            "written to"
        ) from None


class JobLock:
    """The lock that one process holds while it runs a job's loop.

    The system releases it when the process ends, even when it is killed. A
    killed process leaves ``job.lock`` behind, and the next run takes it over.
    """

    def __init__(self, handle: IO[str] | None, path: Path | None = None) -> None:
        self._handle = handle
        self._path = path

    def release(self) -> None:
        """Remove the lock file, then release the lock. A second call does nothing.

        The file is removed while the lock is still held. A process that
        opened it meanwhile finds, once it gets the lock, that the file is gone,
        so it tries again on a new one (see ``lock_job``).
        """
        if self._handle is None:
            return
        if self._path is not None:
            try:
                self._path.unlink()
            except OSError as error:
                logger.debug("failed to remove lock file %s: %s", self._path, error)
        self._handle.close()
        self._handle = None


def lock_job(config: JobConfig) -> JobLock:
    """Take the job's run lock, ``job.lock`` in its output folder.

    Two processes running the same job's loop at once would both label the
    same round, so the second one stops here. Where the system has no
    ``flock`` (Windows), no lock is taken.

    Raises
    ------
    JobBusyError
        When another process holds the lock.
    ConfigError
        When the output folder cannot be created.
    """
    make_output_folder(config)
    if fcntl is None:
        logger.debug("no flock on this system; job %s runs unlocked", config.job_name)
        return JobLock(None)
    path = config.output_path / LOCK_FILE_NAME
    while True:
        try:
            handle = path.open("a+", encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"cannot create the lock file {path}: {error.strerror or error}; "
                "make the output folder writable"
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise JobBusyError(
                f"job {config.job_name!r} is already running in process {holder} "
                f"(it holds {path}); wait until it ends or stop it, then run again"
            ) from None
        if _same_file(handle, path):
            break
        # The holder removed the file between this open and the lock.
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return JobLock(handle, path)


def _same_file(handle: IO[str], path: Path) -> bool:
    """Return whether ``handle`` is still the file at ``path``."""
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(handle.fileno())
    return (opened.st_dev, opened.st_ino) == (on_disk.st_dev, on_disk.st_ino)


#: Settings under ``automated_labeling`` that the machine labels are certified
#: under; once a job has machine labels, they would not meet a changed value.
GUARANTEE_SETTINGS = ("target_accuracy", "confidence", "threshold_method")


def _resume(config: JobConfig, store: JobStore) -> bool:
    """Check a job that exists against the job file; return False if none exists."""
    job = store.job()
    if job is None:
        return False
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
    created = (job.config or {}).get("automated_labeling") or {}
    now = config.automated_labeling.model_dump(mode="json")
    has_machine_labels = store.counters()["MachineLabeled"] > 0
    for name in GUARANTEE_SETTINGS:
        if has_machine_labels and name in created and created[name] != now[name]:
            raise ConfigError(
                f"job {job.name!r} was created with automated_labeling.{name}="
                f"{created[name]!r}, but the job file now sets {now[name]!r}; the "
                "machine labels already given were certified under the first "
                f"value, so set {name} back to {created[name]!r}, or start a new "
                "job with another output_path"
            )
    logger.info("resuming job %s from %s", job.name, config.database)
    return True


def open_job(config: JobConfig) -> JobStore:
    """Open the job's store, creating the job from its manifest on first use.

    A job that exists is resumed as it is; its manifest is not read again.

    Raises
    ------
    ConfigError
        When the database belongs to a job of another name or task type, or
        the job file changed its labels or the settings that machine labels
        are certified under (``GUARANTEE_SETTINGS``).
    ManifestError
        When the manifest is missing or has no valid line.
    """
    make_output_folder(config)
    store = JobStore(config.database)
    try:
        if not _resume(config, store):
            _create(config, store)
    except BaseException:
        store.close()
        raise
    return store


def _create(config: JobConfig, store: JobStore) -> None:
    """Create the job and its items from the input manifest."""
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
