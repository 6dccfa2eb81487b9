"""A full disk (or quota) named in words: which disk, how much is free. Used wherever domainfit writes."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


def human_size(n_bytes: float) -> str:
    """1536 -> '1.5 KB'."""
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024:
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TB"


def disk_full(error: OSError, folder: Path) -> str | None:
    """For ENOSPC / EDQUOT: 'the disk is full (12 MB free of 50 GB on the disk holding /x)'; else None."""
    if error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    usage = shutil.disk_usage(folder)
    what = "disk quota exceeded" if error.errno == errno.EDQUOT else "the disk is full"
    return (
        f"{what} ({human_size(usage.free)} free of {human_size(usage.total)} on the disk holding {folder.absolute()})"
    )
