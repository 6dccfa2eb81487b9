"""The task texts mining starts from: read as `domainfit train` reads them (its validation/test texts are
excluded from the pool, so nothing leaks into pretraining)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from domainfit.errors import DataError


def texts_of(items: Iterable[Any], *, path: str | None = None) -> list[str]:
    """The texts of a task's examples: ``Example.text``, or the tokens joined by spaces (token-level tasks)."""
    texts = []
    for item in items:
        text = getattr(item, "text", None)
        if text is None and getattr(item, "tokens", None) is not None:
            text = " ".join(item.tokens)
        if not isinstance(text, str):
            raise DataError(
                f"cannot get a text from a {type(item).__name__} example (no .text or .tokens)",
                path=path,
                fix="give the task texts as a plain file with --task-texts",
            )
        texts.append(text)
    return texts


def load_task_texts(config: str | None, overrides: Sequence[str] = ()) -> tuple[list[str], list[str], dict[str, Any]]:
    """The training texts and the validation + test texts of a run config, read exactly as ``domainfit train``
    reads them (same task, files, dedup and split).

    Returns:
        (train texts, validation + test texts, provenance for the report).
    """
    from domainfit.config import load_config
    from domainfit.tasks import create_task

    cfg = load_config(config, list(overrides))
    data = create_task(cfg.task).load_data(cfg)
    held_out = [t for name in ("validation", "test") for t in texts_of(data.splits.get(name, []), path=cfg.data.train)]
    info = {
        "task_source": f"{config} (task {cfg.task}, train split of {cfg.data.train})",
        "counts": {name: len(items) for name, items in data.splits.items()},
    }
    return texts_of(data.splits["train"], path=cfg.data.train), held_out, info
