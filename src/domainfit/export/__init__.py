"""Export a trained model folder for serving: ONNX fp32 + int8, checked against PyTorch.

    domainfit export runs/x/model

Text classification, token classification (NER), multi-label and image classification export; the task
comes from the folder's ``domainfit.json``.
"""

from pathlib import Path
from typing import Any

from domainfit.errors import ModelError
from domainfit.export import image_classification, multi_label, token_classification  # noqa: F401
from domainfit.export.onnx import BUILTIN_PARITY_TEXTS, export_onnx
from domainfit.export.registry import EXPORTERS, folder_task

# each exporter module is imported above for its EXPORTERS registration


def export_model(model_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Export ``model_dir`` with its task's exporter; options as that exporter takes them."""
    task = folder_task(model_dir)
    if task not in EXPORTERS:
        raise ModelError(
            f"ONNX export is not available for task {task!r} yet",
            path=model_dir,
            fix=f"tasks that export: {', '.join(EXPORTERS.names())}; serve this model with PyTorch "
            "(domainfit predict / domainfit.load), which needs no export.",
        )
    return EXPORTERS.get(task)(model_dir, **options)


__all__ = ["BUILTIN_PARITY_TEXTS", "EXPORTERS", "export_model", "export_onnx"]
