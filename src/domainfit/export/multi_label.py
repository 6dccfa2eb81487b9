"""ONNX export of a multi-label folder, checked against PyTorch on the label set each text gets.

    domainfit export runs/ncbi-multilabel/model    # model/onnx/{model.onnx, model.int8.onnx, export.json}

The graph is the sequence classifier's (batch, num_labels) logits, as for single-label models; the sigmoid
and the per-label thresholds stay in :class:`~domainfit.serving.multilabel_predictor.MultiLabelPredictor`.
Parity: a text agrees when every label lands on the same side of its stored threshold as with PyTorch
fp32; ``label_agreement`` is the share of parity texts whose whole label set is unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from domainfit.export.onnx import (
    ExportJob,
    check_text_export,
    parity_entry,
    run_export,
    text_dynamic_axes,
    text_sample,
)
from domainfit.export.registry import EXPORTERS
from domainfit.serving.multilabel_predictor import TASK, load_multilabel
from domainfit.serving.runners import Runner, TorchRunner, load_torch_model
from domainfit.serving.tokenizing import FastTokenizer, load_hf_tokenizer


def export_multilabel(
    model_dir: str | Path, *, quantize: bool = True, parity_texts: list[str] | None = None, opset: int = 17
) -> dict[str, Any]:
    """Export a multi-label folder to ``model_dir/onnx/`` and check the label sets against PyTorch.

    Args:
        model_dir: a ``domainfit train`` output folder of task multi-label-classification.
        quantize: also write the int8 model.
        parity_texts: texts to compare on (the validation texts are a good choice). Default: the built-in
            24 sentences of :data:`~domainfit.export.onnx.BUILTIN_PARITY_TEXTS`.
        opset: ONNX opset version.

    Returns:
        The report written to ``onnx/export.json``.
    """
    path, texts, source = check_text_export(model_dir, parity_texts, opset)
    model = load_torch_model(path, attn_implementation="eager")  # eager attention: the pattern ORT fuses
    predictor = load_multilabel(path, backend="torch").with_runner(TorchRunner(model), "torch")
    reference = predictor.predict_proba(texts)  # (n, num_labels); also checks the texts

    def parity(runner: Runner) -> dict[str, Any]:
        """Same label set per text, at the folder's thresholds, as PyTorch fp32."""
        probabilities = predictor.with_runner(runner, "onnx").predict_proba(texts)
        return label_set_parity(reference, probabilities, predictor.thresholds)

    sample = text_sample(FastTokenizer(load_hf_tokenizer(path), 64), TorchRunner(model).input_names)
    parity_info = {"texts": len(texts), "source": source, "compared": "label set per text at the stored thresholds"}
    thresholds = {label: round(float(t), 6) for label, t in zip(predictor.labels, predictor.thresholds)}
    job = ExportJob(
        model,
        sample,
        text_dynamic_axes(model),
        parity,
        parity_info,
        model_type=model.config.model_type,
        settings={"thresholds": thresholds},
        bf16=True,
    )
    return run_export(path, job, quantize=quantize, opset=opset)


def label_set_parity(reference: np.ndarray, probabilities: np.ndarray, thresholds: np.ndarray) -> dict[str, Any]:
    """A text agrees when each label is on the same side of its threshold; probabilities (n, num_labels)."""
    agree = ((reference >= thresholds) == (probabilities >= thresholds)).all(axis=1)  # (n,)
    return parity_entry(agree, reference, probabilities)


EXPORTERS.register(TASK, export_multilabel)
