"""Prediction from a multi-label model folder: the labels above their thresholds, and every probability.

    import domainfit
    predictor = domainfit.load("runs/ncbi-multilabel/model")     # domainfit.json says the task
    predictor.predict(["Germline BRCA1 mutations in breast cancer ."])
    # [{'labels': ['cancer'], 'probabilities': {'cancer': 0.93, 'tumor': 0.04, ...}}]

    domainfit predict runs/ncbi-multilabel/model notes.csv --output predictions.csv

The per-label thresholds tuned on the validation set at training time are read from ``domainfit.json``;
tokenising, length-sorted batching and the backends are those of the text classifier
(:mod:`~domainfit.serving.tokenizing`, :mod:`~domainfit.serving.backends`).
After ``domainfit export`` the ONNX backends serve it too, and "auto" picks them as for single-label
models, judged by how often the label set at the stored thresholds stayed the same.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from domainfit.data.lengths import SERVING_BATCH_TOKENS, sorted_batches
from domainfit.errors import DomainfitError, ModelError
from domainfit.metrics.multilabel import sigmoid
from domainfit.models.folder import SETTINGS_FILE, folder_task, read_folder_settings
from domainfit.serving.backends import (
    CALL_COST,
    DEFAULT_BATCH_SIZE,
    SPLIT_BACKEND,
    resolve_task_backend,
)
from domainfit.serving.files import write_output
from domainfit.serving.model_folder import check_model_dir, read_json
from domainfit.serving.model_process import runner_for
from domainfit.serving.registry import PREDICTORS
from domainfit.serving.runners import Runner, RunnerOwner
from domainfit.serving.text_cap import cap_texts, check_max_chars, default_max_chars
from domainfit.serving.tokenizing import FastTokenizer, load_hf_tokenizer, pad_inputs

TASK = "multi-label-classification"
BACKENDS = ("auto", "torch", "torch-bf16", "onnx", "onnx-int8", SPLIT_BACKEND)


class MultiLabelPredictor(RunnerOwner):
    """Gives each text the set of labels whose probability reaches the label's threshold.

    Attributes:
        labels: label names, in the order of the probability columns.
        thresholds: (num_labels,) decision thresholds, from ``domainfit.json``.
        backend: one of ``BACKENDS`` but "auto".
        label_separator: how the CLI joins a text's labels in one CSV cell (and splits them when evaluating).
        default_threshold: the untuned threshold, reported beside the tuned ones by :func:`evaluate_file`.
        max_chars: texts are cut to this many characters before tokenising (see
            :mod:`domainfit.serving.text_cap`).
    """

    def __init__(
        self,
        runner: Runner,
        tokenizer: FastTokenizer,
        labels: list[str],
        thresholds: np.ndarray,
        *,
        text_prefix: str,
        backend: str,
        label_separator: str,
        default_threshold: float = 0.5,
        max_chars: int | None = None,
    ) -> None:
        check_max_chars(max_chars)
        self._runner = runner
        self._tokenizer = tokenizer
        self.labels = labels
        self.thresholds = thresholds
        self.text_prefix = text_prefix
        self.backend = backend
        self.label_separator = label_separator
        self.default_threshold = default_threshold
        self.max_chars = max_chars or default_max_chars(tokenizer.max_length, windows=False)

    def __repr__(self) -> str:
        return f"MultiLabelPredictor(backend={self.backend!r}, labels={self.labels})"

    def with_runner(self, runner: Runner, backend: str) -> MultiLabelPredictor:
        """The same predictor on another backend (the exporter compares backends with it)."""
        return MultiLabelPredictor(
            runner,
            self._tokenizer,
            self.labels,
            self.thresholds,
            text_prefix=self.text_prefix,
            backend=backend,
            label_separator=self.label_separator,
            default_threshold=self.default_threshold,
            max_chars=self.max_chars,
        )

    def predict_proba(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Per-label probabilities, shape (len(texts), len(labels)), float32, rows in input order."""
        if isinstance(texts, str):
            raise DomainfitError("expected a list of texts, got one string", fix="wrap it in a list: predict([text]).")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise DomainfitError(f"text {i} is not a non-empty string: {text!r:.80}", fix="drop empty texts.")
        texts = cap_texts(texts, self.max_chars, reads=f"its first {self._tokenizer.max_length} tokens")
        batch_size = batch_size or DEFAULT_BATCH_SIZE[self.backend]
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DomainfitError(f"batch_size must be a positive integer, got {batch_size!r}")
        probabilities = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return probabilities
        ids, type_ids = self._tokenizer([self.text_prefix + t for t in texts])
        for rows in sorted_batches(
            [len(x) for x in ids], batch_size, SERVING_BATCH_TOKENS, CALL_COST[self.backend]
        ):  # little padding
            inputs = pad_inputs([ids[i] for i in rows], [type_ids[i] for i in rows], self._tokenizer.pad_id)
            probabilities[rows] = sigmoid(self._runner(inputs))  # (batch, num_labels)
        return probabilities

    def predict(self, texts: Sequence[str], batch_size: int | None = None) -> list[dict[str, Any]]:
        """One dict per text: ``labels`` (those at or above their threshold, most probable first) and
        ``probabilities`` ({label: probability})."""
        probabilities = self.predict_proba(texts, batch_size=batch_size)
        results = []
        for row in probabilities:
            chosen = sorted(np.flatnonzero(row >= self.thresholds), key=lambda i: -row[i])
            results.append(
                {"labels": [self.labels[i] for i in chosen], "probabilities": dict(zip(self.labels, row.tolist()))}
            )
        return results


