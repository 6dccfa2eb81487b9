"""The files of ``domainfit predict`` and ``evaluate``: checked before the model runs, written whole or not
at all.

    check_input_file(args.input)          # a readable regular file, not a folder or a FIFO
    out = check_output_file(args.output)  # not a folder, and its folder can be written
    ... predict ...
    with write_output(out) as f:          # a temp sibling, then os.replace; a full disk says so
        f.write(...)

Prediction can run for hours, so every reason the output could not be written is found first. Temp files
carry the writer's process id (``.out.csv.<pid>.tmp``): a run removes its own on failure, and a successful
run removes those of processes that no longer exist (killed with ``kill -9``, or a power cut).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from domainfit.errors import DataError, DomainfitError
from domainfit.io.atomic import open_atomic
from domainfit.io.disk import disk_full

TMP_SUFFIX = ".tmp"


def pid_is_alive(pid: int) -> bool:
    """True if a process with this id exists on this machine (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def check_input_file(path: str | Path) -> Path:
    """Return ``path`` after checking it is an existing, readable regular file.

    Raises:
        DataError: naming the path, for a missing path, a folder, a FIFO/socket/device, or no read permission.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError("input file does not exist", path=path, fix="check the path (and the current folder).")
    if path.is_dir():
        raise DataError(
            "expected an input file, found a folder",
            path=path,
            fix="give one file inside it (CSV, TSV, JSON Lines, JSON or Parquet).",
        )
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        # a pipe can be read only once and only as it streams, but the readers sniff the format first
        raise DataError(
            f"expected a regular file, found {kind}",
            path=path,
            fix="write the data to a file first, e.g. `zcat input.csv.gz > input.csv`.",
        )
    if not os.access(path, os.R_OK):
        raise DataError(
            "no permission to read the input file",
            path=path,
            fix=f"give this user read access (e.g. `chmod o+r {path}`), or copy the file somewhere readable.",
        )
    return path


def check_output_file(path: str | Path) -> Path:
    """Return ``path`` after checking a file can be written there, before any prediction is made.

    A missing parent folder is fine (it is created when the output is written) as long as the nearest
    existing folder above it can be written.

    Raises:
        DomainfitError: for an existing folder or non-regular file at ``path``, or a folder that cannot be
            written.
    """
    out = Path(path).expanduser()
    if out.is_dir():
        raise DomainfitError(
            "--output is an existing folder; predictions are written to a file",
            path=out,
            fix=f"give a file name, e.g. --output {out / 'predictions.csv'}",
        )
    if out.exists() and not out.is_file():
        raise DomainfitError(
            "--output exists and is not a regular file (a FIFO, socket or device)",
            path=out,
            fix="give the path of a regular file; it is replaced whole once prediction is done.",
        )
    _check_writable(out.parent, out)
    return out


def check_output_folder(path: str | Path) -> Path:
    """Return ``path`` after checking a report folder can be written there (created later if missing).

    Raises:
        DomainfitError: for an existing file at ``path``, a training run's folder, or a folder that cannot be
            written.
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise DomainfitError(
            "--output exists and is a file; evaluate writes a folder (metrics.json, report.md)",
            path=out,
            fix="give a folder name, e.g. --output eval-test",
        )
    if (out / "model" / "config.json").is_file():
        # a training run's folder: its own report.md and metrics.json would be replaced by the evaluation's
        raise DomainfitError(
            "--output is a training run's folder; its report.md and metrics.json would be overwritten",
            path=out,
            fix=f"give a folder of its own, e.g. --output {out / 'eval'}",
        )
    _check_writable(out, out)
    return out


def _check_writable(folder: Path, out: Path) -> None:
    """Check ``folder`` (or, if missing, the nearest existing folder above it) takes new files for ``out``."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DomainfitError(
            f"--output cannot be created: {existing} is a file, not a folder",
            path=out,
            fix="choose an --output path whose folders are folders.",
        )
    # os.access alone passes for root on a folder that refuses writes (read-only mounts under /proc,
    # /sys, NFS with root squash): a probe file is the real test
    if not os.access(existing, os.W_OK | os.X_OK) or not _probe_write(existing):
        raise DomainfitError(
            f"--output cannot be written: no permission to create files in {existing} (or it is on a read-only disk)",
            path=out,
            fix="choose an --output in a folder you can write, e.g. under your home folder.",
        )


def _probe_write(folder: Path) -> bool:
    try:
        handle, name = tempfile.mkstemp(prefix=".domainfit-probe-", dir=folder)
    except OSError:
        return False
    os.close(handle)
    os.unlink(name)
    return True


def temp_path(out: Path) -> Path:
    """The temp sibling this process writes ``out`` through."""
    return out.with_name(f".{out.name}.{os.getpid()}{TMP_SUFFIX}")


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove temp siblings of ``out`` left by processes that no longer run; return them.

    ``.out.csv.tmp`` (no process id: written by domainfit before 0.2) counts as stale too.
    """
    pattern = re.compile(rf"\.{re.escape(out.name)}(?:\.(\d+))?{re.escape(TMP_SUFFIX)}")
    removed = []
    if not out.parent.is_dir():
        return removed
    for entry in out.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and entry.is_file() and not (match[1] and pid_is_alive(int(match[1]))):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def output_error(error: OSError, out: Path) -> DomainfitError:
    """A write failure as one message: a full disk names the disk and its free space."""
    kept = "the previous file is unchanged" if out.is_file() else "nothing was written"
    full = disk_full(error, out.parent)
    if full:
        return DomainfitError(
            f"{full} while writing the output; {kept}",
            path=out,
            fix="free some space on that disk, or write --output to another disk.",
        )
    return DomainfitError(
        f"cannot write the output: {error.strerror or error}; {kept}",
        path=out,
        fix="check the disk and the folder's permissions, or choose another --output.",
    )


@contextlib.contextmanager
def write_output(out: str | Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """Yield a UTF-8 text file to fill; on success it replaces ``out`` whole (fsynced, then ``os.replace``).

    On any failure the temp file is removed and ``out`` keeps its previous content; an ``OSError`` (a full
    disk, a lost mount) becomes one :class:`DomainfitError` naming ``out``. After a success, temp files of
    dead processes next to ``out`` are removed.

    Args:
        out: the file to write.
        newline: as for :func:`open` (``""`` for the csv module).
    """
    out = Path(out)
    try:
        with open_atomic(out, "w", encoding="utf-8", newline=newline, tmp=temp_path(out)) as f:
            yield f
    except OSError as e:
        raise output_error(e, out) from e
    remove_stale_temps(out)
