"""Check one raw record and make it an :class:`~domainfit.data.records.Example`: the text is a non-empty
string, the label one string or integer (or what a ``parse_label`` hook makes of it), the group a string.

Every failed check is a DataError at the file, line (or record) and column of the cell.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from domainfit.data.records import (
    ABSENT,
    MISSING_GROUP,
    Example,
    LabelLocation,
    LabelParser,
    RawRecord,
    ReadOptions,
    data_error_at,
)


def is_empty_text(value: Any) -> bool:
    """A missing, NaN, empty or whitespace-only text; other non-strings are left for the type check."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and not value.strip()


def to_example(
    raw: RawRecord, path: Path, options: ReadOptions, unit: str, parse_label: LabelParser | None = None
) -> Example:
    """Check ``raw``'s text, label and group, and make the Example; a DataError at the bad cell otherwise."""
    text = _clean_text(raw, path, options.text_column, unit)
    if parse_label is not None and options.label_column is not None:
        value = None if raw.label is ABSENT else raw.label
        label = parse_label(value, LabelLocation(path, raw.number, unit, options.label_column))
        return Example(text=text, label=label, line=raw.number, unit=unit, group=_clean_group(raw, options))
    label = _clean_label(raw, path, options, unit)
    return Example(text=text, label=label, line=raw.number, unit=unit, group=_clean_group(raw, options))


def _clean_group(raw: RawRecord, options: ReadOptions) -> str | None:
    """The group as a string; an empty cell is a group of its own (an unknown sex or region is common)."""
    if options.group_column is None:
        return None
    value = raw.group
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return MISSING_GROUP
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _clean_text(raw: RawRecord, path: Path, column: str | int, unit: str) -> str:
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


def _clean_label(raw: RawRecord, path: Path, options: ReadOptions, unit: str) -> str | None:
    value = raw.label
    column = options.label_column
    if column is None:
        return None
    if value is ABSENT or value is None or (isinstance(value, float) and math.isnan(value)):
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