def write_predictions_csv(
    out: Path, texts: Sequence[str], results: list[dict[str, Any]], predictor: MultiLabelPredictor
) -> None:
    """Write ``text, labels, p_<label>...`` (labels joined by the model's separator), atomically."""
    with write_output(out, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "labels", *[f"p_{label}" for label in predictor.labels]])
        for text, result in zip(texts, results):
            writer.writerow(
                [
                    text,
                    predictor.label_separator.join(result["labels"]),
                    *[f"{result['probabilities'][label]:.6f}" for label in predictor.labels],
                ]
            )


def evaluate_file(
    model_dir: str | Path,
    data: str | Path,
    out_dir: Path,
    *,
    backend: str = "auto",
    batch_size: int | None = None,
    max_chars: int | None = None,
    **reading: Any,
) -> dict[str, Any]:
    """Score a multi-label model folder on a labelled file: ``out_dir/metrics.json`` and ``report.md``.

    ``domainfit evaluate`` calls this for multi-label folders. Labels are split with the model's own
    separator; a label the model does not know is an error. ``reading`` takes the options of
    :func:`~domainfit.data.multilabel.read_multilabel_examples` (format, text_column, ...).

    Returns:
        The metrics (as :func:`~domainfit.metrics.multilabel.score_with_thresholds`).
    """
    from domainfit.data.multilabel import MultiLabelSet, read_multilabel_examples
    from domainfit.evaluation.multilabel_report import write_multilabel_report
    from domainfit.io.atomic import write_text_atomic
    from domainfit.metrics.multilabel import score_with_thresholds

    predictor = load_multilabel(model_dir, backend=backend, max_chars=max_chars)
    label_set = MultiLabelSet(predictor.labels)
    examples = read_multilabel_examples(data, label_separator=predictor.label_separator, **reading)
    examples = label_set.check(examples, data, policy="error")
    probs = predictor.predict_proba([e.text for e in examples], batch_size=batch_size)  # (n, num_labels)
    gold = np.array([label_set.multi_hot(e) for e in examples])  # (n, num_labels)
    metrics = score_with_thresholds(probs, gold, predictor.labels, predictor.thresholds, predictor.default_threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        out_dir / "metrics.json",
        json.dumps({"data": str(data), "model": str(model_dir), **metrics}, indent=1, ensure_ascii=False),
    )
    write_multilabel_report(
        out_dir,
        metrics,
        title=f"Evaluation of {model_dir} on {data}",
        split_name=Path(data).name,
        context={"model": str(model_dir), "data": str(data), "backend": predictor.backend},
    )
    return metrics


def read_task(model_dir: Path) -> str:
    """The ``task`` named in the folder's ``domainfit.json`` (text-classification if absent)."""
    return folder_task(model_dir)


def load_multilabel(
    model_dir: str | Path,
    *,
    backend: str = "auto",
    num_threads: int | None = None,
    max_chars: int | None = None,
    model_process: str = "off",
) -> MultiLabelPredictor:
    """Load a multi-label model folder written by ``domainfit train`` (see :class:`MultiLabelPredictor`)."""
    path = check_model_dir(model_dir)
    resolved = resolve_task_backend(path, backend, BACKENDS, "multi-label models")
    settings_path = path / SETTINGS_FILE
    settings = read_folder_settings(path)
    labels = settings.get("labels")
    thresholds = settings.get("thresholds")
    if not isinstance(labels, list) or not isinstance(thresholds, dict) or set(thresholds) != set(labels):
        raise ModelError(
            "domainfit.json must list the labels and a threshold for each of them",
            path=settings_path,
            key="thresholds",
            fix="retrain with domainfit, or write {label: threshold} for every label.",
        )
    bad = {label: t for label, t in thresholds.items() if not isinstance(t, (int, float)) or not 0 < t <= 1}
    if bad:
        raise ModelError(f"thresholds must be numbers in (0, 1], found {bad}", path=settings_path, key="thresholds")
    config = read_json(path / "config.json")
    if [config.get("id2label", {}).get(str(i)) for i in range(len(labels))] != labels:
        raise ModelError(
            "the labels in domainfit.json do not match config.json's id2label",
            path=settings_path,
            key="labels",
            fix="the folder was edited by hand: retrain or restore both files.",
        )
    hf_tokenizer = load_hf_tokenizer(path)
    max_length = int(settings.get("max_length", min(getattr(hf_tokenizer, "model_max_length", 512), 512)))
    runner = runner_for(path, resolved, num_threads, model_process)
    return MultiLabelPredictor(
        runner,
        FastTokenizer(hf_tokenizer, max_length),
        labels,
        np.array([float(thresholds[label]) for label in labels], dtype=np.float32),
        text_prefix=str(settings.get("text_prefix", "")),
        backend=resolved,
        label_separator=str(settings.get("label_separator", ";")),
        default_threshold=float(settings.get("default_threshold", 0.5)),
        max_chars=max_chars,
    )


PREDICTORS.register(TASK, load_multilabel)
