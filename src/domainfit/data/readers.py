"""Read labelled text examples from CSV, TSV, JSON Lines, JSON, Parquet or `text<sep>label` files.

    from domainfit.data.readers import read_examples
    examples = read_examples("train.csv", text_column="text", label_column="label")

Every problem a user can cause (a missing file, the wrong encoding, a ragged row, an empty text, a
missing label) raises :class:`~domainfit.errors.DataError` naming the file, the line and the column,
saying what was expected and what was found, and how to fix it. Nothing is read lazily: a bad row
at the end of the file fails before any model is loaded.

The formats are registered readers (:data:`~domainfit.data.records.READERS`), one module each:
:mod:`~domainfit.data.csv_format` (CSV, TSV), :mod:`~domainfit.data.json_format` (JSON Lines, JSON),
:mod:`~domainfit.data.delimited_format` and :mod:`~domainfit.data.parquet_format`. Opening and decoding
the file is :mod:`~domainfit.data.data_files`; checking each record, :mod:`~domainfit.data.record_checks`.
"""

from __future__ import annotations

import difflib
import logging
import stat
from pathlib import Path

# imported for their READERS.register calls
from domainfit.data import csv_format, delimited_format, json_format, parquet_format  # noqa: F401
from domainfit.data.data_files import check_is_file, read_text
from domainfit.data.record_checks import is_empty_text, to_example
from domainfit.data.records import FORMATS_BY_SUFFIX, READERS, Example, LabelParser, ReadOptions
from domainfit.errors import DataError

log = logging.getLogger(__name__)

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
    check_is_file(path)
    format = _resolve_format(path, format)
    if format in _KEYED_FORMATS:
        # Records are read by key: a number (`text_column: 0` in YAML) names the key "0".
        text_column, label_column, group_column = (_as_key(c) for c in (text_column, label_column, group_column))
    if group_column is not None and format == "delimited":
        raise DataError(
            "a `text<separator>label` file has no group column",
            path=path,
            column=group_column,
            fix="give the data as CSV, TSV, JSON Lines, JSON or Parquet with a group column, or "
            "remove the group column setting",
        )
    options = ReadOptions(text_column, label_column, separator, header, require_labels, group_column)
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
        if skip_empty and is_empty_text(raw.text):
            empty.append(raw.number)
            continue
        examples.append(to_example(raw, path, options, unit, parse_label))
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        log.info("%s: left out %d records with empty text (data.skip_empty), at %ss %s", path, len(empty), unit, shown)
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
