"""Read labelled text examples from CSV, TSV, JSON Lines, JSON, Parquet or `text<sep>label` files.

    from domainfit.data.readers import read_examples
    examples = read_examples("train.csv", text_column="text", label_column="label")

Every problem a user can cause (a missing file, the wrong encoding, a ragged row, an empty text, a
missing label) raises :class:`~domainfit.errors.DataError` naming the file, the line and the column,
saying what was expected and what was found, and how to fix it. Nothing is read lazily: a bad row
at the end of the file fails before any model is loaded.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import json
import logging
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domainfit.data.encodings import encoding_from_bom, line_of_offset, undecodable_error
from domainfit.errors import DataError, MissingExtraError
from domainfit.registry import Registry

log = logging.getLogger(__name__)

FORMATS_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
}

# Marks a column that the record does not have at all (as opposed to an empty value).
_ABSENT = object()
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
class _Options:
    text_column: str | int
    label_column: str | int | None
    separator: str | None
    header: bool
    require_labels: bool
    group_column: str | int | None = None


@dataclass(frozen=True)
class _Raw:
    """A record as found in the file, before the text and label are checked."""

    number: int
    text: Any
    label: Any  # _ABSENT when the record has no label column
    group: Any = None  # the group column's cell, when one is read


# A reader turns (path, decoded text or None for binary formats, options) into raw records.
Reader = Callable[[Path, "str | None", _Options], Iterator[_Raw]]
READERS: Registry[Reader] = Registry("data format")
_BINARY_FORMATS = {"parquet"}
_RECORD_UNITS = {"json": "record", "parquet": "record"}


def read_examples(
    path: str | Path,
    *,
    format: str = "auto",
    text_column: str | int = "text",
    label_column: str | int | None = "label",
    separator: str | None = None,
    encoding: str = "utf-8",
    header: bool = True,
    require_labels: bool = True,
    parse_label: LabelParser | None = None,
    skip_empty: bool = False,
    skipped: list[int] | None = None,
    group_column: str | int | None = None,
) -> list[Example]:
    """Read every example of a data file, checking each record.

    Args:
        path: the file.
        format: ``"auto"`` (from the extension: .csv .tsv .jsonl/.ndjson .json .parquet), ``"csv"``,
            ``"tsv"``, ``"jsonl"``, ``"json"`` (an array of objects), ``"parquet"`` or
            ``"delimited"`` (one ``text<separator>label`` record a line, split on the last separator).
        text_column: the column (or JSON key) holding the text; a 0-based int (or a string of digits)
            for a CSV/TSV without header. Ignored for ``"delimited"``.
        label_column: the column holding the label; None for a file without labels.
        separator: the field delimiter for ``"csv"``/``"tsv"`` (overrides ``,``/tab); required for
            ``"delimited"``.
        encoding: the text encoding (``"latin-1"`` for Financial PhraseBank).
        header: whether a CSV/TSV file's first line names the columns. Without one, columns are
            referred to by 0-based int index.
        require_labels: raise if a record has no label. When False, a missing or empty label gives
            ``label=None``.
        parse_label: replaces the single-label check for tasks whose label is not one string (a list
            of labels for multi-label classification): called as ``parse_label(value, location)`` with
            the raw value (None if the record lacks the label column) and a :class:`LabelLocation`;
            its return value becomes ``Example.label``.
        skip_empty: leave out records whose text is empty or only whitespace (logged with their count)
            instead of raising DataError at the first.
        skipped: if given, the line (or record) numbers of the records left out by ``skip_empty`` are
            appended to it, for the run's data info.
        group_column: a column (JSON key) naming each record's group, kept as ``Example.group`` (an empty
            cell becomes ``"(missing)"``); every record must have the column. Not for ``"delimited"``.

    Returns:
        The examples in file order, text and labels stripped of surrounding whitespace.

    Raises:
        DataError: the file is missing, unreadable, or a record is malformed.
        MissingExtraError: ``format="parquet"`` without pyarrow installed.

    Notes:
        TSV is read without quote handling (a ``"`` is an ordinary character, as in most TSV
        exports); to read a TSV that quotes its fields, use ``format="csv", separator="\\t"``.
    """
    path = Path(path)
    _check_is_file(path)
    format = _resolve_format(path, format)
    if format in _KEYED_FORMATS:
        # Records are read by key: a number (`text_column: 0` in YAML) names the key "0".
        text_column, label_column, group_column = (_as_key(c) for c in
                                                   (text_column, label_column, group_column))
    if group_column is not None and format == "delimited":
        raise DataError("a `text<separator>label` file has no group column", path=path, column=group_column,
                        fix="give the data as CSV, TSV, JSON Lines, JSON or Parquet with a group column, or "
                            "remove the group column setting")
    options = _Options(text_column, label_column, separator, header, require_labels, group_column)
    if format in _BINARY_FORMATS and stat.S_ISFIFO(path.stat().st_mode):
        raise DataError(  # Parquet is read by seeking to its footer, which a pipe cannot do
            "a Parquet file cannot be read from a named pipe (FIFO)",
            path=path,
            fix="save the data to a regular file and give that file",
        )
    text = None if format in _BINARY_FORMATS else read_text(path, encoding)
    unit = _RECORD_UNITS.get(format, "line")
    examples = []
    empty: list[int] = []
    for raw in READERS.get(format)(path, text, options):
        if skip_empty and _is_empty_text(raw.text):
            empty.append(raw.number)
            continue
        examples.append(_to_example(raw, path, options, unit, parse_label))
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        log.info("%s: left out %d records with empty text (data.skip_empty), at %ss %s",
                 path, len(empty), unit, shown)
        if skipped is not None:
            skipped.extend(empty)
    if not examples:
        what = f"all {len(empty)} records have empty text" if empty else "the file holds no records"
        raise DataError(
            f"{what} (expected at least one example)",
            path=path,
            fix="check that this is the right file and that it is not empty"
            + (", and that `text_column` names the text" if empty else ""),
        )
    return examples


_KEYED_FORMATS = {"json", "jsonl", "parquet"}


def _as_key(column: str | int | None) -> str | None:
    return str(column) if isinstance(column, int) and not isinstance(column, bool) else column


def _is_empty_text(value: Any) -> bool:
    """A missing, NaN, empty or whitespace-only text; other non-strings are left for the type check."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and not value.strip()


