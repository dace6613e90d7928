"""Exception hierarchy: every error labelloop raises on purpose has one base class."""


class LabelloopError(Exception):
    """Base class of the errors that labelloop raises for invalid input or state."""


class ConfigError(LabelloopError):
    """Invalid job configuration: names the field, the value and what is allowed."""


class ManifestError(LabelloopError):
    """Invalid input manifest as a whole (missing file, no valid line)."""


class ItemError(LabelloopError):
    """One manifest line or item that cannot be labeled; the job goes on without it.

    Parameters
    ----------
    line : int
        One-based line number in the input manifest.
    reason : str
        What is wrong and how to fix it.
    """

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"manifest line {line}: {reason}")
        self.line = line
        self.reason = reason


class DataNotFoundError(LabelloopError):
    """A dataset expected under the data folder is missing."""


class RegistryError(LabelloopError):
    """A name registered twice, or looked up but never registered."""


class MediaError(LabelloopError):
    """An image or other media file that cannot be opened or decoded."""


class JobBusyError(LabelloopError):
    """Another process is running the same job's loop."""


class DatabaseMissingError(LabelloopError):
    """The job's database file was deleted or replaced while the job ran."""
