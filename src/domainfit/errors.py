"""User-facing errors: one clear message, exit code 2, no traceback.

Every error a user can cause (bad config, bad data file, unreachable model) is raised as a
:class:`DomainfitError` subclass. The CLI prints ``str(error)`` and exits 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


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
        return message


class ConfigError(DomainfitError):
    """A config file or override is invalid (unknown key, bad value, inconsistent fields)."""


class DataError(DomainfitError):
    """A data file is missing, unreadable, or does not hold what the config says it does."""


class ModelError(DomainfitError):
    """A model cannot be found or loaded (unknown id, offline, missing folder)."""


class MissingExtraError(DomainfitError):
    """An optional dependency is not installed."""
