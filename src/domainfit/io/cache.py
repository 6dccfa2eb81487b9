"""The per-user cache folder: what domainfit keeps between runs on one machine (the measured precision choice,
jieba's dictionary cache). ``$DOMAINFIT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/domainfit``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where per-machine data is kept (``$DOMAINFIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/domainfit``, where
    ``$XDG_CACHE_HOME`` defaults to ``~/.cache``)."""
    if os.environ.get("DOMAINFIT_CACHE_DIR"):
        return Path(os.environ["DOMAINFIT_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "domainfit"
