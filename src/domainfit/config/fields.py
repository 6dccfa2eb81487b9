"""The one helper every config section uses: a dataclass field with its help text and limits."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help string (and a default factory for mutable defaults)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})
