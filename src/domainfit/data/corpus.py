"""Unlabelled text corpora, read lazily: a resumable stream of texts whose memory stays flat at any corpus size.

    domainfit pretrain my_pretrain.yaml        # corpus.train: a file or a folder of files

A corpus is a file or a folder of files (sorted, searched recursively): plain text (one document or sentence
per line), JSONL, CSV/TSV with a header (one record per line), or a JSON array (the only format loaded whole;
meant for small task files). :class:`CorpusStream` reads ``shuffle_buffer`` texts at a time, shuffles them
with a permutation that depends only on (seed, epoch, block start), and yields them. Its :class:`StreamPosition`
(epoch, file, byte offset and line of the block start, texts of the block consumed) is all a checkpoint needs:
resuming seeks to the byte offset, re-reads the block, replays the same permutation, and skips what was used.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset

from domainfit.errors import DataError

SUFFIX_FORMATS = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv", ".json": "json"}


def list_corpus_files(path: str | Path, *, key: str = "corpus.train") -> list[Path]:
    """The files of a corpus: ``path`` itself, or every file with a known suffix under the folder, sorted."""
    root = Path(path).expanduser()
    if root.is_file():
        return [root]
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIX_FORMATS)
        if not files:
            raise DataError(f"the corpus folder holds no text files ({', '.join(SUFFIX_FORMATS)})", path=root, key=key,
                            fix="put .txt (one text per line), .jsonl, .csv/.tsv or .json files in it.")
        return files
    raise DataError("corpus file or folder not found", path=root, key=key, fix="check the path (relative paths start at the current folder).")


def file_format(path: Path, fmt: str) -> str:
    """The configured format, or the one the suffix implies (unknown suffixes read as plain text)."""
    return fmt if fmt != "auto" else SUFFIX_FORMATS.get(path.suffix.lower(), "text")


def read_records(path: Path, *, fmt: str = "auto", column: str = "text", encoding: str = "utf-8",
                 start_byte: int = 0, start_line: int = 0) -> Iterator[tuple[int, int, str]]:
    """Yield ``(line, byte offset after the record, text)`` for each non-empty text, reading line by line.

    Args:
        path: one corpus file.
        fmt: text, jsonl, csv, tsv, json or auto.
        column: the column / JSON key holding the text.
        encoding: the file's text encoding.
        start_byte, start_line: resume at this byte offset, which is the start of line ``start_line + 1``.
    """
    fmt = file_format(path, fmt)
    if fmt == "json":  # a JSON array cannot be read lazily: "byte" is the item index here
        yield from _json_array_records(path, column, encoding, start_byte)
        return
    header: list[str] | None = None
    if fmt in ("csv", "tsv"):
        with open(path, encoding=encoding, newline="") as f:
            header = next(csv.reader([f.readline()], delimiter="\t" if fmt == "tsv" else ","), None)
        if not header or column not in header:
            raise DataError(f"no column {column!r} in the header (found: {', '.join(header or [])})", path=path, line=1,
                            column=column, fix="set the text column (corpus.text_column / joint.corpus_column) to one of the header's names.")
        index = header.index(column)
    with open(path, "rb") as f:
        f.seek(start_byte)
        line_no, offset = start_line, start_byte
        for raw in f:
            line_no += 1
            offset += len(raw)
            if header is not None and line_no == 1:
                continue  # the header row
            try:
                line = raw.decode(encoding).rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DataError(f"not valid {encoding} text: {e.reason}", path=path, line=line_no,
                                fix="set the encoding (corpus.encoding), e.g. latin-1.") from e
            if not line.strip():
                continue
            if fmt == "text":
                text = line
            elif fmt == "jsonl":
                text = _json_text(line, column, path, line_no)
            else:
                row = next(csv.reader(io.StringIO(line), delimiter="\t" if fmt == "tsv" else ","), [])
                if index >= len(row):
                    raise DataError(f"row has {len(row)} fields, the text column is number {index + 1}", path=path,
                                    line=line_no, column=column, fix="one record per line: quote fields, no line breaks inside texts.")
                text = row[index]
            if text.strip():
                yield line_no, offset, text


def _json_text(line: str, column: str, path: Path, line_no: int) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e.msg}", path=path, line=line_no, column=e.colno, fix="one JSON object per line.") from e
    if not isinstance(record, dict) or not isinstance(record.get(column), str):
        raise DataError(f"expected an object with a string {column!r}", path=path, line=line_no, column=column,
                        fix="set the text key (corpus.text_column / joint.corpus_column).")
    return record[column]


def _json_array_records(path: Path, column: str, encoding: str, start: int) -> Iterator[tuple[int, int, str]]:
    try:
        items = json.loads(path.read_text(encoding=encoding))
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e.msg}", path=path, line=e.lineno, column=e.colno) from e
    if not isinstance(items, list):
        raise DataError("expected a JSON array of objects", path=path, fix="use JSONL (one object per line) for large corpora.")
    for i in range(start, len(items)):
        item = items[i]
        if not isinstance(item, dict) or not isinstance(item.get(column), str):
            raise DataError(f"item {i} has no string {column!r}", path=path, column=column, fix="set the text key.")
        if item[column].strip():
            yield i + 1, i + 1, item[column]


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

    def __init__(self, files: list[Path], *, fmt: str = "auto", column: str = "text", encoding: str = "utf-8",
                 block: int = 1000, seed: int = 0, exclude: Iterable[tuple[int, int]] = (),
                 position: StreamPosition | None = None, texts: list[str] | None = None,
                 group_size: int | None = None) -> None:
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
                take = self.texts[byte: byte + self.block - len(texts)]
                texts += take
                byte += len(take)
                line = byte
                if byte >= len(self.texts):
                    file, byte, line = file + 1, 0, 0
            else:
                for line_no, offset, text in read_records(self.files[file], fmt=self.fmt, column=self.column,
                                                          encoding=self.encoding, start_byte=byte, start_line=line):
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
                raise DataError("the corpus holds no text (all lines empty or held out)", path=self.files[0] if self.files else None,
                                fix="check the files and the text column; lower corpus.validation_size.")
            return self._read_block(after)
        return texts, after


def _length_grouped(order: list[int], texts: list[str], size: int, generator: torch.Generator) -> list[int]:
    """Within chunks of 8 runs, sort by length and cut into runs of ``size``; shuffle the runs' order."""
    out: list[int] = []
    for start in range(0, len(order), 8 * size):
        chunk = sorted(order[start: start + 8 * size], key=lambda i: len(texts[i]))
        runs = [chunk[j: j + size] for j in range(0, len(chunk), size)]
        for r in torch.randperm(len(runs), generator=generator).tolist():
            out += runs[r]
    return out


def hash_seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike ``hash``)."""
    digest = hashlib.blake2b(json.dumps(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def take_heldout(files: list[Path], *, size: int, stride: int, fmt: str, column: str, encoding: str
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
