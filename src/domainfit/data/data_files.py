"""Open a data file and decode it: a regular file (or a named pipe), text in the encoding given.

    text = read_text("train.csv", "utf-8")   # the whole file, decoded; a DataError if it cannot be

A missing file names the similar files beside it; a folder, a device or a binary file (Parquet, zip,
Excel) is refused with what it is; an undecodable byte is reported by line and byte offset, with an
encoding that reads the whole file where one does (:mod:`domainfit.data.encodings`).
"""

from __future__ import annotations

import difflib
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from domainfit.data.encodings import encoding_from_bom, line_of_offset, undecodable_error
from domainfit.data.records import FORMATS_BY_SUFFIX
from domainfit.errors import DataError


def check_is_file(path: Path) -> None:
    """A DataError unless ``path`` is a regular file or a named pipe: a folder, a device or a missing file
    (naming similar files beside it) is refused."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as e:
        raise unreadable_error(path, e) from e
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
    check_is_file(path)
    try:
        if stat.S_ISFIFO(path.stat().st_mode):
            return _read_pipe(path)
        return path.read_bytes()
    except OSError as e:
        raise unreadable_error(path, e) from e


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


def unreadable_error(path: Path, error: OSError) -> DataError:
    """The DataError for a file the OS will not let us read (permissions, a vanished disk)."""
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
        fix="check that the file is readable (the disk or network share may be gone), or copy it to a local disk",
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


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end) for CRLF, LF and lone-CR line ends alike."""
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        yield number, line.rstrip("\r\n")
