"""Entity spans from a trained token-classification folder (``domainfit.load`` dispatches here).

    import domainfit
    ner = domainfit.load("runs/ncbi-disease-minilm/model")
    ner.predict(["Germline mutations in BRCA1 cause breast cancer ."])
    # [[{'start': 34, 'end': 47, 'label': 'Disease', 'text': 'breast cancer', 'score': 0.98}]]

    domainfit predict runs/ncbi-disease-minilm/model texts.jsonl --output entities.jsonl

Texts are cut into words and subword tokens as in training (``data.token_alignment``, in the unit the model
was trained on: ``label_unit`` in domainfit.json, "words" for folders that predate it); texts longer than the
model's window are split into overlapping windows whose predictions are merged (each token from the window
where it is most central). Windows of all texts are sorted by length and batched. Each word's tag is the
arg-max at its first subword (each token's own for "tokens"); entities are decoded in strict IOB2 (as they
were scored) and returned as character offsets into the original text. After ``domainfit export`` the ONNX
backends serve it too ("auto" picks int8 ONNX when it kept PyTorch's tags on the parity texts, else fp32
ONNX).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from domainfit.data.lengths import SERVING_BATCH_TOKENS, sorted_batches
from domainfit.data.ner_readers import tags_to_entities
from domainfit.data.token_alignment import (
    UNITS,
    encode_sentence,
    merge_window_logits,
    plan_windows,
    special_tokens,
)
from domainfit.errors import DomainfitError, ModelError
from domainfit.models.folder import SETTINGS_FILE, read_folder_settings
from domainfit.serving.backends import CALL_COST, resolve_task_backend
from domainfit.serving.files import write_output
from domainfit.serving.model_folder import ONNX_FILES, read_labels
from domainfit.serving.model_process import runner_for
from domainfit.serving.registry import PREDICTORS, RUNNER_KINDS
from domainfit.serving.runners import Runner, RunnerOwner, TorchRunner, onnx_runner
from domainfit.serving.text_cap import cap_texts, check_max_chars, default_max_chars
from domainfit.serving.tokenizing import load_hf_tokenizer, pad_inputs

TASK = "token-classification"
DEFAULT_BATCH_SIZE = 64
BACKENDS = ("auto", "torch", "onnx", "onnx-int8")


class TokenPredictor(RunnerOwner):
    """Finds entities in texts with a trained token-classification folder; build it with :func:`load_token_predictor`.

    Attributes:
        labels: IOB2 tag names in model output order.
        entity_types: the entity types.
        backend: "torch", "onnx" or "onnx-int8".
        max_length: tokens per window (special tokens included).
        stride: tokens shared by neighbouring windows.
        max_chars: texts are cut to this many characters before tokenising (see
            :mod:`domainfit.serving.text_cap`); entities are found in the part kept.
    """

    task = TASK

    def __init__(
        self,
        runner: Runner,
        tokenizer: Any,
        labels: list[str],
        *,
        max_length: int,
        stride: int,
        max_chars: int | None = None,
        label_unit: str = "words",
        backend: str = "torch",
    ) -> None:
        check_max_chars(max_chars)

        self._runner = runner
        self._tokenizer = tokenizer
        self._before, self._after = special_tokens(tokenizer)
        self.labels = labels
        self.entity_types = [label[2:] for label in labels if label.startswith("B-")]
        self.backend = backend
        self.max_length = max_length
        self.stride = stride
        self.max_chars = max_chars or default_max_chars(max_length, windows=True)  # windows read whole texts
        self.label_unit = label_unit

    def __repr__(self) -> str:
        return (
            f"TokenPredictor(backend={self.backend!r}, entity_types={self.entity_types}, "
            f"max_length={self.max_length}, stride={self.stride})"
        )

    def with_runner(self, runner: Runner, backend: str) -> TokenPredictor:
        """The same predictor on another backend (the exporter compares backends with it)."""
        return TokenPredictor(
            runner,
            self._tokenizer,
            self.labels,
            max_length=self.max_length,
            stride=self.stride,
            max_chars=self.max_chars,
            label_unit=self.label_unit,
            backend=backend,
        )

    def unit_probabilities(self, texts: Sequence[str], batch_size: int | None = None) -> list[tuple[Any, np.ndarray]]:
        """Per text: its encoding and the tag probabilities of its labelled units, (units, num_labels).

        A unit is a word (its first subword's prediction) or, for models trained with ``label_unit: tokens``,
        a token. Texts longer than a window are windowed and merged as in training.
        """
        texts = cap_texts(_check_texts(texts), self.max_chars, reads=f"windows of {self.max_length} tokens")
        batch_size = batch_size or DEFAULT_BATCH_SIZE
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise DomainfitError(f"batch_size must be a positive integer, got {batch_size!r}")
        size = self.max_length - len(self._before) - len(self._after)
        encodings = [encode_sentence(self._tokenizer, text, unit=self.label_unit) for text in texts]
        windows = [plan_windows(len(enc.ids), size, self.stride) if enc.ids else [] for enc in encodings]
        inputs = [
            (t, w, self._before + encodings[t].ids[win.start : win.start + win.size] + self._after)
            for t, wins in enumerate(windows)
            for w, win in enumerate(wins)
        ]
        probabilities: dict[tuple[int, int], np.ndarray] = {}
        for batch in sorted_batches(
            [len(x[2]) for x in inputs], batch_size, SERVING_BATCH_TOKENS, CALL_COST[self.backend]
        ):
            rows = [inputs[i] for i in batch]
            ids = [r[2] for r in rows]
            arrays = pad_inputs(ids, [[0] * len(x) for x in ids], self._tokenizer.pad_token_id or 0)
            probs = _softmax(self._runner(arrays))  # (batch, seq, num_labels)
            for (t, w, x), p in zip(rows, probs):
                probabilities[t, w] = p[: len(x)]
        out = []
        for t, (enc, wins) in enumerate(zip(encodings, windows)):
            if not wins:
                out.append((enc, np.zeros((0, len(self.labels)), dtype=np.float32)))
                continue
            merged = merge_window_logits(
                [probabilities[t, w] for w in range(len(wins))], wins, len(enc.ids), len(self._before)
            )  # (tokens, num_labels)
            out.append((enc, merged[enc.first_tokens]))  # (units, num_labels)
        return out

    def predict(self, texts: Sequence[str], batch_size: int | None = None) -> list[list[dict[str, Any]]]:
        """Entities of each text, in input order.

        Args:
            texts: the texts.
            batch_size: windows per forward pass (default 64).

        Returns:
            Per text, a list of ``{"start", "end", "label", "text", "score"}``: character offsets into the
            text (end exclusive, so ``text[start:end]`` is the entity) and the mean probability of the
            entity's word tags.
        """
        results = []
        for enc, word_probs in self.unit_probabilities(texts, batch_size):
            if not len(word_probs):
                results.append([])
                continue
            best = word_probs.argmax(-1)
            tags = [self.labels[i] for i in best.tolist()]
            spans = []
            for label, first, last in tags_to_entities(tags):
                start, end = enc.word_spans[first][0], enc.word_spans[last][1]
                score = float(word_probs[np.arange(first, last + 1), best[first : last + 1]].mean())
                spans.append({"start": start, "end": end, "label": label, "text": enc.text[start:end], "score": score})
            results.append(spans)
        return results


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float32."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return exp / exp.sum(axis=-1, keepdims=True)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise DomainfitError("expected a list of texts, got one string", fix="wrap it in a list: predict([text]).")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DomainfitError(f"text {i} is a {type(text).__name__}, not a string: {text!r:.80}")
    return texts


def load_token_predictor(
    model_dir: Path,
    *,
    backend: str = "auto",
    num_threads: int | None = None,
    max_chars: int | None = None,
    model_process: str = "off",
) -> TokenPredictor:
    """Load a checked model folder whose ``domainfit.json`` says ``task: token-classification``.

    ``backend`` is one of ``BACKENDS``; "auto" serves the int8 ONNX model if ``domainfit export`` found it
    keeps PyTorch's tags, else the fp32 ONNX model if exported, else PyTorch fp32. ``model_process`` as for
    :func:`domainfit.load` (the PyTorch backend in a worker process under "auto").
    """
    resolved = resolve_task_backend(model_dir, backend, BACKENDS, "token classification")
    settings = read_folder_settings(model_dir)
    labels = read_labels(model_dir)
    tokenizer = load_hf_tokenizer(model_dir)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError("token classification needs a fast tokenizer (tokenizer.json)", path=model_dir)
    for key, minimum in (("max_length", 8), ("stride", 0)):
        value = settings.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ModelError(
                f"{key} must be an integer >= {minimum}, found {value!r}", path=model_dir / SETTINGS_FILE, key=key
            )
    label_unit = settings.get("label_unit", "words")  # folders from before span data was labelled per token
    if label_unit not in UNITS:
        raise ModelError(
            f"label_unit must be one of {', '.join(UNITS)}, found {label_unit!r}",
            path=model_dir / SETTINGS_FILE,
            key="label_unit",
        )
    runner = runner_for(model_dir, resolved, num_threads, model_process, kind="token")
    return TokenPredictor(
        runner,
        tokenizer,
        labels,
        max_length=settings["max_length"],
        stride=settings["stride"],
        max_chars=max_chars,
        label_unit=label_unit,
        backend=resolved,
    )


def create_token_runner(model_dir: Path, backend: str, num_threads: int | None) -> Runner:
    """The runner of a resolved token-classification ``backend``: logits (batch, tokens, tags)."""
    if backend in ONNX_FILES:
        return onnx_runner(model_dir, backend, num_threads)
    return TorchRunner(load_token_model(model_dir, num_threads=num_threads))


def load_token_model(model_dir: Path, *, num_threads: int | None = None, attn_implementation: str = "sdpa") -> Any:
    """The folder's ``AutoModelForTokenClassification`` in fp32 eval mode."""
    import torch
    from transformers import AutoModelForTokenClassification

    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        try:
            model = AutoModelForTokenClassification.from_pretrained(
                model_dir, dtype=torch.float32, attn_implementation=attn_implementation
            )
        except ValueError:  # this architecture has no such attention implementation
            model = AutoModelForTokenClassification.from_pretrained(model_dir, dtype=torch.float32)
    except OSError as e:
        raise ModelError(
            f"cannot load the PyTorch model: {e}",
            path=model_dir,
            fix="the folder needs model.safetensors; or use backend='onnx' after domainfit export.",
        ) from e
    return model.eval()


def write_span_predictions(
    predictor: TokenPredictor, texts: list[str], out: Path, batch_size: int | None = None
) -> int:
    """Write each text's entities to ``out`` atomically: JSON Lines ``{"text", "entities"}`` (readable back as
    span training data), or for a ``.csv`` name the columns text, entities (as JSON). Returns the count."""
    results = predictor.predict(texts, batch_size=batch_size)
    with write_output(out, newline="") as f:
        if out.suffix.lower() == ".csv":
            writer = csv.writer(f)
            writer.writerow(["text", "entities"])
            for text, spans in zip(texts, results):
                writer.writerow([text, json.dumps(spans, ensure_ascii=False)])
        else:
            for text, spans in zip(texts, results):
                f.write(json.dumps({"text": text, "entities": spans}, ensure_ascii=False) + "\n")
    return len(results)


PREDICTORS.register(TASK, load_token_predictor)
RUNNER_KINDS.register("token", create_token_runner)  # (batch, tokens, tags)
