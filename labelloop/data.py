"""Location of the shared labeled datasets used by tests and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the data folder.
DATA_DIR_ENV = "LABELLOOP_DATA_DIR"


def data_dir() -> Path:
    """Return the folder of real labeled datasets.

    ``$LABELLOOP_DATA_DIR`` when set, else ``../shared/data`` relative to the
    repository root.
    """
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"
