"""Training processes run on mimalloc instead of glibc's malloc (Linux).

A CPU fine-tune allocates and frees its activations every step, in as many sizes as there are batch shapes.
glibc's allocator keeps freed blocks in its heap, fragmented, and serves large ones with ``mmap`` (which the
kernel must zero and fault in again at every step); mimalloc (Microsoft's allocator, MIT, shipped as a
wheel by ``cmeel-mimalloc``) keeps per-size free lists and returns pages lazily. On the PhraseBank benchmark a
training run was 1.16x faster with a lower peak (``benchmarks/bench_memory_levers.py``, BENCHMARKS.md).

The allocator must be in place before the process allocates anything, so it cannot be switched from Python:
``domainfit train``/``pretrain``/``pipeline``/``demo`` re-execute themselves once with mimalloc in
``LD_PRELOAD`` (as PyTorch's own CPU launcher, ``torch.backends.xeon.run_cpu``, does for jemalloc/tcmalloc).
``DOMAINFIT_ALLOCATOR=system`` keeps the system allocator; nothing happens off Linux, when the wheel is
missing, or when the user already preloads something.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import sys
from functools import lru_cache
from pathlib import Path

CHOICE_ENV = "DOMAINFIT_ALLOCATOR"  # "mimalloc" (default) or "system"
CHOICES = ("mimalloc", "system")
_REEXECUTED_ENV = "_DOMAINFIT_ALLOCATOR_REEXEC"  # set in the child, so that it never re-executes again
LIBRARY_NAME = "libmimalloc.so"


def mimalloc_library() -> Path | None:
    """The shared library installed by the ``cmeel-mimalloc`` wheel, or None where it is not installed."""
    try:
        files = importlib.metadata.files("cmeel-mimalloc") or []
        dist = importlib.metadata.distribution("cmeel-mimalloc")
    except importlib.metadata.PackageNotFoundError:
        return None
    candidates = sorted((f for f in files if f.name.startswith(LIBRARY_NAME)), key=lambda f: len(f.name))
    for file in candidates:
        path = Path(dist.locate_file(file))
        if path.is_file():
            return path.resolve()
    return None


@lru_cache(maxsize=None)
def mimalloc_function(name: str):
    """mimalloc's exported function ``name`` when mimalloc is loaded into this process, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(None), name)  # the process's global symbols, preloaded libraries included
    except (OSError, AttributeError):
        return None


def active_allocator() -> str:
    """``mimalloc`` when it is loaded into this process, else ``system``."""
    return "mimalloc" if mimalloc_function("mi_collect") is not None else "system"


def requested_allocator() -> str:
    choice = os.environ.get(CHOICE_ENV, "mimalloc").strip().lower() or "mimalloc"
    if choice not in CHOICES:
        from domainfit.errors import ConfigError

        raise ConfigError(
            f"{CHOICE_ENV}={os.environ[CHOICE_ENV]!r} is not an allocator domainfit knows",
            key=CHOICE_ENV,
            fix=f"set it to one of {', '.join(CHOICES)}, or unset it.",
        )
    return choice


def preload_command(argv: list[str]) -> tuple[list[str], dict[str, str]] | None:
    """The command and environment that re-run ``domainfit *argv`` on mimalloc; None where nothing is to do.

    Nothing to do: not Linux, ``DOMAINFIT_ALLOCATOR=system``, mimalloc already loaded, this process is the
    re-executed one, ``LD_PRELOAD`` already set by the user (their choice stands), or the wheel missing.
    """
    if not sys.platform.startswith("linux") or requested_allocator() != "mimalloc":
        return None
    if os.environ.get(_REEXECUTED_ENV) or os.environ.get("LD_PRELOAD") or active_allocator() == "mimalloc":
        return None
    library = mimalloc_library()
    if library is None:
        return None
    env = {**os.environ, "LD_PRELOAD": str(library), _REEXECUTED_ENV: "1"}
    return [sys.executable, "-m", "domainfit", *argv], env


def reexec_on_mimalloc(argv: list[str]) -> None:
    """Replace this process with ``domainfit *argv`` running on mimalloc (see :func:`preload_command`)."""
    planned = preload_command(argv)
    if planned is None:
        return
    command, env = planned
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)
