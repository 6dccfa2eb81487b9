"""User-facing errors: one clear message, exit code 2, no traceback.

Every error a user can cause (bad config, bad data file, unreachable model) is raised as a
:class:`DomainfitError` subclass. The CLI prints ``str(error)`` and exits 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

# Longest message an error prints: a value echoed from the user's input (a 2 GB YAML alias expansion, a
# megabyte-long cell) must not flood the terminal or the log; what is cut is the middle, so the start of
# the problem and the "How to fix" line both stay.
MAX_MESSAGE_CHARS = 4000


def short_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)`` for an error message, at most ``limit`` characters, without building the full repr.

    Nested lists and mappings are abbreviated by :mod:`reprlib` as they are walked, so a value that would
    print gigabytes (a YAML alias bomb) costs no more than a short one.

    Args:
        value: the user's value to echo.
        limit: the most characters returned.

    Returns:
        A repr such as ``'abc...xyz'`` or ``[[1, 2, ...], ...]``.
    """
    shortener = reprlib.Repr()
    shortener.maxlevel = 3
    shortener.maxstring = shortener.maxother = shortener.maxlong = limit
    text = shortener.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cut_middle(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    marker = f" ... [{len(text) - limit} characters cut] ... "
    head = (limit - len(marker)) * 2 // 3
    return text[:head] + marker + text[len(text) - (limit - len(marker) - head) :]


class DomainfitError(Exception):
    """An error the user can fix. ``str()`` gives the whole message.

    Args:
        what: what went wrong, including what was expected and what was found.
        path: the file it concerns, if any.
        line: 1-based line or row number in that file, if known.
        column: the column (name or number), if known.
        key: the config key (dotted), if it concerns the config.
        fix: one sentence on how to fix it.
    """

    def __init__(
        self,
        what: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: str | int | None = None,
        key: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.what = what
        self.path = str(path) if path is not None else None
        self.line = line
        self.column = column
        self.key = key
        self.fix = fix
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.path is not None:
            where.append(self.path)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column!r}" if isinstance(self.column, str) else f"column {self.column}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        message = f"{', '.join(where)}: {self.what}" if where else self.what
        if self.fix:
            message += f"\n  How to fix: {self.fix}"
        return _cut_middle(message, MAX_MESSAGE_CHARS)


class ConfigError(DomainfitError):
    """A config file or override is invalid (unknown key, bad value, inconsistent fields)."""


class DataError(DomainfitError):
    """A data file is missing, unreadable, or does not hold what the config says it does."""


class ModelError(DomainfitError):
    """A model cannot be found or loaded (unknown id, offline, missing folder)."""


class MissingExtraError(DomainfitError):
    """An optional dependency is not installed."""
