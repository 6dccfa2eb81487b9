"""Crash-safe file writes: write a temporary sibling, fsync, then ``os.replace`` (atomic on POSIX).

A kill -9 at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


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
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


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
