"""The bundled demo: scikit-learn's handwritten digits, labeled by simulated workers."""

from __future__ import annotations

from pathlib import Path

import yaml

from labelloop.importers import import_digits


def prepare_demo(output: Path, *, seed: int = 0) -> Path:
    """Write the digits manifest and a job file under ``output``; return the job file.

    The 1,797 digits pass Ground Truth's 1,250-item floor for automated
    labeling. The simulated workers answer from the true digit.
    """
    output = output.resolve()
    data = output / "data"
    result = import_digits(data)
    job = {
        "job_name": "digits-demo",
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
