"""Crash-safe file writes: write a temporary sibling, fsync, then ``os.replace`` (atomic on POSIX).

A kill -9 at any moment leaves either the old file or the new one, never half of one.

    write_text_atomic(path, text)                 # a whole string at once
    with open_atomic(path, "w") as f:             # streamed: rows written as they come
        f.write(...)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


def fsync_dir(path: Path) -> None:
    """Persist a directory entry change (rename/create) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` to produce the file, then move it into place atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        move_atomic(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def open_atomic(
    path: str | Path,
    mode: str = "w",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    tmp: Path | None = None,
) -> Iterator[IO[Any]]:
    """Yield a file open on a temporary sibling of ``path``; when the block ends without an error the file
    is fsynced and moved onto ``path``, and on any error the temporary file is removed (``path`` unchanged).

    Args:
        path: the file to write.
        mode: ``"w"`` or ``"wb"`` (as for :func:`open`).
        encoding: as for :func:`open` (text modes only).
        newline: as for :func:`open` (``""`` for the csv module).
        tmp: the temporary sibling to write through; default a fresh ``.<name>.<random>.tmp``. A caller
            that must recognise its own (or dead processes') leftovers gives a name of its own.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tmp is None:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        with open(tmp, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # the rename below must not publish a file whose data is still in memory
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def move_atomic(source: Path, path: Path) -> None:
    """Move a finished file ``source`` onto ``path`` (same file system) after fsyncing it, so a crash leaves
    the old ``path`` or the whole new one."""
    with open(source, "rb") as f:
        os.fsync(f.fileno())
    os.replace(source, path)
    fsync_dir(Path(path).parent)


def write_text_atomic(path: Path, text: str) -> None:
    """Atomically write a UTF-8 text file."""
    write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces ``path`` as a whole.

    The old folder (if any) is moved aside first and removed only after the new one is in place, so at
    every instant either the old or the new complete folder exists (a crash between the two renames leaves
    ``path`` missing but ``.<name>.old`` complete; :func:`recover_dir` puts it back).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = path.parent / f".{path.name}.old"
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def recover_dir(path: Path) -> None:
    """Undo a crash between the two renames of :func:`atomic_dir`."""
    old = path.parent / f".{path.name}.old"
    if not path.exists() and old.exists():
        os.replace(old, path)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Atomically write a binary file."""
    write_atomic(path, lambda p: p.write_bytes(data))
