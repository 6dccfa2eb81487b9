"""``domainfit.load(DIR)``: open any trained model folder on the predictor of its task.

The folder's ``domainfit.json`` names the task; each predictor module serves one kind of output (labels,
label sets, entity spans, image classes, generated text). This module only dispatches, so the predictor
modules never import each other's loaders.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from domainfit.errors import DomainfitError, ModelError
from domainfit.models.folder import folder_task
from domainfit.serving import generator, image_predictor, multilabel_predictor, predictor, token_predictor  # noqa: F401
from domainfit.serving.generator import read_generation_settings
from domainfit.serving.model_folder import check_model_dir
from domainfit.serving.model_process import MODEL_PROCESS
from domainfit.serving.registry import PREDICTORS
from domainfit.serving.text_cap import check_max_chars

log = logging.getLogger(__name__)

# every predictor module is imported above for its PREDICTORS registration
TAKES_MAX_CHARS = ("text-classification", "multi-label-classification", "token-classification")
TAKES_MIN_CONFIDENCE = ("text-classification", "image-classification")  # single-label: may abstain
# their runners may run apart
TAKES_MODEL_PROCESS = (
    "text-classification",
    "multi-label-classification",
    "token-classification",
    "image-classification",
)


def load(
    model_dir: str | Path,
    *,
    backend: str = "auto",
    num_threads: int | None = None,
    max_chars: int | None = None,
    min_confidence: float | None = None,
    model_process: str = "off",
) -> Any:
    """Load a trained model folder for prediction.

    Args:
        model_dir: a folder written by ``domainfit train`` (or any ``save_pretrained`` folder of a
            sequence-classification model with its tokenizer).
        backend: one of ``BACKENDS``. "auto" serves the int8 ONNX model when ``domainfit export`` found
            it keeps PyTorch's labels, else bf16 PyTorch on CPUs that do bf16 in hardware (if it keeps
            the labels too; single texts then go to the fp32 ONNX model if exported), else the fp32 ONNX
            model if exported, else PyTorch (see :func:`resolve_backend`).
        num_threads: CPU threads for inference. Default: all physical cores for ONNX Runtime, torch's
            own setting for the torch backends (given, it sets torch's process-wide thread count). On a
            machine where other processes are busy, fewer threads than cores is much faster for torch.
        max_chars: texts are cut to this many characters before tokenising (memory stays bounded for any
            input; the cut is logged). Default: 16 characters per token of the model's max_length, 128 times
            that for models that read whole texts in windows (:mod:`domainfit.serving.text_cap`). Generation
            and image models do not take it.
        min_confidence: single-label classifiers answer "abstain" when the top probability is below it.
            Default: the folder's own ``min_confidence`` (for ``evaluation.target_accuracy``), else never.
        model_process: "on" runs the model in a worker process (:mod:`domainfit.serving.model_process`), so
            its Python-side work does not hold this process's GIL (what ``domainfit serve`` wants: its event
            loop keeps answering while a batch runs); "auto" does so for the eager PyTorch backends only;
            "off" (the default, right for offline prediction) keeps it in this process. Text, multi-label, token
            and image classifiers; generation models run in this process whatever it says.

    Returns:
        A :class:`Predictor`; for a multi-label folder a
        :class:`~domainfit.serving.multilabel_predictor.MultiLabelPredictor`.
    """
    if read_generation_settings(model_dir) is not None:  # a generation model: greedy decoding, not labels
        return PREDICTORS.get("generation")(model_dir, backend=backend, num_threads=num_threads)
    path = check_model_dir(model_dir)
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise DomainfitError(f"num_threads must be a positive integer, got {num_threads!r}")
    check_max_chars(max_chars)
    if model_process not in MODEL_PROCESS:
        raise DomainfitError(f"model_process must be one of {', '.join(MODEL_PROCESS)}, got {model_process!r}")
    task = folder_task(path)
    if task not in PREDICTORS:
        raise ModelError(
            f"no predictor for task {task!r} (domainfit.json)",
            path=path,
            fix=f"tasks with a predictor: {', '.join(PREDICTORS.names())}.",
        )
    extra: dict[str, Any] = {"max_chars": max_chars} if task in TAKES_MAX_CHARS else {}
    if task in TAKES_MODEL_PROCESS:
        extra["model_process"] = model_process
    elif model_process == "on":
        log.warning(
            "model_process 'on' is for classifiers (text, multi-label, token, image); this %s model runs here",
            task,
        )
    if min_confidence is not None:
        if task not in TAKES_MIN_CONFIDENCE:
            raise DomainfitError(
                f"min_confidence is for single-label classifiers; {path} holds a {task} model",
                fix="drop --min-confidence (multi-label models use their per-label thresholds).",
            )
        extra["min_confidence"] = min_confidence
    return PREDICTORS.get(task)(path, backend=backend, num_threads=num_threads, **extra)
