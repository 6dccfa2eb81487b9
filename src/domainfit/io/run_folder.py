"""Paths read from a run folder stay inside it.

A run folder holds pointers (``checkpoints/latest`` names a step folder) and may hold symbolic links. A pointer
such as ``../../../elsewhere/step-x`` or a link to ``/etc`` must never make domainfit read (or delete) files
outside the folder the user named, so every such path is resolved and checked here.
"""

from __future__ import annotations

from pathlib import Path

from domainfit.errors import DomainfitError


def contained(root: Path, *parts: str | Path) -> Path:
    """``root / parts`` with links and ``..`` resolved; a DomainfitError if that lands outside ``root``."""
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        shown = Path(root).joinpath(*parts)
        raise DomainfitError(
            f"{shown} leads outside the run folder (to {target}); domainfit only reads a run's own files",
            path=root,
            fix="remove the link or pointer (or the whole folder if you did not create it), "
            "then run again; a run folder copied from elsewhere should hold no links.",
        )
    return target
