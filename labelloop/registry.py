"""A registry of pluggable parts by name (models, query strategies, workforces...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from labelloop.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Map names to factories; registering a name twice raises.

    Parameters
    ----------
    kind : str
        What the registry holds, used in error messages ("query strategy").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Return a decorator that registers a factory under ``name``."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise RegistryError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorator

    def create(self, name: str, **kwargs: object) -> T:
        """Build the part registered under ``name`` with ``kwargs``."""
        try:
            factory = self._factories[name]
        except KeyError:
            known = ", ".join(sorted(self._factories)) or "none"
            raise RegistryError(
                f"unknown {self.kind} {name!r}; registered: {known}"
            ) from None
        return factory(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
