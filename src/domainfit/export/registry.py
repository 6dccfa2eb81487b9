"""Task name -> the exporter that writes a trained model folder of that task to ONNX (fp32 + int8, parity-checked).

Each exporter module registers itself (``EXPORTERS.register("text-classification", export_onnx)``);
:func:`domainfit.export.export_model` reads the folder's task from ``domainfit.json`` and dispatches.
"""

from __future__ import annotations

import json
from pathlib import Path

from domainfit.errors import ModelError
from domainfit.registry import Registry

EXPORTERS: Registry = Registry("exporter")


def folder_task(model_dir: str | Path) -> str:
    """The task named in the folder's ``domainfit.json`` (text-classification for folders without one)."""
    settings = Path(model_dir) / "domainfit.json"
    try:
        task = json.loads(settings.read_text(encoding="utf-8")).get("task") if settings.is_file() else None
    except (OSError, ValueError, AttributeError) as e:
        raise ModelError(f"domainfit.json cannot be read: {e}", path=settings,
                         fix="restore the file written by `domainfit train`.") from e
    return task or "text-classification"
