"""Text classification: one label per text (disease type from a clinical note, sentiment of a news line).

Reads the configured files, deduplicates and splits, checks labels, fine-tunes
``AutoModelForSequenceClassification`` with cross-entropy, and writes a standard Hugging Face folder
that ``transformers.pipeline("text-classification", model=DIR)`` loads without domainfit.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domainfit import __version__
from domainfit.config import DataConfig, RunConfig
from domainfit.data.batching import pad_batch
from domainfit.data.labels import LabelMap
from domainfit.data.readers import Example, read_examples
from domainfit.data.splits import deduplicate, find_overlap, split_examples
from domainfit.evaluation.metrics import classification_metrics
from domainfit.models.loading import load_pretrained, load_tokenizer
from domainfit.objectives import create_objective
from domainfit.tasks.base import TASKS, Features, TaskData

log = logging.getLogger(__name__)


def read_split(path: str, data: DataConfig, *, require_labels: bool = True) -> list[Example]:
    """Read one labelled file with the reading options of ``data``."""
    return read_examples(
        path,
        format=data.format,
        text_column=data.text_column,
        label_column=data.label_column,
        separator=data.separator,
        encoding=data.encoding,
        header=data.header,
        require_labels=require_labels,
    )


def load_classification_splits(data: DataConfig) -> TaskData:
    """Read train (and validation/test, or split them off), dedup, build and check the label map."""
    info: dict[str, Any] = {"files": {}}
    train = read_split(data.train, data)
    info["files"]["train"] = data.train
    given = {}
    for name in ("validation", "test"):
        path = getattr(data, name)
        if path:
            given[name] = read_split(path, data)
            info["files"][name] = path
    if "validation" in given:
        train, report = deduplicate(train, path=data.train)
        splits = {"train": train, **given}
    else:
        test_fraction = 0.0 if "test" in given else data.test_fraction
        splits = split_examples(
            train, val_fraction=data.validation_fraction, test_fraction=test_fraction,
            seed=data.split_seed, stratify=data.stratify, path=data.train,
        )
        _, report = deduplicate(train, path=data.train)
        splits.update(given)
        info["split"] = {"from": data.train, "validation_fraction": data.validation_fraction,
                         "test_fraction": test_fraction, "seed": data.split_seed, "stratified": data.stratify}
    info["dedup"] = {"rows_read": report.n_in, "unique": report.n_out, "duplicates_removed": report.n_duplicates,
                     "conflicting_labels": report.n_conflicting}
    overlap = find_overlap(splits)
    if overlap:
        log.warning("%d texts appear in more than one split, e.g. %s; scores on those splits are optimistic.",
                    len(overlap), overlap[0].describe(info["files"]))
        info["overlap_between_splits"] = len(overlap)
    if data.max_train_samples is not None:
        splits["train"] = splits["train"][: data.max_train_samples]
    label_map = LabelMap.from_examples(splits["train"], path=data.train)
    for name in ("validation", "test"):
        if name in splits:
            label_map.check(splits[name], info["files"].get(name, data.train))
    info["counts"] = {name: len(examples) for name, examples in splits.items()}
    return TaskData(splits=splits, labels=label_map.labels, info=info)


@TASKS.register("text-classification")
class TextClassificationTask:
    """Single-label classification of texts with a pretrained encoder and a linear head."""

    name = "text-classification"

    def load_data(self, cfg: RunConfig) -> TaskData:
        return load_classification_splits(cfg.data)

    def build(self, cfg: RunConfig, data: TaskData) -> tuple[nn.Module, Any]:
        from transformers import AutoModelForSequenceClassification

        tokenizer = load_tokenizer(cfg.model.name)
        kwargs: dict[str, Any] = {
            "num_labels": len(data.labels),
            "id2label": dict(enumerate(data.labels)),
            "label2id": {label: i for i, label in enumerate(data.labels)},
            "attn_implementation": cfg.model.attn_implementation,
        }
        if cfg.model.dropout is not None:
            kwargs["hidden_dropout_prob"] = cfg.model.dropout
        model = load_pretrained(AutoModelForSequenceClassification.from_pretrained, cfg.model.name, **kwargs)
        # a fine-tuned folder may come with another head size: from_pretrained re-creates it, which is what we want
        return model, tokenizer

    def encode(self, examples: list[Example], tokenizer: Any, cfg: RunConfig, data: TaskData) -> Features:
        label_ids = {label: i for i, label in enumerate(data.labels)}
        texts = [cfg.model.text_prefix + e.text for e in examples]
        ids = tokenizer(texts, truncation=True, max_length=cfg.model.max_length)["input_ids"]
        items = [{"input_ids": x, "labels": label_ids[e.label]} for x, e in zip(ids, examples)]
        return Features(items=items, lengths=[len(x) for x in ids])

    def collate(self, items: list[dict[str, Any]], tokenizer: Any, *, train: bool = False) -> dict[str, torch.Tensor]:
        input_ids = pad_batch([it["input_ids"] for it in items], tokenizer.pad_token_id)  # (batch, seq)
        lengths = torch.tensor([len(it["input_ids"]) for it in items])
        attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "labels": torch.tensor([it["labels"] for it in items])}

    def create_objective(self, cfg: RunConfig, data: TaskData) -> nn.Module:
        from domainfit.objectives.joint_mlm import wrap_with_joint_mlm

        return wrap_with_joint_mlm(create_objective("cross-entropy"), cfg, data.splits["train"])  # unchanged unless joint.enabled

    def compute_metrics(self, logits: torch.Tensor, labels: torch.Tensor, data: TaskData) -> dict[str, Any]:
        return classification_metrics(labels.tolist(), logits.argmax(-1).tolist(), data.labels)

    def save(self, model: nn.Module, tokenizer: Any, cfg: RunConfig, data: TaskData, out_dir: Path) -> None:
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        meta = {"task": self.name, "max_length": cfg.model.max_length, "text_prefix": cfg.model.text_prefix,
                "base_model": cfg.model.name, "labels": data.labels, "domainfit_version": __version__}
        (out_dir / "domainfit.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
