"""Task name -> the exporter that writes a trained model folder of that task to ONNX (fp32 + int8, parity-checked).

Each exporter module registers itself (``EXPORTERS.register("text-classification", export_onnx)``);
:func:`domainfit.export.export_model` reads the folder's task from ``domainfit.json`` and dispatches.
"""

from __future__ import annotations

from domainfit.models.folder import folder_task  # noqa: F401  (re-exported for export_model)
from domainfit.registry import Registry

EXPORTERS: Registry = Registry("exporter")
