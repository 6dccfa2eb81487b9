"""ONNX export of a token-classification (NER) folder, checked tag by tag against PyTorch.

    domainfit export runs/ncbi-disease-minilm/model    # model/onnx/{model.onnx, model.int8.onnx, export.json}

The graph maps (batch, sequence) token ids to (batch, sequence, num_labels) logits; windows, merging and
IOB2 decoding stay in :class:`~domainfit.serving.token_predictor.TokenPredictor`, so every backend decodes
alike. Parity: the tag of every labelled unit (each word's first subword, or each token for
``label_unit: tokens``) of the parity texts must be the one PyTorch fp32 gives; ``label_agreement`` is
the share of those units whose tag is the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from domainfit.errors import DomainfitError
from domainfit.export.onnx import (
    ExportJob,
    check_text_export,
    label_parity,
    run_export,
    text_dynamic_axes,
    text_sample,
)
from domainfit.export.registry import EXPORTERS
from domainfit.serving.runners import Runner, TorchRunner
from domainfit.serving.token_predictor import TASK, load_token_model, load_token_predictor
from domainfit.serving.tokenizing import FastTokenizer, load_hf_tokenizer


def export_token_classifier(
    model_dir: str | Path, *, quantize: bool = True, parity_texts: list[str] | None = None, opset: int = 17
) -> dict[str, Any]:
    """Export a token-classification folder to ``model_dir/onnx/`` and check each tag against PyTorch.

    Args:
        model_dir: a ``domainfit train`` output folder of task token-classification.
        quantize: also write the int8 model.
        parity_texts: texts to compare on (the validation sentences are a good choice). Default: the
            built-in 24 sentences of :data:`~domainfit.export.onnx.BUILTIN_PARITY_TEXTS`.
        opset: ONNX opset version.

    Returns:
        The report written to ``onnx/export.json``.
    """
    path, texts, source = check_text_export(model_dir, parity_texts, opset)
    model = load_token_model(path, attn_implementation="eager")  # eager attention: the pattern ORT fuses
    predictor = load_token_predictor(path, backend="torch").with_runner(TorchRunner(model), "torch")
    reference = _stacked(predictor.unit_probabilities(texts))  # (units, num_labels); also checks the texts
    if not len(reference):
        raise DomainfitError("the parity texts hold no words to tag", fix="give texts with words in them.")

    def parity(runner: Runner) -> dict[str, Any]:
        """Same tag per labelled unit as PyTorch fp32."""
        probabilities = _stacked(predictor.with_runner(runner, "onnx").unit_probabilities(texts))
        return label_parity(reference, probabilities)

    tokenizer = FastTokenizer(load_hf_tokenizer(path), predictor.max_length)
    sample = text_sample(tokenizer, TorchRunner(model).input_names)
    parity_info = {
        "texts": len(texts),
        "source": source,
        "units": len(reference),
        "compared": f"tag per {predictor.label_unit[:-1]}",
    }
    job = ExportJob(
        model,
        sample,
        text_dynamic_axes(model, {0: "batch", 1: "sequence"}),
        parity,
        parity_info,
        model_type=model.config.model_type,
        settings={"max_length": predictor.max_length, "stride": predictor.stride},
    )
    return run_export(path, job, quantize=quantize, opset=opset)


def _stacked(per_text: list[tuple[Any, np.ndarray]]) -> np.ndarray:
    """All texts' unit probabilities in one (units, num_labels) array."""
    if not per_text:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate([probs for _, probs in per_text])


EXPORTERS.register(TASK, export_token_classifier)
