"""The bundled demo: scikit-learn's handwritten digits, labeled by simulated workers."""

from __future__ import annotations

from pathlib import Path

import yaml

from labelloop.errors import ConfigError
from labelloop.importers import import_digits

#: Name of the demo's job, which marks a folder as the demo's own.
DEMO_JOB_NAME = "digits-demo"


def prepare_demo(output: Path, *, seed: int = 0) -> Path:
    """Write the digits manifest and a job file under ``output``; return the job file.

    The 1,797 digits pass Ground Truth's 1,250-item floor for automated
    labeling. The simulated workers answer from the true digit. ``output``
    must be a new or empty folder, or one that an earlier demo wrote, so
    that no other file is overwritten.

    Raises
    ------
    ConfigError
        When ``output`` is a file, or a folder that holds other files.
    """
    output = output.resolve()
    _check_demo_folder(output)
    data = output / "data"
    try:
        result = import_digits(data)
    except OSError as error:
        raise ConfigError(
            f"cannot write the demo into {str(output)!r}: {error.strerror or error}; "
            "choose a writable folder with --output"
        ) from None
    job = {
        "job_name": DEMO_JOB_NAME,
        "task_type": "image-classification",
        "label_attribute_name": "digit",
        "label_category_file": str(data / "class-labels.json"),
        "input_manifest": str(result.manifest),
        "output_path": str(output / "job"),
        "workforce": {"type": "simulated", "error_rates": [0.0]},
        "workers_per_item": 1,
        "automated_labeling": {"target_accuracy": 0.95, "confidence": 0.95},
        "features": "image-mid",
        "seed": seed,
    }
    job_file = output / "job.yaml"
    job_file.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    return job_file


def _check_demo_folder(output: Path) -> None:
    """Raise ConfigError for a folder whose files the demo would overwrite.

    An empty folder and one that an earlier demo wrote are accepted.
    """
    if output.exists() and not output.is_dir():
        raise ConfigError(
            f"demo output {str(output)!r} is a file; choose a folder with --output"
        )
    if not output.is_dir() or not any(output.iterdir()):
        return
    job_file = output / "job.yaml"
    try:
        job = yaml.safe_load(job_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        job = None
    if not isinstance(job, dict) or job.get("job_name") != DEMO_JOB_NAME:
        raise ConfigError(
            f"demo output folder {str(output)!r} is not empty and contains no earlier "
            "demo, so the demo would overwrite its files (job.yaml, data/); choose "
            "a new or empty folder with --output"
        )
