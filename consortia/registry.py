"""A tiny name -> factory registry, shared by learners, strategies, engines and verticals.

Adding a model, strategy or vertical means writing one module and registering it here; nothing
else in the core has to change.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from consortia.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; entries may be registered eagerly or as lazy import paths."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}

    def register(self, name: str, item: T | None = None) -> Callable[[T], T] | T:
        """Register ``item`` under ``name``; usable as a decorator when ``item`` is omitted."""
        if item is None:

            def decorator(obj: T) -> T:
                self._items[name] = obj
                return obj

            return decorator
        self._items[name] = item
        return item

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``module:attribute`` to be imported on first use (keeps imports cheap)."""
        self._lazy[name] = target

    def get(self, name: str) -> T:
        key = name.strip().lower()
        if key not in self._items and key in self._lazy:
            module_name, _, attr = self._lazy[key].partition(":")
            self._items[key] = getattr(importlib.import_module(module_name), attr)
        if key not in self._items:
            raise ConfigError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}")
        return self._items[key]

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._lazy))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip().lower() in set(self.names())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
