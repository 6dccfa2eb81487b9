"""Multi-label text classification: a set of labels per text (the codes of a clinical note, possibly none).

    domainfit train src/domainfit/configs/ncbi_multilabel.yaml

Reads label lists (JSON) or separator-joined label strings (CSV/TSV), deduplicates, splits at random with
a seed (stratification by one label does not apply to label sets), fine-tunes
``AutoModelForSequenceClassification`` with ``problem_type="multi_label_classification"`` (one sigmoid per
label) under the ``bce`` objective, tunes a decision threshold per label on the validation set, and
writes a Hugging Face folder whose ``domainfit.json`` holds the thresholds that ``domainfit predict`` and
``domainfit.load`` apply.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from domainfit.config import RunConfig
from domainfit.data.batching import pad_batch
from domainfit.data.multilabel import (
    MultiLabelExample,
    MultiLabelSet,
    label_statistics,
    read_multilabel_examples,
)
from domainfit.data.splits import make_splits
from domainfit.metrics.multilabel import score_with_thresholds, sigmoid, tune_thresholds
from domainfit.models.folder import write_folder_settings
from domainfit.models.loading import freeze_word_embeddings, load_pretrained, load_tokenizer
from domainfit.objectives import create_objective
from domainfit.objectives.binary_cross_entropy import positive_weights
from domainfit.tasks.base import TASKS, Features, Task, TaskData
from domainfit.version import __version__

log = logging.getLogger(__name__)

TASK_NAME = "multi-label-classification"


def read_split(path: str, cfg: RunConfig, skipped: list[int] | None = None) -> list[MultiLabelExample]:
    """Read one multi-label file with the reading options of ``cfg.data`` and ``cfg.multi_label``; ``skipped``
    collects the lines left out as empty texts (``data.skip_empty``)."""
    d = cfg.data
    return read_multilabel_examples(
        path,
        label_separator=cfg.multi_label.label_separator,
        format=d.format,
        text_column=d.text_column,
        label_column=d.label_column,
        separator=d.separator,
        encoding=d.encoding,
        header=d.header,
        skip_empty=d.skip_empty,
        skipped=skipped,
    )


def load_multilabel_splits(cfg: RunConfig) -> TaskData:
    """Read train (and validation/test, or split them off at random), dedup, build and check the label set."""
    data = cfg.data
    info: dict[str, Any] = {"files": {"train": data.train}}
    skipped: dict[str, list[int]] = {"train": []}
    train = read_split(data.train, cfg, skipped["train"])
    given = {}
    for name in ("validation", "test"):
        path = getattr(data, name)
        if path:
            given[name] = read_split(path, cfg, skipped.setdefault(name, []))
            info["files"][name] = path
    if data.skip_empty:
        info["empty_texts_skipped"] = {name: len(lines) for name, lines in skipped.items()}
    # Stratifying by the whole label set would leave most sets in one split: a seeded random split, so a rare
    # label may miss a split (see multi_label.unseen_labels).
    splits = make_splits(train, given, data, info, stratify=False)
    label_set = MultiLabelSet.from_examples(splits["train"], path=data.train)
    for name in ("validation", "test"):
        if name in splits:
            splits[name] = label_set.check(
                splits[name], info["files"].get(name, data.train), policy=cfg.multi_label.unseen_labels
            )
    info["counts"] = {name: len(examples) for name, examples in splits.items()}
    info["label_statistics"] = {name: label_statistics(examples) for name, examples in splits.items()}
    return TaskData(splits=splits, labels=label_set.labels, info=info)


@TASKS.register(TASK_NAME)
class MultiLabelClassificationTask(Task):
    """A set of labels per text: a pretrained encoder, one sigmoid per label, per-label thresholds.

    Thresholds: until :meth:`calibrate` runs (the loop calls it with the best weights' validation
    predictions), every evaluation tunes the thresholds on the split it scores, which during training is
    the validation split, so the selection metric measures the model as it will be shipped. After it,
    the validation thresholds are fixed and applied to every split (the test scores are honest).
    """

    name = TASK_NAME
    sections = frozenset({"multi_label"})
    calibrates = True

    def __init__(self) -> None:
        self.thresholds: np.ndarray | None = None
        self._settings: Any = None  # the run's MultiLabelConfig, set in load_data

    def load_data(self, cfg: RunConfig) -> TaskData:
        self._settings = cfg.multi_label
        return load_multilabel_splits(cfg)

    def build(self, cfg: RunConfig, data: TaskData) -> tuple[nn.Module, Any]:
        from transformers import AutoModelForSequenceClassification

        tokenizer = load_tokenizer(cfg.model.name)
        kwargs: dict[str, Any] = {
            "num_labels": len(data.labels),
            "id2label": dict(enumerate(data.labels)),
            "label2id": {label: i for i, label in enumerate(data.labels)},
            "problem_type": "multi_label_classification",  # transformers' pipeline then applies a sigmoid
            "attn_implementation": cfg.model.attn_implementation,
            # a fine-tuned folder with another head size gets a new head (transformers 5 raises otherwise)
            "ignore_mismatched_sizes": True,
        }
        if cfg.model.dropout is not None:
            kwargs["hidden_dropout_prob"] = cfg.model.dropout
        model = load_pretrained(AutoModelForSequenceClassification.from_pretrained, cfg.model.name, **kwargs)
        if cfg.model.freeze_embeddings:
            freeze_word_embeddings(model)
        return model, tokenizer

    def encode(self, examples: list[MultiLabelExample], tokenizer: Any, cfg: RunConfig, data: TaskData) -> Features:
        label_set = MultiLabelSet(data.labels)
        texts = [cfg.model.text_prefix + e.text for e in examples]
        ids = tokenizer(texts, truncation=True, max_length=cfg.model.max_length)["input_ids"]
        items = [{"input_ids": x, "labels": label_set.multi_hot(e)} for x, e in zip(ids, examples)]
        return Features(items=items, lengths=[len(x) for x in ids])

    def collate(self, items: list[dict[str, Any]], tokenizer: Any, *, train: bool = False) -> dict[str, torch.Tensor]:
        input_ids = pad_batch([it["input_ids"] for it in items], tokenizer.pad_token_id)  # (batch, seq)
        lengths = torch.tensor([len(it["input_ids"]) for it in items])
        attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        labels = torch.tensor([it["labels"] for it in items], dtype=torch.float32)  # (batch, num_labels)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def create_objective(self, cfg: RunConfig, data: TaskData) -> nn.Module:
        pos_weight = None
        if cfg.multi_label.pos_weight:
            label_set = MultiLabelSet(data.labels)
            multi_hot = torch.tensor([label_set.multi_hot(e) for e in data.splits["train"]])  # (n, num_labels)
            pos_weight = positive_weights(multi_hot, max_weight=cfg.multi_label.max_pos_weight)
            data.info["pos_weight"] = dict(zip(data.labels, [round(w, 3) for w in pos_weight.tolist()]))
        return create_objective("bce", pos_weight=pos_weight)

    def calibrate(self, logits: torch.Tensor, labels: torch.Tensor, data: TaskData) -> None:
        """Fix the per-label thresholds from the best weights' validation predictions."""
        self.thresholds = self._fit(sigmoid(logits.numpy()), labels.numpy())
        data.info["thresholds"] = dict(zip(data.labels, self.thresholds.tolist()))

    def compute_metrics(self, logits: torch.Tensor, labels: torch.Tensor, data: TaskData) -> dict[str, Any]:
        probs, gold = sigmoid(logits.numpy()), labels.numpy()  # (n, num_labels) each
        thresholds = self.thresholds if self.thresholds is not None else self._fit(probs, gold)
        return score_with_thresholds(probs, gold, data.labels, thresholds, self._config().threshold)

    def _fit(self, probs: np.ndarray, gold: np.ndarray) -> np.ndarray:
        settings = self._config()
        if not settings.tune_thresholds:
            return np.full(gold.shape[1], settings.threshold)
        return tune_thresholds(
            probs,
            gold,
            step=settings.threshold_step,
            default=settings.threshold,
            min_positives=settings.min_tune_positives,
        )

    def _config(self) -> Any:
        if self._settings is None:  # used without load_data (a notebook scoring saved logits)
            from domainfit.config import MultiLabelConfig

            self._settings = MultiLabelConfig()
        return self._settings

    def save(self, model: nn.Module, tokenizer: Any, cfg: RunConfig, data: TaskData, out_dir: Path) -> None:
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        thresholds = (
            self.thresholds if self.thresholds is not None else np.full(len(data.labels), cfg.multi_label.threshold)
        )
        meta = {
            "task": self.name,
            "max_length": cfg.model.max_length,
            "text_prefix": cfg.model.text_prefix,
            "base_model": cfg.model.name,
            "labels": data.labels,
            "thresholds": dict(zip(data.labels, [float(t) for t in thresholds])),
            "default_threshold": cfg.multi_label.threshold,
            "thresholds_tuned_on": "validation" if cfg.multi_label.tune_thresholds else None,
            "label_separator": cfg.multi_label.label_separator,
            "domainfit_version": __version__,
        }
        write_folder_settings(out_dir, meta)
