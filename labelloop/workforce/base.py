"""The workforce contract.

Answers reach the job's database, not the caller: a round posts tasks, a
workforce answers them now (simulated) or over hours from a browser (web), and
the loop reads what is in the database. A killed loop finds every answer that
was committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from labelloop.registry import Registry

if TYPE_CHECKING:
    from labelloop.config import JobConfig
    from labelloop.store import JobStore


class Workforce(Protocol):
    """Gets the open tasks of a round answered."""

    def collect(self, store: JobStore, round_number: int) -> list[int]:
        """Block until every task of the round is answered or expired.

        Returns the ids of expired tasks.
        """
        ...


WORKFORCES: Registry[Workforce] = Registry("workforce")


def make_workforce(config: JobConfig, class_names: list[str]) -> Workforce:
    """Build the workforce that the job file names."""
    kwargs: dict[str, Any] = {"config": config, "class_names": class_names}
    return WORKFORCES.create(config.workforce.type, **kwargs)
