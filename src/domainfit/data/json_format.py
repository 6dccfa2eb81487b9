"""The JSON Lines and JSON readers: one object a line, or one array of objects, each with text and label keys.

Invalid syntax is reported at its line and character; JSON that parses but that Python cannot hold (nesting
deeper than the recursion limit, an integer over 4,300 digits) is a DataError too, not a traceback.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from domainfit.data.data_files import numbered_lines
from domainfit.data.records import (
    ABSENT,
    READERS,
    RawRecord,
    ReadOptions,
    data_error_at,
    missing_column_error,
)
from domainfit.errors import DataError


@READERS.register("jsonl")
def _read_jsonl(path: Path, text: str | None, options: ReadOptions) -> Iterator[RawRecord]:
    for number, line in numbered_lines(text):
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
def _read_json(path: Path, text: str | None, options: ReadOptions) -> Iterator[RawRecord]:
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
            fix="save the records as one array `[{...}, {...}]`, or as JSON Lines (one object a line, `format: jsonl`)",
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


def _raw_from_object(record: Any, number: int, path: Path, options: ReadOptions, *, unit: str) -> RawRecord:
    if not isinstance(record, dict):
        raise data_error_at(
            number,
            f'expected a JSON object like {{"{options.text_column}": ...}}, found {type(record).__name__}',
            path=path,
            unit=unit,
            fix="make every record an object with the text and label as keys",
        )
    if options.text_column not in record:
        raise missing_column_error(options.text_column, list(record), path, number, what="key", unit=unit)
    label = ABSENT
    if options.label_column is not None:
        if options.label_column in record:
            label = record[options.label_column]
        elif options.require_labels:
            raise missing_column_error(options.label_column, list(record), path, number, what="key", unit=unit)
    if options.group_column is not None and options.group_column not in record:
        raise missing_column_error(options.group_column, list(record), path, number, what="key", unit=unit)
    group = record[options.group_column] if options.group_column is not None else None
    return RawRecord(number, record[options.text_column], label, group)
