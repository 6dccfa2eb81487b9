"""A tiny name -> factory registry for pluggable parts (tasks, objectives, exporters, ...).

A new component is one module plus one ``register`` call; a failed lookup lists the valid names
(the pattern of timm's ``@register_model`` and PEFT's ``register_peft_method``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

from domainfit.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a user-facing name to a component.

    Args:
        kind: what the registry holds, in the user's words ("task", "objective"), used in errors.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None) -> T | Callable[[T], T]:
        """Register ``item`` under ``name``; usable as a decorator when ``item`` is omitted."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return add if item is None else add(item)

    def get(self, name: str, *, key: str | None = None) -> T:
        """Look up ``name``; an unknown name raises a ConfigError listing valid names.

        Args:
            name: the registered name.
            key: the config key the name came from, for the error message.
        """
        if name in self._items:
            return self._items[name]
        near = difflib.get_close_matches(name, self._items, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ConfigError(
            f"unknown {self.kind} {name!r}.{hint} Valid names: {', '.join(sorted(self._items))}",
            key=key,
        )

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
