"""Stream unlabelled texts, one at a time, from text files, JSON Lines, CSV/TSV files and folders of them.

    domainfit mine POOL_DIR --task-texts task.txt --output mined/corpus.txt
    domainfit inspect corpus.txt --model minilm

Unlike :func:`domainfit.data.readers.read_examples`, nothing is held in memory: a pool of many gigabytes is read
line by line, so the callers (kNN mining, tokenizer diagnostics) can work in bounded memory. Formats, by file
name: ``.txt`` (one text a line), ``.jsonl``/``.ndjson`` (the ``text_column`` key of each object), ``.csv``/
``.tsv`` (the ``text_column`` column, by header name or 0-based index), ``.json`` (an array of objects: the one
format read whole, as JSON cannot be streamed without a parser library). A folder is read recursively, its files
in sorted order. Blank lines and empty texts are skipped; malformed records raise :class:`DataError` naming
the file and line.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from domainfit.errors import DataError

STREAM_FORMATS = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
                  ".json": "json"}


@dataclass(frozen=True)
class SourcedText:
    """A text and where it was read: the file and its 1-based line."""

    text: str
    source: str
    line: int


def list_text_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files behind ``paths``: files as given, folders expanded recursively to their readable files (sorted).

    Raises:
        DataError: a path does not exist, a file has an unknown extension, or a folder holds no readable file.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in STREAM_FORMATS
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not inside:
                raise DataError(f"the folder holds no readable text files (expected {', '.join(STREAM_FORMATS)})",
                                path=path, fix="point at the files themselves, or rename them with a known extension")
            files += inside
        elif path.is_file():
            if path.suffix.lower() not in STREAM_FORMATS:
                raise DataError(f"cannot tell the format from the extension {path.suffix or '(none)'!r} "
                                f"(known: {', '.join(STREAM_FORMATS)})", path=path,
                                fix="rename the file: .txt for one text a line, .jsonl, .csv or .tsv")
            files.append(path)
        else:
            raise DataError("file or folder not found", path=path,
                            fix="check the path; relative paths are resolved from the current directory")
    if not files:
        raise DataError("no input files given", fix="give at least one file or folder")
    return files


def iter_texts(paths: Iterable[str | Path], *, text_column: str | int = "text", encoding: str = "utf-8",
               min_chars: int = 1) -> Iterator[SourcedText]:
    """Yield every non-empty text of the files and folders in ``paths``, in order, one at a time.

    Args:
        paths: files and/or folders.
        text_column: the JSON key or CSV/TSV column holding the text (a 0-based int for a header-less table).
        encoding: text encoding of all files.
        min_chars: skip texts shorter than this (after stripping whitespace).
    """
    for path in list_text_files(paths):
        kind = STREAM_FORMATS[path.suffix.lower()]
        for item in _READERS[kind](path, text_column, encoding):
            text = " ".join(item.text.split())  # one line per text in a corpus file: no inner newlines
            if len(text) >= min_chars:
                yield SourcedText(text, item.source, item.line)


def sample_texts(texts: Iterable[SourcedText], n: int, *, seed: int = 0) -> list[SourcedText]:
    """A uniform random sample of ``n`` texts from a stream of unknown length (reservoir sampling, Algorithm R),
    returned in stream order. Memory holds ``n`` texts, whatever the stream's length."""
    rng = random.Random(seed)
    reservoir: list[tuple[int, SourcedText]] = []
    for i, item in enumerate(texts):
        if i < n:
            reservoir.append((i, item))
        else:
            j = rng.randint(0, i)
            if j < n:
                reservoir[j] = (i, item)
    return [item for _, item in sorted(reservoir, key=lambda pair: pair[0])]


def _open(path: Path, encoding: str):
    try:
        return open(path, encoding=encoding, newline="")
    except LookupError as e:
        raise DataError(f"unknown text encoding {encoding!r}", path=path, fix="use utf-8, latin-1, gb18030 ...") from e


def _decoded_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    with _open(path, encoding) as f:
        number = 0
        try:
            for number, line in enumerate(f, start=1):
                yield number, line.rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise DataError(f"cannot decode as {encoding} ({e.reason})", path=path, line=number + 1,
                            fix="give the right --encoding (e.g. latin-1 for Financial PhraseBank), or re-save as UTF-8") from e


def _read_text(path: Path, text_column: str | int, encoding: str) -> Iterator[SourcedText]:
    for number, line in _decoded_lines(path, encoding):
        if line.strip():
            yield SourcedText(line, str(path), number)


def _read_jsonl(path: Path, text_column: str | int, encoding: str) -> Iterator[SourcedText]:
    for number, line in _decoded_lines(path, encoding):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg} at character {e.colno})", path=path, line=number,
                            fix="write one JSON object per line") from e
        if not isinstance(record, dict) or text_column not in record:
            keys = ", ".join(map(repr, list(record)[:10])) if isinstance(record, dict) else type(record).__name__
            raise DataError(f"expected an object with the key {text_column!r}, found {keys}", path=path, line=number,
                            column=text_column, fix="set --text-column to the key that holds the text")
        value = record[text_column]
        if isinstance(value, str) and value.strip():
            yield SourcedText(value, str(path), number)


def _read_json(path: Path, text_column: str | int, encoding: str) -> Iterator[SourcedText]:
    try:
        records = json.loads(path.read_text(encoding=encoding))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"not a readable JSON file ({e})", path=path,
                        fix="save the texts as JSON Lines (.jsonl) or a JSON array of objects") from e
    if not isinstance(records, list):
        raise DataError(f"expected a JSON array of objects, found a JSON {type(records).__name__}", path=path,
                        fix="save the texts as one array `[{...}, {...}]` or as JSON Lines (.jsonl)")
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or text_column not in record:
            raise DataError(f"record {number}: expected an object with the key {text_column!r}", path=path,
                            column=text_column, fix="set --text-column to the key that holds the text")
        value = record[text_column]
        if isinstance(value, str) and value.strip():
            yield SourcedText(value, str(path), number)


def _read_table(path: Path, text_column: str | int, encoding: str) -> Iterator[SourcedText]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with _open(path, encoding) as f:
        rows = csv.reader(f, delimiter=delimiter)
        try:
            if isinstance(text_column, int):
                index = text_column
            else:
                header = next(rows, None)
                if header is None:
                    return
                if text_column not in header:
                    raise DataError(f"no column {text_column!r}; the header has {', '.join(map(repr, header[:20]))}",
                                    path=path, line=1, column=text_column,
                                    fix="set --text-column to one of those names (or a 0-based index for no header)")
                index = header.index(text_column)
            for row in rows:
                if not row:
                    continue
                if index >= len(row):
                    raise DataError(f"the row has {len(row)} fields, so no column {text_column!r}", path=path,
                                    line=rows.line_num, column=text_column, fix="fix the row, or check the delimiter")
                if row[index].strip():
                    yield SourcedText(row[index], str(path), rows.line_num)
        except UnicodeDecodeError as e:
            raise DataError(f"cannot decode as {encoding} ({e.reason})", path=path,
                            fix="give the right --encoding, or re-save the file as UTF-8") from e
        except csv.Error as e:
            raise DataError(f"malformed CSV ({e})", path=path, line=rows.line_num, fix="check quoting on that line") from e


_READERS = {"text": _read_text, "jsonl": _read_jsonl, "csv": _read_table, "tsv": _read_table, "json": _read_json}
