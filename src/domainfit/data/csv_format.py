"""The CSV and TSV readers: a header (or 0-based column numbers), fields split with :mod:`csv`.

A ragged row, an unclosed quote or a wrong separator is reported at its line, with what to change; TSV is
read without quote handling (a ``"`` is an ordinary character, as in most TSV exports).
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from pathlib import Path

from domainfit.data.records import ABSENT, READERS, RawRecord, ReadOptions, missing_column_error
from domainfit.errors import DataError


@READERS.register("csv")
def _read_csv(path: Path, text: str | None, options: ReadOptions) -> Iterator[RawRecord]:
    yield from _read_table(path, text, options, delimiter=options.separator or ",", quoting=csv.QUOTE_MINIMAL)


@READERS.register("tsv")
def _read_tsv(path: Path, text: str | None, options: ReadOptions) -> Iterator[RawRecord]:
    # TSV has no quoting convention: a field starting with '"' is ordinary text
    # (three ChnSentiCorp reviews do), and csv's quote handling would swallow the lines after it.
    yield from _read_table(path, text, options, delimiter=options.separator or "\t", quoting=csv.QUOTE_NONE)


def _read_table(
    path: Path, text: str | None, options: ReadOptions, *, delimiter: str, quoting: int
) -> Iterator[RawRecord]:
    if len(delimiter) != 1:
        raise DataError(
            f"a CSV/TSV separator must be one character, found {delimiter!r}",
            path=path,
            fix="use `format: delimited` to split each line on a longer separator",
        )
    # csv refuses fields over 131,072 characters by default; a clinical note can be longer. No field can
    # be longer than the (already decoded) file, so that bound lets every real field through.
    with _field_size_limit(len(text) + 1):
        yield from _read_rows(path, text, options, delimiter=delimiter, quoting=quoting)


@contextlib.contextmanager
def _field_size_limit(limit: int) -> Iterator[None]:
    previous = csv.field_size_limit()
    csv.field_size_limit(max(previous, min(limit, _MAX_FIELD_SIZE_LIMIT)))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


# csv stores the limit in a C long: 2**31 - 1 on 64-bit Windows.
_MAX_FIELD_SIZE_LIMIT = 2**31 - 1


def _read_rows(path: Path, text: str, options: ReadOptions, *, delimiter: str, quoting: int) -> Iterator[RawRecord]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    names: list[str] | None = None
    text_index = label_index = group_index = None
    n_fields = None
    end_of_previous = 0
    try:
        for row in reader:
            start, end_of_previous = end_of_previous + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if n_fields is None:
                n_fields = len(row)
                if options.header:
                    names = [name.strip() for name in row]
                text_index = _column_index(options.text_column, names, n_fields, path, start)
                label_index = None
                if options.label_column is not None:
                    try:
                        label_index = _column_index(options.label_column, names, n_fields, path, start)
                    except DataError:
                        if options.require_labels:
                            raise
                if options.group_column is not None:
                    group_index = _column_index(options.group_column, names, n_fields, path, start)
                if options.header:
                    continue
            if len(row) != n_fields:
                raise _ragged_row_error(path, start, end_of_previous, n_fields, row, delimiter, quoting)
            label = row[label_index] if label_index is not None else ABSENT
            group = row[group_index] if options.group_column is not None else None
            yield RawRecord(start, row[text_index], label, group)
    except csv.Error as e:
        raise DataError(
            f"cannot parse the row ({e})",
            path=path,
            line=reader.line_num,
            fix="check the quoting on this line: a field holding the separator or a quote must be "
            'wrapped in double quotes, with inner quotes doubled ("")',
        ) from e


def _column_index(column: str | int, names: list[str] | None, n_fields: int, path: Path, line: int) -> int:
    if isinstance(column, bool) or not isinstance(column, (str, int)):
        raise DataError(
            f"expected a column name or a 0-based column number, found {column!r}",
            path=path,
            column=str(column),
            fix="give the column as a name (with a header) or a 0-based number",
        )
    if names is None and isinstance(column, str) and column.strip().isascii() and column.strip().isdigit():
        # Without a header a column can only be a number; "0" comes from a CLI flag or a quoted YAML value.
        column = int(column)
    if isinstance(column, int) and column >= 0 and names is not None and str(column) in names:
        named_at = names.index(str(column))
        if named_at != column:
            by_position = f"the column named {names[column]!r}" if column < n_fields else "no column"
            raise DataError(
                f"column {column} is ambiguous: by position it is {by_position}, but the header also names "
                f"column {named_at} {str(column)!r}",
                path=path,
                line=line,
                column=column,
                fix=f"to use the header's column {str(column)!r}, give the name as a string (in YAML, "
                f"quoted: '{column}'); to pick a column by position, give its header name instead",
            )
    if isinstance(column, int):
        if 0 <= column < n_fields:
            return column
        raise DataError(
            f"expected at least {column + 1} columns to read column {column} (0-based), found {n_fields}",
            path=path,
            line=line,
            column=column,
            fix=f"use a column number from 0 to {n_fields - 1}, or check the separator",
        )
    if names is None:
        raise DataError(
            f"the column is given by name, {column!r}, but the file is read without a header",
            path=path,
            column=column,
            fix="give the column as a 0-based number, or set `header: true` if the first line names the columns",
        )
    matches = [i for i, name in enumerate(names) if name == column]
    if not matches and column.strip().isascii() and column.strip().isdigit():
        number = int(column)
        named = f"; by position that is {names[number]!r}" if number < n_fields else ""
        raise DataError(
            f"expected a column named {column!r} in the header but it is not there (columns found: "
            f"{', '.join(map(repr, names))}){named}",
            path=path,
            line=line,
            column=column,
            fix="give the column by its header name, or read the file without a header (`--no-header`, "
            "`data.header: false`) to give columns by 0-based number",
        )
    if not matches:
        error = missing_column_error(column, names, path, line)
        if len(names) == 1 and any(sep in names[0] for sep in ",\t;|"):
            error = DataError(
                f"{error.what}; the whole header was read as one column, so the separator is probably wrong",
                path=path,
                line=line,
                column=column,
                fix="set `separator` (or `format`) to the character that separates the columns",
            )
        raise error
    if len(matches) > 1:
        raise DataError(
            f"the header names column {column!r} {len(matches)} times (columns {', '.join(map(str, matches))})",
            path=path,
            line=line,
            column=column,
            fix="rename the duplicate columns so the name is unique",
        )
    return matches[0]


def _ragged_row_error(
    path: Path, start: int, end: int, n_fields: int, row: list[str], delimiter: str, quoting: int
) -> DataError:
    shown = "tab" if delimiter == "\t" else repr(delimiter)
    if end > start and quoting != csv.QUOTE_NONE:
        hint = (
            f"this record runs from line {start} to line {end}: a double quote opened on line {start} "
            "is probably never closed; close it, or double any quote inside a quoted field"
        )
    elif len(row) > n_fields and quoting != csv.QUOTE_NONE:
        hint = f"wrap any field that contains the separator ({shown}) in double quotes"
    elif len(row) > n_fields:
        hint = f"this format has no quoting, so the text must not contain the separator ({shown})"
    else:
        hint = "fill in the missing fields, or check that the separator is right"
    return DataError(
        f"expected {n_fields} fields (as in the first row) but found {len(row)}",
        path=path,
        line=start,
        fix=hint,
    )
