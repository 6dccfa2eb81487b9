"""Explain a trained text classifier's predictions: word attributions from a model folder or a loaded predictor.

    domainfit explain runs/x/model texts.csv --method ig --output explanations.html

    import domainfit
    from domainfit.serving.explain import explain
    explain("runs/x/model", ["Operating profit rose to EUR 13.1 mn ."], method="ig")
    # [{'text': ..., 'explanations': [{'label': 'positive', 'probability': 0.97, 'words': [...]}], ...}]

This module only opens the model (``domainfit.load``, PyTorch fp32: gradients need it) and hands the network
and tokenizer to :class:`domainfit.evaluation.explain.TextExplainer`, which computes the attributions.
Single-label and multi-label text classifiers are covered; token classification and image models are not yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from domainfit.errors import DomainfitError
from domainfit.evaluation.explain import DEFAULT_STEPS, TextExplainer, check_method, check_texts
from domainfit.serving.loader import load
from domainfit.serving.multilabel_predictor import MultiLabelPredictor
from domainfit.serving.predictor import Predictor, TorchRunner

TASKS = ("text-classification", "multi-label-classification")


def explainer_for(predictor_or_dir: Any) -> TextExplainer:
    """The :class:`TextExplainer` of a model folder (loaded on PyTorch fp32) or of a loaded predictor.

    Raises:
        DomainfitError: the folder or predictor is not a text classifier, or the predictor does not run
            on PyTorch fp32 (ONNX has no gradients; bf16 ones are too coarse).
    """
    if isinstance(predictor_or_dir, (str, Path)):
        predictor = load(predictor_or_dir, backend="torch")
    else:
        predictor = predictor_or_dir
    if not isinstance(predictor, (Predictor, MultiLabelPredictor)):
        task = getattr(predictor, "task", type(predictor).__name__)
        raise DomainfitError(f"explanations cover {' and '.join(TASKS)} models; this is a {task} model",
                             fix="explain a text or multi-label classifier's folder.")
    runner = predictor._runner
    if predictor.backend != "torch" or not isinstance(runner, TorchRunner):
        raise DomainfitError(f"explanations need the PyTorch fp32 backend; this predictor runs on "
                             f"{predictor.backend!r} (no gradients there)",
                             fix="load the folder with domainfit.load(DIR, backend='torch'), or pass the folder.")
    tokenizer = predictor._tokenizer  # the FastTokenizer keeps the Hugging Face tokenizer it was made from
    if isinstance(predictor, MultiLabelPredictor):
        return TextExplainer(runner.model, tokenizer._hf, predictor.labels, max_length=tokenizer.max_length,
                             text_prefix=predictor.text_prefix, multi_label=True,
                             thresholds=predictor.thresholds)
    # a model trained on windows reads a long text in pieces; its explanation covers the first window
    return TextExplainer(runner.model, tokenizer._hf, predictor.labels, max_length=predictor.max_length,
                         text_prefix=predictor.text_prefix)


def explain(predictor_or_dir: Any, texts: Sequence[str], *, method: str = "ig",
            n_steps: int = DEFAULT_STEPS) -> list[dict[str, Any]]:
    """Word attributions for each text's predicted label(s); the server's ``/explain`` calls this.

    Args:
        predictor_or_dir: a model folder, or a predictor from ``domainfit.load(DIR, backend="torch")``.
        texts: the texts to explain.
        method: "ig" (Integrated Gradients) or "grad-x-input".
        n_steps: IG integration steps.

    Returns:
        One JSON-ready dict per text (see :meth:`TextExplainer.explain`).
    """
    check_method(method)  # before the model is loaded
    texts = check_texts(texts)
    return explainer_for(predictor_or_dir).explain(texts, method=method, n_steps=n_steps)
