"""Workforces: who answers the tasks that a round posts."""

from labelloop.workforce.base import WORKFORCES, Workforce, make_workforce
from labelloop.workforce.simulated import SimulatedWorkers
from labelloop.workforce.web import WebWorkers

__all__ = [
    "WORKFORCES",
    "SimulatedWorkers",
    "WebWorkers",
    "Workforce",
    "make_workforce",
]
