"""Fast prediction from a trained model folder, with PyTorch or ONNX Runtime underneath.

    import domainfit
    predictor = domainfit.load("runs/x/model")              # backend="auto": int8 ONNX when it is safe
    predictor.predict(["Operating profit rose to EUR 13.1 mn ."])
    # [{'label': 'positive', 'score': 0.97,
    #   'probabilities': {'negative': 0.01, 'neutral': 0.02, 'positive': 0.97}}]

Speed comes from three things, in order of effect (see ``benchmarks/bench_inference.py`` for the figures):
batching texts of similar length so each batch is padded only to its own longest text; running an
exported, fused and int8-quantised ONNX graph instead of eager PyTorch; and keeping the per-call path
short (the Rust ``tokenizers`` backend called directly, numpy in and out, no ``pipeline`` machinery).

This module holds the text classifier itself; its parts live beside it: :mod:`~domainfit.serving.model_folder`
(labels, settings, export report), :mod:`~domainfit.serving.tokenizing` (tokenizer, padding),
:mod:`~domainfit.serving.runners` (PyTorch, ONNX Runtime), :mod:`~domainfit.serving.backends` (the "auto"
choice) and :mod:`~domainfit.serving.confidence` (softmax, abstention).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from domainfit.data.lengths import SERVING_BATCH_TOKENS, sorted_batches
from domainfit.data.windows import WindowSettings, aggregate_by_group, special_token_counts, window_rows
from domainfit.errors import DomainfitError
from domainfit.serving.backends import (
    CALL_COST,
    DEFAULT_BATCH_SIZE,
    SPLIT_BACKEND,
    check_export_current,
    resolve_backend,
)
from domainfit.serving.confidence import apply_abstention, check_min_confidence, softmax
from domainfit.serving.model_folder import ONNX_FILES, ServingSettings, read_labels, read_settings
from domainfit.serving.model_process import runner_for
from domainfit.serving.registry import PREDICTORS
from domainfit.serving.runners import Runner, RunnerOwner
from domainfit.serving.text_cap import cap_texts, check_max_chars, default_max_chars
from domainfit.serving.tokenizing import FastTokenizer, load_hf_tokenizer, pad_inputs

_NO_TRUNCATION = 1_000_000  # windowed models tokenise whole texts, then cut them into windows


class Predictor(RunnerOwner):
    """Classifies texts with a trained model folder; build it with :func:`load`.

    Attributes:
        labels: label names, in the order of the probability columns.
        backend: the backend in use ("torch", "torch-bf16", "onnx", "onnx-int8" or "torch-bf16+onnx").
        max_length: texts are truncated to this many tokens (special tokens included).
        windows: for models trained with ``long_text: windows``: how long texts are cut and aggregated.
        text_prefix: prepended to every text before tokenising (e.g. "query: " for e5 models).
        temperature: logits are divided by it before the softmax (fitted on validation; labels unchanged).
        min_confidence: :meth:`predict` answers "abstain" when the top probability is below it (None: never).
        max_chars: texts are cut to this many characters before tokenising, so one huge text cannot take
            all the memory (:mod:`domainfit.serving.text_cap`).
    """

    def __init__(
        self,
        runner: Runner,
        tokenizer: FastTokenizer,
        labels: list[str],
        settings: ServingSettings,
        backend: str,
        max_chars: int | None = None,
        min_confidence: float | None = None,
    ) -> None:
        check_max_chars(max_chars)
        check_min_confidence(min_confidence)
        self._runner = runner
        self._tokenizer = tokenizer
        self.labels = labels
        self.backend = backend
        self.max_length = settings.max_length
        self.text_prefix = settings.text_prefix
        self.windows = settings.windows
        self.temperature = settings.temperature
        self.min_confidence = min_confidence if min_confidence is not None else settings.min_confidence
        self.max_chars = max_chars or default_max_chars(self.max_length, windows=self.windows is not None)

    def __repr__(self) -> str:
        return f"Predictor(backend={self.backend!r}, labels={self.labels}, max_length={self.max_length})"

    def predict_proba(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Class probabilities, shape (len(texts), len(labels)), float32, rows in input order.

        Texts are sorted by token length and batched, each batch padded only to its own longest text,
        so a few long texts do not slow down all the short ones; a batch also stops at
        ``SERVING_BATCH_TOKENS`` padded tokens, so long texts (windows of 512 tokens) go in fewer rows.

        Args:
            texts: the texts to classify.
            batch_size: texts per forward pass; default ``DEFAULT_BATCH_SIZE[backend]`` (32 for the ONNX
                backends, 64 for torch).
        """
        texts = self._check_texts(texts)
        reads = f"{'windows' if self.windows else 'its first'} {self.max_length} tokens"
        texts = cap_texts(texts, self.max_chars, reads=reads)
        if batch_size is None:
            batch_size = DEFAULT_BATCH_SIZE[self.backend]
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise DomainfitError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if self.text_prefix:
            texts = [self.text_prefix + t for t in texts]
        ids, type_ids = self._tokenizer(texts)
        groups = None
        if self.windows is not None:  # long texts -> windows, as in training (domainfit.data.windows)
            ids, type_ids, groups = window_rows(ids, self.windows)
        if len(ids) == 1:  # the latency path: no sorting or scattering
            return softmax(self._runner(pad_inputs(ids, type_ids, self._tokenizer.pad_id)), self.temperature)
        logits = np.empty((len(ids), len(self.labels)), dtype=np.float32)
        for rows in sorted_batches([len(x) for x in ids], batch_size, SERVING_BATCH_TOKENS, CALL_COST[self.backend]):
            inputs = pad_inputs([ids[i] for i in rows], [type_ids[i] for i in rows], self._tokenizer.pad_id)
            logits[rows] = self._runner(inputs)
        if groups is not None:
            logits = aggregate_by_group(logits, groups, self.windows.aggregation)
        return softmax(logits, self.temperature)

    def predict(self, texts: Sequence[str], batch_size: int | None = None) -> list[dict[str, Any]]:
        """Best label, its probability, and all probabilities, one dict per text in input order.

        ``batch_size`` is as in :meth:`predict_proba`. The label is "abstain" when the probability is under
        ``min_confidence``; the probabilities still show what the model would have said.
        """
        probabilities = self.predict_proba(texts, batch_size=batch_size)
        results = []
        for row in probabilities.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            results.append(
                {"label": self.labels[best], "score": row[best], "probabilities": dict(zip(self.labels, row))}
            )
        return apply_abstention(results, self.min_confidence)

    @staticmethod
    def _check_texts(texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise DomainfitError("expected a list of texts, got one string", fix="wrap it in a list: predict([text]).")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DomainfitError(f"text {i} is a {type(text).__name__}, not a string: {text!r:.80}")
            if not text.strip():
                raise DomainfitError(
                    f"text {i} is empty or only whitespace: nothing to classify",
                    fix="drop empty texts before predicting.",
                )
        return texts


def read_text_side(model_dir: Path) -> tuple[FastTokenizer, ServingSettings, list[str]]:
    """Everything but the network: tokenizer (truncating at the folder's max_length), settings, labels."""
    labels = read_labels(model_dir)
    hf_tokenizer = load_hf_tokenizer(model_dir)
    settings = read_settings(model_dir, getattr(hf_tokenizer, "model_max_length", None))
    if settings.windows is None:
        return FastTokenizer(hf_tokenizer, settings.max_length), settings, labels
    windows = WindowSettings(
        settings.max_length, settings.windows.stride, settings.windows.aggregation, *special_token_counts(hf_tokenizer)
    )
    windows.check(key="window_stride")
    settings = ServingSettings(
        settings.task, settings.max_length, settings.text_prefix, windows, settings.temperature, settings.min_confidence
    )
    return FastTokenizer(hf_tokenizer, _NO_TRUNCATION), settings, labels


def load_text_classifier(
    path: Path,
    *,
    backend: str = "auto",
    num_threads: int | None = None,
    max_chars: int | None = None,
    min_confidence: float | None = None,
    model_process: str = "off",
) -> Predictor:
    """A single-label text classifier on the backend :func:`resolve_backend` picks (see
    :func:`domainfit.serving.load`)."""
    resolved = resolve_backend(path, backend)
    tokenizer, settings, labels = read_text_side(path)
    if backend != "auto" and resolved in (*ONNX_FILES, SPLIT_BACKEND):  # "auto" has checked already
        check_export_current(path, resolved)
    runner = runner_for(path, resolved, num_threads, model_process)
    return Predictor(runner, tokenizer, labels, settings, resolved, max_chars, min_confidence)


PREDICTORS.register("text-classification", load_text_classifier)
