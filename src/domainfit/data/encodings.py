"""Say why a data file does not decode, and which encoding (if any) reads the whole of it correctly.

    error = undecodable_error(path, data, "utf-8", unicode_decode_error)   # -> DataError to raise

An encoding is suggested only if it decodes the whole file *and* reads the lines before the bad one as the
requested encoding did: otherwise following the hint would silently garble those lines (a file saved as UTF-8
for 500 lines and as cp1252 after decodes without error as latin-1 or gb18030, into mojibake). A file that no
single encoding reads is reported as mixing encodings, naming its first line that is not in the requested one.
"""

from __future__ import annotations

import re
from pathlib import Path

from domainfit.errors import DataError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def encoding_from_bom(data: bytes) -> str | None:
    """The encoding a byte-order mark at the start of ``data`` announces, or None."""
    # utf-32 first: its little-endian BOM starts with utf-16's.
    for bom, name in [
        (b"\xff\xfe\x00\x00", "utf-32"),
        (b"\x00\x00\xfe\xff", "utf-32"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
        (b"\xef\xbb\xbf", "utf-8-sig"),
    ]:
        if data.startswith(bom):
            return name
    return None


def line_of_offset(data: bytes, offset: int) -> int:
    """The 1-based line (CRLF, LF or lone CR ends) that byte ``offset`` of ``data`` is on."""
    return len(_LINE_BREAK.findall(data[:offset].decode("latin-1"))) + 1


def undecodable_error(path: Path, data: bytes, encoding: str, error: UnicodeDecodeError) -> DataError:
    """The DataError for ``data`` (the bytes of ``path``) failing to decode as ``encoding``.

    It names the line, the byte offset and the bytes, and either an encoding that reads the whole file
    the same way up to that line, or says that the file mixes encodings.
    """
    line_start = max(data.rfind(b"\n", 0, error.start), data.rfind(b"\r", 0, error.start)) + 1
    line = line_of_offset(data, line_start)
    bad = data[error.start : error.end].hex(" ")
    what = (
        f"byte(s) 0x{bad} at byte {error.start - line_start + 1} of this line (byte {error.start} of the "
        f"file) cannot be decoded as {encoding} ({error.reason})"
    )
    try:
        before = data[:line_start].decode(encoding)  # the lines the requested encoding did read
    except UnicodeDecodeError:  # a multi-byte encoding whose line end split a character: compare nothing
        before = ""
    for candidate in _candidates(data, encoding):
        if _reads_whole_file_alike(data, before, candidate):
            hint = " (or cp1252 for files saved on Windows)" if candidate == "latin-1" else ""
            return DataError(
                what, path=path, line=line, fix=f"set `encoding: {candidate}`{hint}, or re-save the file as UTF-8"
            )
    rest = _candidates(data[line_start:], encoding)
    looks_like = ""
    if rest:
        looks_like = f" (it looks like {'latin-1 or cp1252' if rest[0] == 'latin-1' else rest[0]})"
    return DataError(
        f"{what}. The file mixes encodings: lines 1 to {line - 1} read as {encoding} but line {line} does "
        "not, and no single encoding reads the whole file without changing those earlier lines",
        path=path,
        line=line,
        fix=f"re-save the file in one encoding: convert the part from line {line} on{looks_like} to "
        f"{encoding} (or fix line {line} by hand), so every line is {encoding}",
    )


def _reads_whole_file_alike(data: bytes, before: str, candidate: str) -> bool:
    """Whether ``candidate`` decodes all of ``data`` and reads its start as ``before``."""
    try:
        return data.decode(candidate).removeprefix("\ufeff").startswith(before.removeprefix("\ufeff"))
    except (UnicodeDecodeError, LookupError):
        return False


def _candidates(data: bytes, encoding: str) -> list[str]:
    """Encodings worth suggesting, most specific first: a byte-order mark's, UTF-8, then a guess from the high
    bytes (GB18030 for runs of two or more, as in Chinese text; latin-1 for isolated accented letters)."""
    names = [encoding_from_bom(data), "utf-8", _guess_legacy_encoding(data)]
    out = []
    for name in names:
        if name and name.lower().replace("_", "-") != encoding.lower().replace("_", "-") and name not in out:
            out.append(name)
    return [name for name in out if _decodes(data, name)]


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _guess_legacy_encoding(data: bytes) -> str:
    # Western single-byte text has isolated high bytes (an accented letter among ASCII); Chinese
    # double-byte text has them in runs of two or more.
    runs = [len(run) for run in re.findall(rb"[\x80-\xff]+", data)]
    if runs and sum(r >= 2 for r in runs) >= 0.8 * len(runs) and _decodes(data, "gb18030"):
        return "gb18030"
    return "latin-1"
