"""The model folder's own settings file, ``domainfit.json``: read and written here and nowhere else.

A trained model folder is a standard Hugging Face folder plus ``domainfit.json``: the task, how texts were prepared
(max_length, prefix, windows, label unit), the labels' decision settings (thresholds), lineage and the domainfit
version. Tasks write it when they save; predictors, exporters and PEFT loading read it. A folder without one is a
plain Hugging Face folder, read as a single-label text classifier.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from domainfit.errors import ModelError
from domainfit.io.atomic import write_text_atomic
from domainfit.version import __version__

SETTINGS_FILE = "domainfit.json"
DEFAULT_TASK = "text-classification"  # folders from before domainfit.json named the task


def settings_path(model_dir: str | Path) -> Path:
    return Path(model_dir).expanduser() / SETTINGS_FILE


def read_folder_settings(model_dir: str | Path) -> dict[str, Any]:
    """The folder's settings ({} when it has no ``domainfit.json``); an unreadable file is a ModelError."""
    path = settings_path(model_dir)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(
            f"{SETTINGS_FILE} cannot be read: {e}",
            path=path,
            fix="restore the file written by `domainfit train` (or delete it for a plain Hugging Face "
            "text classifier).",
        ) from e
    if not isinstance(data, dict):
        raise ModelError(
            f"{SETTINGS_FILE} should hold a JSON object, found {type(data).__name__}",
            path=path,
            fix="restore the file written by `domainfit train`.",
        )
    return data


def folder_task(model_dir: str | Path) -> str:
    """The task the folder's model was trained for."""
    task = read_folder_settings(model_dir).get("task") or DEFAULT_TASK
    if not isinstance(task, str):
        raise ModelError(f"task must be a string, found {task!r}", path=settings_path(model_dir), key="task")
    return task


def write_folder_settings(model_dir: str | Path, settings: dict[str, Any]) -> None:
    """Write ``domainfit.json`` (atomically; ``domainfit_version`` added when the caller did not set it)."""
    settings = {**settings}
    settings.setdefault("domainfit_version", __version__)
    write_text_atomic(settings_path(model_dir), json.dumps(settings, indent=2, ensure_ascii=False))
