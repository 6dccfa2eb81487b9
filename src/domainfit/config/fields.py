"""The one helper every config section uses: a dataclass field with its help text and limits."""

from __future__ import annotations

from dataclasses import field
from typing import Any

# Default upper bound of an int field (a field's own ``max`` replaces it): a C int, what torch and the
# tokenizers take for counts and sizes.
INT_MAX = 2**31 - 1
# Seeds go to numpy, torch and random alike; numpy takes 0..2**32-1.
SEED_MAX = 2**32 - 1


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help string (and a default factory for mutable defaults)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})
