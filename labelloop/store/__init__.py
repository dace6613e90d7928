"""Persistent job state in a SQL database (SQLite by default)."""

from labelloop.store.store import JobStore, make_engine

__all__ = ["JobStore", "make_engine"]
