"""What the data readers share: the :class:`Example` they return, the raw record each format yields, and
the registry of formats.

    @READERS.register("csv")
    def read_csv(path: Path, text: str | None, options: ReadOptions) -> Iterator[RawRecord]: ...

A format reader only splits a file into raw records (:class:`RawRecord`: number, text, label, group as
found); :mod:`domainfit.data.record_checks` then checks each one and makes the :class:`Example`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domainfit.errors import DataError
from domainfit.registry import Registry

FORMATS_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
}

# Marks a column that the record does not have at all (as opposed to an empty value).
ABSENT = object()
MISSING_GROUP = "(missing)"  # the group of a record whose group cell is empty


@dataclass(frozen=True)
class Example:
    """One text and its label, with where it came from.

    Attributes:
        text: the text, surrounding whitespace stripped.
        label: the label as a string (an integer ``1`` in the file becomes ``"1"``); None when the
            file has no labels.
        line: where the record starts: the 1-based physical line for CSV, TSV, JSON Lines and
            delimited files; the 1-based record number for a JSON array or a Parquet file.
        unit: what ``line`` counts, ``"line"`` or ``"record"``, so messages can say which.
    """

    text: str
    label: str | None
    line: int
    unit: str = field(default="line", compare=False)
    group: str | None = field(default=None, compare=False)  # the group_column's value (evaluation slices)

    @property
    def where(self) -> str:
        """``"line 12"`` or ``"record 12"``, for messages."""
        return f"{self.unit} {self.line}"


def data_error_at(
    example_or_line: Example | int,
    what: str,
    *,
    path: str | Path | None,
    fix: str,
    column: str | int | None = None,
    unit: str = "line",
) -> DataError:
    """Build a DataError located at an example (or a line/record number) of a file.

    A physical line goes into the error's ``line`` field; a record number (JSON array, Parquet) is
    written into the message instead, so "line 5" never means "the 5th object".
    """
    if isinstance(example_or_line, Example):
        number, unit = example_or_line.line, example_or_line.unit
    else:
        number = example_or_line
    if unit == "line":
        return DataError(what, path=path, line=number, column=column, fix=fix)
    return DataError(f"{unit} {number}: {what}", path=path, column=column, fix=fix)


@dataclass(frozen=True)
class LabelLocation:
    """Where a raw label value was found, for a ``parse_label`` hook's error messages."""

    path: Path
    number: int
    unit: str
    column: str | int

    def error(self, what: str, fix: str) -> DataError:
        """A DataError at this file, line (or record) and column."""
        return data_error_at(self.number, what, path=self.path, column=self.column, unit=self.unit, fix=fix)


LabelParser = Callable[[Any, LabelLocation], Any]


@dataclass(frozen=True)
class ReadOptions:
    """The columns, separator and header ``read_examples`` was given, as every format reader takes them."""

    text_column: str | int
    label_column: str | int | None
    separator: str | None
    header: bool
    require_labels: bool
    group_column: str | int | None = None


@dataclass(frozen=True)
class RawRecord:
    """A record as found in the file, before the text and label are checked."""

    number: int
    text: Any
    label: Any  # ABSENT when the record has no label column
    group: Any = None  # the group column's cell, when one is read


# A reader turns (path, decoded text or None for binary formats, options) into raw records.
Reader = Callable[[Path, "str | None", ReadOptions], Iterator[RawRecord]]
READERS: Registry[Reader] = Registry("data format")


def missing_column_error(
    column: str | int,
    found: list[str],
    path: Path,
    number: int | None,
    *,
    what: str = "column",
    unit: str = "line",
) -> DataError:
    """The DataError for a column (or JSON key) the file lacks, naming the ones it has and the near miss."""
    found_text = ", ".join(repr(c) for c in found) if found else "none"
    near = difflib.get_close_matches(str(column), [str(c) for c in found], n=1, cutoff=0.6)
    if near:
        fix = f"did you mean {near[0]!r}? Set the column name to one of those found"
    else:
        fix = "set the column name to one of those found, or check that this is the right file"
    what_found = f"expected a {what} {column!r} but it is not there ({what}s found: {found_text})"
    if number is None:
        return DataError(what_found, path=path, column=column, fix=fix)
    return data_error_at(number, what_found, path=path, column=column, unit=unit, fix=fix)