# ---------------------------------------------------------------------------------------------
# Opening and decoding the file
# ---------------------------------------------------------------------------------------------


def _resolve_format(path: Path, format: str) -> str:
    if format != "auto":
        if format not in READERS:
            near = difflib.get_close_matches(format, READERS.names(), n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            raise DataError(
                f"unknown data format {format!r}.{hint}",
                path=path,
                fix=f"use one of: auto, {', '.join(READERS.names())}",
            )
        return format
    suffix = path.suffix.lower()
    if suffix in FORMATS_BY_SUFFIX:
        return FORMATS_BY_SUFFIX[suffix]
    if suffix == ".txt":
        raise DataError(
            "cannot tell the format of a .txt file from its name",
            path=path,
            fix=(
                "give the format explicitly: `format: delimited` with `separator` for one "
                "`text<sep>label` record a line (e.g. separator '@' for Financial PhraseBank), "
                "or `format: csv` / `format: tsv` for a table"
            ),
        )
    known = ", ".join(sorted(FORMATS_BY_SUFFIX))
    raise DataError(
        f"cannot tell the format from the extension {suffix or '(none)'!r} (known: {known})",
        path=path,
        fix=f"rename the file or give the format explicitly: one of {', '.join(READERS.names())}",
    )


def _check_is_file(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as e:
        raise _unreadable_error(path, e) from e
    if mode is not None and stat.S_ISDIR(mode):
        inside = sorted(
            p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() in {*FORMATS_BY_SUFFIX, ".txt"}
        )
        listing = f" Data files in it: {', '.join(inside[:10])}" if inside else " It holds no data files."
        raise DataError(
            f"expected a data file but found a folder.{listing}",
            path=path,
            fix="give the path of one file inside the folder",
        )
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        # A device or socket may never end (/dev/zero, /dev/tty); a pipe is read by read_bytes.
        raise DataError(
            f"expected a regular data file but found {_special_file_kind(mode)}",
            path=path,
            fix="save the data to a regular file first (e.g. `cat SOURCE > data.csv`) and give that file",
        )
    if mode is not None:
        return
    folder = path.parent
    if not folder.is_dir():
        raise DataError(
            f"file not found, and its folder {str(folder)!r} does not exist either",
            path=path,
            fix="check the path; relative paths are resolved from the current working directory",
        )
    names = [p.name for p in folder.iterdir()]
    near = difflib.get_close_matches(path.name, names, n=3, cutoff=0.5)
    hint = f" Similar files in {str(folder)!r}: {', '.join(near)}." if near else ""
    raise DataError(
        f"file not found.{hint}",
        path=path,
        fix="check the file name" + (f"; did you mean {near[0]!r}?" if near else " and its folder"),
    )


def _special_file_kind(mode: int) -> str:
    for test, kind in [
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]:
        if test(mode):
            return kind
    return "a special file"


def read_text(path: str | Path, encoding: str) -> str:
    """Read and decode a whole text file, raising DataError on binary content or a bad encoding.

    The whole file is decoded at once so that an undecodable byte can be reported by line and byte
    offset. A leading byte-order mark is dropped.
    """
    path = Path(path)
    data = read_bytes(path)
    bom_encoding = encoding_from_bom(data)
    if bom_encoding is None and b"\x00" in data and not encoding.lower().startswith(("utf-16", "utf-32")):
        raise _binary_file_error(path, data)
    try:
        text = data.decode(encoding)
    except LookupError as e:
        raise DataError(
            f"unknown text encoding {encoding!r}",
            path=path,
            fix="use a Python codec name such as utf-8, latin-1, cp1252 or gb18030",
        ) from e
    except UnicodeDecodeError as e:
        raise undecodable_error(path, data, encoding, e) from e
    return text.removeprefix("\ufeff")


def read_bytes(path: Path) -> bytes:
    """The bytes of a regular file, with a DataError (not a traceback) when it cannot be read."""
    _check_is_file(path)
    try:
        if stat.S_ISFIFO(path.stat().st_mode):
            return _read_pipe(path)
        return path.read_bytes()
    except OSError as e:
        raise _unreadable_error(path, e) from e


def _read_pipe(path: Path) -> bytes:
    """All a named pipe gives until its writer closes it (`<(zcat train.csv.gz)` works); a pipe that no
    program writes to is an error, not a wait that never ends."""
    # A plain open() would block until a writer appears; opened non-blocking, a pipe without a writer reads
    # as empty at once. Blocking is switched back on so a slow writer is waited for.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as pipe:
        data = pipe.read()
    if not data:
        raise DataError(
            "the named pipe (FIFO) gave no data: no program was writing to it",
            path=path,
            fix="start the program that writes to the pipe first, or save the data to a regular file and "
            "give that file",
        )
    return data


def _unreadable_error(path: Path, error: OSError) -> DataError:
    if isinstance(error, PermissionError):
        return DataError(
            "permission denied: this user may not read the file",
            path=path,
            fix="give read permission (e.g. `chmod a+r` on the file and `a+x` on its folders), or copy the "
            "file to a place this user can read",
        )
    return DataError(
        f"cannot read the file: {error.strerror or error}",
        path=path,
        fix="check that the file is readable (the disk or network share may be gone), or copy it to a local "
        "disk",
    )


def _binary_file_error(path: Path, data: bytes) -> DataError:
    if data.startswith(b"PAR1"):
        fix = "this is a Parquet file: name it *.parquet or set `format: parquet`"
    elif data.startswith(b"PK\x03\x04"):
        fix = "this looks like a zip or Excel (.xlsx) file: unzip it, or export the sheet as CSV"
    else:
        fix = "give a text file (CSV, TSV, JSON Lines, JSON) or a Parquet file"
    offset = data.index(b"\x00")
    line = line_of_offset(data, offset)
    return DataError(
        f"expected a text file but found binary content (a NUL byte at byte {offset} of the file)",
        path=path,
        line=line,
        fix=fix,
    )


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) for CRLF, LF and lone-CR line ends alike."""
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        yield number, line.rstrip("\r\n")


# ---------------------------------------------------------------------------------------------
# Turning a raw record into an Example
# ---------------------------------------------------------------------------------------------


def _to_example(raw: _Raw, path: Path, options: _Options, unit: str, parse_label: LabelParser | None = None) -> Example:
    text = _clean_text(raw, path, options.text_column, unit)
    if parse_label is not None and options.label_column is not None:
        value = None if raw.label is _ABSENT else raw.label
        label = parse_label(value, LabelLocation(path, raw.number, unit, options.label_column))
        return Example(text=text, label=label, line=raw.number, unit=unit, group=_clean_group(raw, options))
    label = _clean_label(raw, path, options, unit)
    return Example(text=text, label=label, line=raw.number, unit=unit, group=_clean_group(raw, options))


def _clean_group(raw: _Raw, options: _Options) -> str | None:
    """The group as a string; an empty cell is a group of its own (an unknown sex or region is common)."""
    if options.group_column is None:
        return None
    value = raw.group
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return MISSING_GROUP
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _clean_text(raw: _Raw, path: Path, column: str | int, unit: str) -> str:
    value = raw.text
    if value is None or (isinstance(value, float) and math.isnan(value)):
        value = ""
    if not isinstance(value, str):
        raise data_error_at(
            raw.number,
            f"expected the text to be a string, found {type(value).__name__} {value!r}",
            path=path,
            column=column,
            unit=unit,
            fix="store the text as a string",
        )
    if not value.strip():
        raise data_error_at(
            raw.number,
            "the text is empty or only whitespace (expected some text)",
            path=path,
            column=column,
            unit=unit,
            fix="remove this row or fill in its text",
        )
    return value.strip()


def _clean_label(raw: _Raw, path: Path, options: _Options, unit: str) -> str | None:
    value = raw.label
    column = options.label_column
    if column is None:
        return None
    if value is _ABSENT or value is None or (isinstance(value, float) and math.isnan(value)):
        value = ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise data_error_at(
            raw.number,
            f"expected the label to be a string or an integer, found {type(value).__name__} {value!r}",
            path=path,
            column=column,
            unit=unit,
            fix="give one label per record, as a string (e.g. 'positive') or an integer class id",
        )
    if isinstance(value, float):
        if not value.is_integer():
            raise data_error_at(
                raw.number,
                f"expected the label to be a string or an integer, found the number {value!r}",
                path=path,
                column=column,
                unit=unit,
                fix="labels name classes: use a string or an integer class id, not a fractional number",
            )
        value = int(value)
    label = str(value).strip()
    if label:
        return label
    if options.require_labels:
        raise data_error_at(
            raw.number,
            "the label is missing or empty (expected a label for every record)",
            path=path,
            column=column,
            unit=unit,
            fix="fill in the label or remove this row (only `domainfit predict` reads unlabelled files)",
        )
    return None


def _missing_column_error(
    column: str | int,
    found: list[str],
    path: Path,
    number: int | None,
    *,
    what: str = "column",
    unit: str = "line",
) -> DataError:
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


# ---------------------------------------------------------------------------------------------
# The formats
# ---------------------------------------------------------------------------------------------


@READERS.register("csv")
def _read_csv(path: Path, text: str | None, options: _Options) -> Iterator[_Raw]:
    yield from _read_table(path, text, options, delimiter=options.separator or ",", quoting=csv.QUOTE_MINIMAL)


@READERS.register("tsv")
def _read_tsv(path: Path, text: str | None, options: _Options) -> Iterator[_Raw]:
    # TSV has no quoting convention: a field starting with '"' is ordinary text
    # (three ChnSentiCorp reviews do), and csv's quote handling would swallow the lines after it.
    yield from _read_table(path, text, options, delimiter=options.separator or "\t", quoting=csv.QUOTE_NONE)


def _read_table(path: Path, text: str | None, options: _Options, *, delimiter: str, quoting: int) -> Iterator[_Raw]:
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


def _read_rows(path: Path, text: str, options: _Options, *, delimiter: str, quoting: int) -> Iterator[_Raw]:
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
            label = row[label_index] if label_index is not None else _ABSENT
            group = row[group_index] if options.group_column is not None else None
            yield _Raw(start, row[text_index], label, group)
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
        error = _missing_column_error(column, names, path, line)
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


@READERS.register("jsonl")
def _read_jsonl(path: Path, text: str | None, options: _Options) -> Iterator[_Raw]:
    for number, line in _lines(text):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"invalid JSON at character {e.colno} of this line: {e.msg}",
                path=path,
                line=number,
                fix="JSON Lines needs one complete JSON object per line; fix the syntax "
                "(for a file holding one JSON array, use `format: json`)",
            ) from e
        except (RecursionError, ValueError) as e:
            raise _json_value_error(path, line, e, first_line=number) from e
        yield _raw_from_object(record, number, path, options, unit="line")


@READERS.register("json")
def _read_json(path: Path, text: str | None, options: _Options) -> Iterator[_Raw]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        fix = "fix the JSON syntax at that position"
        if e.msg == "Extra data":
            fix = "the file holds more than one JSON value; for one object a line, set `format: jsonl`"
        raise DataError(
            f"invalid JSON at character {e.colno} of this line: {e.msg}", path=path, line=e.lineno, fix=fix
        ) from e
    except (RecursionError, ValueError) as e:
        raise _json_value_error(path, text, e, first_line=1) from e
    if not isinstance(records, list):
        found = type(records).__name__
        hint = ""
        if isinstance(records, dict):
            lists = [k for k, v in records.items() if isinstance(v, list)]
            hint = f" (keys: {', '.join(map(repr, list(records)[:10]))})"
            if lists:
                hint += f"; the records may be the list under {lists[0]!r}"
        raise DataError(
            f"expected a JSON array of objects, found a JSON {'object' if found == 'dict' else found}{hint}",
            path=path,
            fix="save the records as one array `[{...}, {...}]`, or as JSON Lines (one object a line, "
            "`format: jsonl`)",
        )
    for number, record in enumerate(records, start=1):
        yield _raw_from_object(record, number, path, options, unit="record")


# A JSON string, or one bracket or brace: what nesting depth is made of.
_JSON_NESTING_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[\[\]{}]')


def _json_value_error(path: Path, text: str, error: Exception, *, first_line: int) -> DataError:
    """The DataError for JSON that parses but that Python cannot hold: nesting too deep for its recursion
    limit, or an integer over its 4,300-digit limit (both ValueErrors that are not syntax errors)."""
    if not isinstance(error, RecursionError):
        long_number = re.search(r"\d{4301,}", text)
        return DataError(
            f"the JSON holds a value Python cannot read: {error}",
            path=path,
            line=first_line + text.count("\n", 0, long_number.start()) if long_number else None,
            fix="store very long numbers (ids, codes) as strings, in quotes",
        )
    depth, line = _deepest_nesting(text)
    return DataError(
        f"the JSON is nested {depth} levels deep (arrays or objects inside each other), deeper than the "
        f"reader can follow (about {sys.getrecursionlimit()})",
        path=path,
        line=first_line + line - 1,
        fix="a record is an object of text and label: flatten the nested value, or check that the file was "
        "written correctly",
    )


def _deepest_nesting(text: str) -> tuple[int, int]:
    """(deepest nesting of brackets and braces outside strings, the 1-based line that first reaches it)."""
    depth = deepest = 0
    line = deepest_line = 1
    position = 0
    for match in _JSON_NESTING_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > deepest:
                line += text.count("\n", position, match.start())
                position = match.start()
                deepest, deepest_line = depth, line
        elif token in "]}":
            depth -= 1
    return deepest, deepest_line


def _raw_from_object(record: Any, number: int, path: Path, options: _Options, *, unit: str) -> _Raw:
    if not isinstance(record, dict):
        raise data_error_at(
            number,
            f"expected a JSON object like {{\"{options.text_column}\": ...}}, found {type(record).__name__}",
            path=path,
            unit=unit,
            fix="make every record an object with the text and label as keys",
        )
    if options.text_column not in record:
        raise _missing_column_error(options.text_column, list(record), path, number, what="key", unit=unit)
    label = _ABSENT
    if options.label_column is not None:
        if options.label_column in record:
            label = record[options.label_column]
        elif options.require_labels:
            raise _missing_column_error(options.label_column, list(record), path, number, what="key", unit=unit)
    if options.group_column is not None and options.group_column not in record:
        raise _missing_column_error(options.group_column, list(record), path, number, what="key", unit=unit)
    group = record[options.group_column] if options.group_column is not None else None
    return _Raw(number, record[options.text_column], label, group)


@READERS.register("delimited")
def _read_delimited(path: Path, text: str | None, options: _Options) -> Iterator[_Raw]:
    separator = options.separator
    if not separator:
        raise DataError(
            "`format: delimited` needs a separator (each line is `text<separator>label`)",
            path=path,
            fix="set `separator`, e.g. '@' for Financial PhraseBank",
        )
    for number, line in _lines(text):
        if not line.strip():
            continue
        if separator not in line:
            if options.require_labels:
                raise DataError(
                    f"expected `text{separator}label` but the line has no {separator!r}: {line[:80]!r}",
                    path=path,
                    line=number,
                    fix=f"add `{separator}label` to the end of the line, or check `separator`",
                )
            yield _Raw(number, line, _ABSENT)
            continue
        text_part, label_part = line.rsplit(separator, 1)
        yield _Raw(number, text_part, label_part)


@READERS.register("parquet")
def _read_parquet(path: Path, text: str | None, options: _Options) -> Iterator[_Raw]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise MissingExtraError(
            "reading Parquet files needs pyarrow, which is not installed",
            path=path,
            fix='pip install "domainfit[parquet]"',
        ) from e
    import pyarrow as pa

    try:
        table = pq.read_table(path)
    except PermissionError as e:
        raise _unreadable_error(path, e) from e
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(
            f"cannot read the file as Parquet ({e})",
            path=path,
            fix="check that this is a Parquet file, or set `format` to the file's real format",
        ) from e
    names = table.column_names
    for column, required in [(options.text_column, True), (options.label_column, options.require_labels),
                             (options.group_column, True)]:
        if column is not None and column not in names and required:
            raise _missing_column_error(column, names, path, None)
    texts = table.column(options.text_column).to_pylist()
    has_labels = options.label_column is not None and options.label_column in names
    labels = table.column(options.label_column).to_pylist() if has_labels else [_ABSENT] * len(texts)
    has_groups = options.group_column is not None
    groups = table.column(options.group_column).to_pylist() if has_groups else [None] * len(texts)
    for number, (text_value, label, group) in enumerate(zip(texts, labels, groups), start=1):
        yield _Raw(number, text_value, label, group)
