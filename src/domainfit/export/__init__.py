"""Export a trained model folder for serving: ONNX fp32 + int8, checked against PyTorch.

    domainfit export runs/x/model
"""

from domainfit.export.onnx import BUILTIN_PARITY_TEXTS, export_onnx

__all__ = ["BUILTIN_PARITY_TEXTS", "export_onnx"]
