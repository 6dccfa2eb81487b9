"""Unlabelled text, read one way everywhere: files and folders -> a lazy stream of clean texts.

    domainfit pretrain my_pretrain.yaml        # corpus.train (and joint.corpus in `domainfit train`)
    domainfit mine POOL_DIR --task-texts task.txt --output mined/corpus.txt
    domainfit inspect corpus.txt --model minilm

Every command that reads unlabelled text calls this module, so a pool that ``mine`` reads is read the same by
``pretrain``, the joint MLM objective and ``inspect``. The rules:

- **Files**: a file is read as given; a folder contributes, recursively and in sorted order, its files with a
  known extension (:data:`SUFFIX_FORMATS`), skipping hidden files and folders (names starting with ``.``,
  e.g. ``.DS_Store``, ``.ipynb_checkpoints``). A named file with an unknown extension is an error unless the
  format is set explicitly.
- **Formats**: ``.txt``/``.text`` one text a line; ``.jsonl``/``.ndjson`` the text key of each object;
  ``.csv``/``.tsv`` the text column (by header name, or a 0-based index for a header-less table), quoted
  fields may span lines; ``.json`` an array of objects (the one format read whole).
- **Whitespace**: each text is stripped and every run of whitespace (line breaks inside a quoted field
  included) becomes one space, so a text is one line in a corpus file and reads back the same; texts left
  empty, and JSON ``null`` values, are skipped.
- **Encodings**: any encoding in which a line break is the byte ``\\n`` (UTF-8, latin-1, GB18030, ...);
  a UTF-8 byte-order mark is dropped. Undecodable lines, malformed records and missing columns raise one
  :class:`DataError` naming the file and line.

Files are read as bytes, line by line, so every record has a byte offset: :class:`CorpusStream` (pretraining)
reads ``shuffle_buffer`` texts at a time, shuffles them with a permutation that depends only on (seed, epoch,
block start), and yields them. Its :class:`StreamPosition` (epoch, file, byte offset and line of the block
start, texts of the block consumed) is all a checkpoint needs: resuming seeks to the byte offset, re-reads the
block, replays the same permutation, and skips what was used.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import random
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch.utils.data import IterableDataset

from domainfit.errors import DataError

SUFFIX_FORMATS = {
    ".txt": "text",
    ".text": "text",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
}
FORMATS = ("text", "jsonl", "csv", "tsv", "json")

_COLUMN_FIX = "set the text column (--text-column, corpus.text_column or joint.corpus_column)"
_ENCODING_FIX = "set the encoding (--encoding or corpus.encoding), e.g. latin-1, or re-save the file as UTF-8"


@dataclass(frozen=True)
class SourcedText:
    """A text and where it was read: the file and the 1-based line its record ends on."""

    text: str
    source: str
    line: int


def list_text_files(
    paths: str | Path | Iterable[str | Path], *, fmt: str = "auto", key: str | None = None
) -> list[Path]:
    """The files behind ``paths``: files as given, folders expanded to their readable files (module doc).

    Args:
        paths: a file or folder, or several.
        fmt: the configured format; ``"auto"`` requires a known extension on a named file.
        key: the config key that gave the paths (named in errors), if any.

    Returns:
        The files, in reading order.

    Raises:
        DataError: a path does not exist, a named file has an unknown extension, or a folder holds no
            readable file.
    """
    files: list[Path] = []
    for raw in [paths] if isinstance(paths, (str, Path)) else paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            inside = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in SUFFIX_FORMATS
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not inside:
                raise DataError(
                    "the folder holds no readable text files (expected "
                    f"{', '.join(SUFFIX_FORMATS)}; hidden files are skipped)",
                    path=path,
                    key=key,
                    fix="point at the files themselves, or rename them with a known extension",
                )
            files += inside
        elif path.is_file():
            if fmt == "auto" and path.suffix.lower() not in SUFFIX_FORMATS:
                raise DataError(
                    f"cannot tell the format from the extension {path.suffix or '(none)'!r} "
                    f"(known: {', '.join(SUFFIX_FORMATS)})",
                    path=path,
                    key=key,
                    fix="rename the file (.txt for one text a line, .jsonl, .csv or .tsv), "
                    "or set the format (corpus.format / joint.corpus_format)",
                )
            files.append(path)
        else:
            raise DataError(
                "file or folder not found",
                path=path,
                key=key,
                fix="check the path; relative paths are resolved from the current folder",
            )
    if not files:
        raise DataError("no input files given", key=key, fix="give at least one file or folder")
    return files


def file_format(path: Path, fmt: str) -> str:
    """The configured format, or the one the extension implies."""
    return fmt if fmt != "auto" else SUFFIX_FORMATS.get(path.suffix.lower(), "text")


def clean_text(text: str) -> str:
    """The text stripped, each run of whitespace (line breaks included) one space: one corpus-file line."""
    return " ".join(text.split())


def iter_texts(
    paths: str | Path | Iterable[str | Path],
    *,
    fmt: str = "auto",
    text_column: str | int = "text",
    encoding: str = "utf-8",
    min_chars: int = 1,
) -> Iterator[SourcedText]:
    """Yield every text of the files and folders in ``paths``, in order, one at a time (memory stays flat).

    Args:
        paths: files and/or folders.
        fmt: text, jsonl, csv, tsv, json, or auto (by extension).
        text_column: the JSON key or CSV/TSV column holding the text (a 0-based int for a header-less table).
        encoding: text encoding of all files.
        min_chars: skip texts shorter than this (after whitespace is cleaned).
    """
    for path in list_text_files(paths, fmt=fmt):
        for line, _, text in read_records(path, fmt=fmt, column=text_column, encoding=encoding):
            if len(text) >= min_chars:
                yield SourcedText(text, str(path), line)


def sample_texts(texts: Iterable[SourcedText], n: int, *, seed: int = 0) -> list[SourcedText]:
    """A uniform random sample of ``n`` texts from a stream of unknown length, returned in stream order.

    Reservoir sampling (Algorithm R): memory holds ``n`` texts, whatever the stream's length.
    """
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


def read_records(
    path: Path,
    *,
    fmt: str = "auto",
    column: str | int = "text",
    encoding: str = "utf-8",
    start_byte: int = 0,
    start_line: int = 0,
) -> Iterator[tuple[int, int, str]]:
    """Yield ``(line, byte offset after the record, text)`` for each non-empty text of one file, lazily.

    ``line`` is the 1-based line the record ends on (a CSV/TSV record's quoted fields may span lines), so
    ``(line, byte)`` is where the next record starts. For a JSON array, both are the item's 1-based index (an
    array cannot be entered in the middle).

    Args:
        path: one file.
        fmt: text, jsonl, csv, tsv, json or auto.
        column: the column / JSON key holding the text (a 0-based int: a CSV/TSV without a header).
        encoding: the file's text encoding.
        start_byte: resume at this byte offset, the start of a record (one this function reported).
        start_line: the lines before ``start_byte``.

    Raises:
        DataError: the encoding is unknown or unsupported, a line cannot be decoded, a record is malformed, or
            the text column is missing.
    """
    fmt = file_format(path, fmt)
    _check_encoding(encoding, path)
    if fmt == "json":
        yield from _json_array_records(path, column, encoding, start_byte)
        return
    with open(path, "rb") as f:
        if fmt in ("csv", "tsv"):
            yield from _table_records(f, path, fmt, column, encoding, start_byte, start_line)
            return
        f.seek(start_byte)
        lines = _LineReader(f, path, encoding, start_byte, start_line)
        for line in lines:
            if not line.strip():
                continue
            text = clean_text(line) if fmt == "text" else _json_line_text(line, column, path, lines.line)
            if text:
                yield lines.line, lines.byte, text


class _LineReader:
    """Decoded lines of a binary file; ``line``, ``byte``: the number and end offset of the last line read."""

    def __init__(self, f: BinaryIO, path: Path, encoding: str, byte: int, line: int) -> None:
        self.f, self.path, self.encoding, self.byte, self.line = f, path, encoding, byte, line

    def __iter__(self) -> Iterator[str]:
        for raw in self.f:
            self.line += 1
            self.byte += len(raw)
            try:
                text = raw.decode(self.encoding)
            except UnicodeDecodeError as e:
                raise DataError(
                    f"cannot decode as {self.encoding} ({e.reason})", path=self.path, line=self.line, fix=_ENCODING_FIX
                ) from e
            yield text.removeprefix("\ufeff") if self.line == 1 else text  # a UTF-8 byte-order mark


def _check_encoding(encoding: str, path: Path) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError as e:
        raise DataError(
            f"unknown text encoding {encoding!r}", path=path, fix="use utf-8, latin-1, gb18030, cp1252 ..."
        ) from e
    if "\n".encode(encoding) != b"\n":  # files are split into lines as bytes (for resumable byte offsets)
        raise DataError(
            f"the {encoding} encoding is not supported: text is read line by line as bytes, "
            f"and in {encoding} a line break is not the byte \\n",
            path=path,
            fix="re-save the file as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8 in.txt > out.txt`)",
        )


def _json_line_text(line: str, column: str | int, path: Path, line_no: int) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(
            f"not valid JSON ({e.msg} at character {e.colno})",
            path=path,
            line=line_no,
            fix="write one JSON object per line",
        ) from e
    return _record_text(record, column, path, line=line_no)


def _record_text(
    record: Any, column: str | int, path: Path, *, line: int | None = None, item: int | None = None
) -> str:
    """The cleaned text of one JSON record ("" for an empty or null value)."""
    where = f"array item {item}: " if item is not None else ""
    if not isinstance(record, dict) or column not in record:
        found = ", ".join(map(repr, list(record)[:10])) if isinstance(record, dict) else f"a {type(record).__name__}"
        raise DataError(
            f"{where}expected an object with the key {column!r}, found {found}",
            path=path,
            line=line,
            column=column,
            fix=_COLUMN_FIX,
        )
    value = record[column]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(
            f"{where}the value of {column!r} is a {type(value).__name__}, not a text",
            path=path,
            line=line,
            column=column,
            fix=_COLUMN_FIX,
        )
    return clean_text(value)


def _json_array_records(path: Path, column: str | int, encoding: str, start: int) -> Iterator[tuple[int, int, str]]:
    try:
        items = json.loads(path.read_bytes().decode(encoding).removeprefix("\ufeff"))
    except UnicodeDecodeError as e:
        raise DataError(f"cannot decode as {encoding} ({e.reason})", path=path, fix=_ENCODING_FIX) from e
    except json.JSONDecodeError as e:
        raise DataError(
            f"not valid JSON ({e.msg})",
            path=path,
            line=e.lineno,
            column=e.colno,
            fix="save the texts as one JSON array of objects, or as JSON Lines (.jsonl)",
        ) from e
    if not isinstance(items, list):
        raise DataError(
            f"expected a JSON array of objects, found a JSON {type(items).__name__}",
            path=path,
            fix="save the texts as one array `[{...}, {...}]`, or as JSON Lines (.jsonl) for large corpora",
        )
    for i in range(start, len(items)):
        text = _record_text(items[i], column, path, item=i + 1)
        if text:
            yield i + 1, i + 1, text


def _table_records(
    f: BinaryIO, path: Path, fmt: str, column: str | int, encoding: str, start_byte: int, start_line: int
) -> Iterator[tuple[int, int, str]]:
    """CSV/TSV records with the byte offset after each whole record (a CSV quoted field may span lines).

    TSV has no quoting convention, as in ``data/csv_format.py`` (``domainfit train`` reads the same file the
    same way): a text starting with ``"`` is ordinary text (three ChnSentiCorp reviews do), where csv's quote
    handling would swallow the hundreds of lines after it into one text.
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a long document in one cell is a valid record
    # strict: a quote never closed is an error at the end of the file, not the rest of the file as one text
    dialect = (
        {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
        if fmt == "tsv"
        else {"delimiter": ",", "quoting": csv.QUOTE_MINIMAL, "strict": True}
    )
    if isinstance(column, int):
        index = column
    else:
        header_lines = _LineReader(f, path, encoding, 0, 0)
        header = _next_row(csv.reader(header_lines, **dialect), header_lines, path)
        if header is None:
            return
        header = [name.strip() for name in header]
        if column not in header:
            raise DataError(
                f"no column {column!r}; the header has {', '.join(map(repr, header[:20]))}",
                path=path,
                line=1,
                column=column,
                fix=f"{_COLUMN_FIX} to one of those names (or a 0-based index for a table without a header)",
            )
        index = header.index(column)
        if start_byte < header_lines.byte:  # from the start: the records begin after the header
            start_byte, start_line = header_lines.byte, header_lines.line
    f.seek(start_byte)
    lines = _LineReader(f, path, encoding, start_byte, start_line)
    rows = csv.reader(lines, **dialect)
    while True:
        first_line = lines.line + 1
        row = _next_row(rows, lines, path)  # csv stops reading at a record's end: lines.byte is right after it
        if row is None:
            return
        if not row:
            continue  # a blank line
        if index >= len(row):
            spans = (
                (
                    f"; this record runs from line {first_line} to line {lines.line}: a double quote opened on "
                    f"line {first_line} is probably never closed"
                )
                if lines.line > first_line
                else ""
            )
            raise DataError(
                f"the row has {len(row)} fields, so no column {column!r}{spans}",
                path=path,
                line=first_line,
                column=column,
                fix="fix the row (quote fields holding the delimiter, double quotes inside a quoted "
                "field), or check the delimiter",
            )
        text = clean_text(row[index])
        if text:
            yield lines.line, lines.byte, text


def _next_row(rows: Iterator[list[str]], lines: _LineReader, path: Path) -> list[str] | None:
    try:
        return next(rows, None)
    except csv.Error as e:
        raise DataError(
            f"malformed CSV ({e})",
            path=path,
            line=lines.line,
            fix="check the quoting on that line (a quote opened and never closed?)",
        ) from e


@dataclass
class StreamPosition:
    """Where a :class:`CorpusStream` is: enough to continue exactly (saved in checkpoints)."""

    epoch: int = 0
    file: int = 0  # index into the stream's file list
    byte: int = 0  # byte offset of the current block's first line in that file
    line: int = 0  # lines of that file before the block (for people reading the checkpoint)
    skip: int = 0  # texts of the current block already yielded

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class CorpusStream(IterableDataset):
    """An endless, resumable stream of texts over corpus files (epoch after epoch), block-shuffled.

    Args:
        files: corpus files, read in this order.
        fmt, column, encoding: how to read them (see :func:`read_records`).
        block: texts read and shuffled together (the shuffle buffer).
        seed: seed of the within-block permutations.
        exclude: ``(file index, line)`` pairs never yielded (the held-out texts).
        position: where to start (from a checkpoint).
        texts: extra in-memory texts (a task's training texts) streamed after the files in each epoch.
        group_size: if set (the batch size), texts of similar length follow each other in runs of this size,
            so batches carry little padding; the runs are shuffled (within 8 runs' worth of texts).
    """

    def __init__(
        self,
        files: list[Path],
        *,
        fmt: str = "auto",
        column: str = "text",
        encoding: str = "utf-8",
        block: int = 1000,
        seed: int = 0,
        exclude: Iterable[tuple[int, int]] = (),
        position: StreamPosition | None = None,
        texts: list[str] | None = None,
        group_size: int | None = None,
    ) -> None:
        self.files, self.fmt, self.column, self.encoding = list(files), fmt, column, encoding
        self.block, self.seed = block, seed
        self.exclude = set(exclude)
        self.texts = texts or []
        self.group_size = group_size
        self.position = position or StreamPosition()
        self.bytes_read = 0  # furthest byte offset the reader reached in the current file (a laziness check)
        if not self.files and not self.texts:
            raise DataError("the corpus is empty: no files and no texts", fix="give a corpus file or folder.")

    def __iter__(self) -> Iterator[str]:
        pos = StreamPosition(**self.position.to_dict())
        while True:
            texts, after = self._read_block(pos)
            generator = torch.Generator().manual_seed(hash_seed(self.seed, pos.epoch, pos.file, pos.byte))
            order = torch.randperm(len(texts), generator=generator).tolist()
            if self.group_size:
                order = _length_grouped(order, texts, self.group_size, generator)
            for k in range(pos.skip, len(texts)):
                self.position = StreamPosition(pos.epoch, pos.file, pos.byte, pos.line, k + 1)
                yield texts[order[k]]
            pos = after
            self.position = StreamPosition(**after.to_dict())

    def _read_block(self, pos: StreamPosition) -> tuple[list[str], StreamPosition]:
        """Up to ``block`` texts from ``pos`` (never across an epoch's end) and the position after them."""
        texts: list[str] = []
        file, byte, line = pos.file, pos.byte, pos.line
        n_sources = len(self.files) + (1 if self.texts else 0)
        for _ in range(2 * n_sources + 1):
            if file >= n_sources:
                break
            if file == len(self.files):  # the in-memory texts act as one more "file"; "byte" is an index
                take = self.texts[byte : byte + self.block - len(texts)]
                texts += take
                byte += len(take)
                line = byte
                if byte >= len(self.texts):
                    file, byte, line = file + 1, 0, 0
            else:
                for line_no, offset, text in read_records(
                    self.files[file],
                    fmt=self.fmt,
                    column=self.column,
                    encoding=self.encoding,
                    start_byte=byte,
                    start_line=line,
                ):
                    byte, line = offset, line_no
                    self.bytes_read = offset
                    if (file, line_no) not in self.exclude:
                        texts.append(text)
                    if len(texts) == self.block:
                        break
                else:
                    file, byte, line = file + 1, 0, 0
            if len(texts) == self.block:
                break
        if file >= n_sources:
            after = StreamPosition(pos.epoch + 1)
        else:
            after = StreamPosition(pos.epoch, file, byte, line)
        if not texts:
            if pos.file == 0 and pos.byte == 0:
                raise DataError(
                    "the corpus holds no text (all lines empty or held out)",
                    path=self.files[0] if self.files else None,
                    fix="check the files and the text column; lower corpus.validation_size.",
                )
            return self._read_block(after)
        return texts, after


def _length_grouped(order: list[int], texts: list[str], size: int, generator: torch.Generator) -> list[int]:
    """Within chunks of 8 runs, sort by length and cut into runs of ``size``; shuffle the runs' order."""
    out: list[int] = []
    for start in range(0, len(order), 8 * size):
        chunk = sorted(order[start : start + 8 * size], key=lambda i: len(texts[i]))
        runs = [chunk[j : j + size] for j in range(0, len(chunk), size)]
        for r in torch.randperm(len(runs), generator=generator).tolist():
            out += runs[r]
    return out


def hash_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike ``hash``)."""
    digest = hashlib.blake2b(json.dumps(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def take_heldout(
    files: list[Path], *, size: int, stride: int, fmt: str, column: str, encoding: str
) -> tuple[list[str], set[tuple[int, int]]]:
    """Every ``stride``-th text from the start of the corpus until ``size`` texts: (texts, their (file, line)).

    Only ``size * stride`` texts are read, so this is cheap on any corpus.
    """
    texts, where, seen = [], set(), 0
    for i, path in enumerate(files):
        for line_no, _, text in read_records(path, fmt=fmt, column=column, encoding=encoding):
            if seen % stride == 0:
                texts.append(text)
                where.add((i, line_no))
                if len(texts) == size:
                    return texts, where
            seen += 1
    return texts, where


def read_texts(files: list[Path], *, limit: int, fmt: str, column: str, encoding: str) -> list[str]:
    """The first ``limit`` texts of the files (a validation file)."""
    out: list[str] = []
    for path in files:
        for _, _, text in read_records(path, fmt=fmt, column=column, encoding=encoding):
            out.append(text)
            if len(out) == limit:
                return out
    return out


def count_texts(files: list[Path], *, fmt: str, column: str, encoding: str) -> int:
    """Number of texts (one streaming pass; for epoch-based step counts)."""
    return sum(1 for path in files for _ in read_records(path, fmt=fmt, column=column, encoding=encoding))


def describe_files(files: list[Path]) -> list[dict[str, Any]]:
    """Path, size and SHA-256 of each file (the lineage of a pretrained model), hashed in 1 MiB chunks."""
    out = []
    for path in files:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        out.append({"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()})
    return out
