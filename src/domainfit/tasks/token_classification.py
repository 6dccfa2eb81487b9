"""Token classification (named-entity recognition): disease mentions in abstracts, symptoms in Chinese notes.

    domainfit train src/domainfit/configs/ncbi_disease.yaml

Reads CoNLL/IOB files or JSON/JSONL character-offset spans (``data.ner_readers``), labels the first subword
of every word (CoNLL training data) or every token by the characters it covers (span training data;
``data.token_alignment``), cuts sentences longer than ``model.max_length`` into overlapping windows and
merges the windows' predictions back, fine-tunes ``AutoModelForTokenClassification`` with token
cross-entropy, scores entities by their character spans with seqeval (strict IOB2), and writes a standard
Hugging Face folder that ``transformers.pipeline("token-classification", model=DIR)`` loads without domainfit.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from domainfit.config import RunConfig
from domainfit.data.batching import pad_batch
from domainfit.data.ner_readers import NerExample, SpanKeys, read_ner_examples
from domainfit.data.token_alignment import (
    IGNORE,
    SentenceEncoding,
    decode_entities,
    encode_sentence,
    merge_window_logits,
    plan_windows,
    special_tokens,
)
from domainfit.errors import DataError
from domainfit.metrics.ner import entity_metrics
from domainfit.models.folder import write_folder_settings
from domainfit.models.loading import freeze_word_embeddings, load_pretrained, load_tokenizer
from domainfit.objectives import create_objective
from domainfit.tasks.base import TASKS, Features, Task, TaskData
from domainfit.version import __version__

log = logging.getLogger(__name__)

MAX_ERROR_EXAMPLES = 8  # of each kind (missed, spurious) kept in the metrics for the report


def read_ner_split(path: str, cfg: RunConfig) -> list[NerExample]:
    """Read one file with the reading options of ``cfg.ner`` and ``cfg.data.encoding``."""
    ner = cfg.ner
    keys = SpanKeys(
        text=ner.text_key,
        entities=ner.entities_key,
        start=ner.start_key,
        end=ner.end_key,
        label=ner.label_key,
        end_inclusive=ner.end_inclusive,
    )
    return read_ner_examples(
        path,
        format=ner.format,
        encoding=cfg.data.encoding,
        tag_scheme=ner.tag_scheme,
        keys=keys,
        overlapping_spans=ner.overlapping_spans,
    )


def load_ner_splits(cfg: RunConfig) -> TaskData:
    """Read train (and validation/test, or split them off at random), and build the IOB2 label list."""
    data = cfg.data
    info: dict[str, Any] = {"files": {"train": data.train}}
    splits = {"train": read_ner_split(data.train, cfg)}
    for name in ("validation", "test"):
        path = getattr(data, name)
        if path:
            splits[name] = read_ner_split(path, cfg)
            info["files"][name] = path
    if "validation" not in splits:
        # sentences, not entity types, are the unit: a seeded shuffle (stratifying by a type set is ill-defined)
        shuffled = list(splits["train"])
        random.Random(data.split_seed).shuffle(shuffled)
        n_val = max(1, round(len(shuffled) * data.validation_fraction))
        n_test = 0 if "test" in splits else round(len(shuffled) * data.test_fraction)
        splits["validation"] = shuffled[:n_val]
        if n_test:
            splits["test"] = shuffled[n_val : n_val + n_test]
        splits["train"] = shuffled[n_val + n_test :]
        info["split"] = {
            "from": data.train,
            "validation_fraction": data.validation_fraction,
            "test_fraction": 0.0 if not n_test else data.test_fraction,
            "seed": data.split_seed,
        }
    if data.max_train_samples is not None:
        splits["train"] = splits["train"][: data.max_train_samples]
    types = sorted({span.label for e in splits["train"] for span in e.spans})
    if not types:
        raise DataError(
            "the training data holds no entities",
            path=data.train,
            fix="tag entities as B-TYPE/I-TYPE (CoNLL) or give spans (JSON); check ner.format.",
        )
    for name in ("validation", "test"):
        for example in splits.get(name, []):
            unseen = [s.label for s in example.spans if s.label not in types]
            if unseen:
                raise DataError(
                    f"entity type {unseen[0]!r} does not occur in the training data (types: {', '.join(types)})",
                    path=info["files"].get(name, data.train),
                    line=example.line,
                    fix="add training examples of this type, or remove it here.",
                )
    info["counts"] = {name: len(examples) for name, examples in splits.items()}
    info["label_unit"] = label_unit(splits["train"])
    info["entities"] = {
        name: dict(Counter(s.label for e in examples for s in e.spans)) for name, examples in splits.items()
    }
    labels = ["O"] + [f"{prefix}-{t}" for t in types for prefix in ("B", "I")]
    return TaskData(splits=splits, labels=labels, info=info)


def label_unit(train: list[NerExample]) -> str:
    """ "words" for CoNLL training data (its words are the gold units), "tokens" for character-offset spans
    (labelled by the characters each token covers: a tokenizer's words can be far longer than an entity)."""
    return "words" if all(example.words is not None for example in train) else "tokens"


def entity_types(labels: list[str]) -> list[str]:
    """Entity types of an IOB2 label list, in order."""
    return [label[2:] for label in labels if label.startswith("B-")]


@TASKS.register("token-classification")
class TokenClassificationTask(Task):
    """A label per word (IOB2), scored as entities, with a pretrained encoder and a linear head per token."""

    name = "token-classification"
    sections = frozenset({"ner"})

    def load_data(self, cfg: RunConfig) -> TaskData:
        return load_ner_splits(cfg)

    def build(self, cfg: RunConfig, data: TaskData) -> tuple[nn.Module, Any]:
        from transformers import AutoModelForTokenClassification

        tokenizer = load_tokenizer(cfg.model.name)
        if not getattr(tokenizer, "is_fast", False):
            raise DataError(
                f"token classification needs a fast tokenizer (with offsets); {cfg.model.name!r} has only a slow one",
                key="model.name",
                fix="use a model whose folder has tokenizer.json.",
            )
        kwargs: dict[str, Any] = {
            "num_labels": len(data.labels),
            "id2label": dict(enumerate(data.labels)),
            "label2id": {label: i for i, label in enumerate(data.labels)},
            "attn_implementation": cfg.model.attn_implementation,
        }
        if cfg.model.dropout is not None:
            kwargs["hidden_dropout_prob"] = cfg.model.dropout
        model = load_pretrained(AutoModelForTokenClassification.from_pretrained, cfg.model.name, **kwargs)
        if cfg.model.freeze_embeddings:
            freeze_word_embeddings(model)
        return model, tokenizer

    def encode(self, examples: list[NerExample], tokenizer: Any, cfg: RunConfig, data: TaskData) -> Features:
        label2id = {label: i for i, label in enumerate(data.labels)}
        before, after = special_tokens(tokenizer)
        size = cfg.model.max_length - len(before) - len(after)
        unit = data.info["label_unit"]
        items, lengths, snapped, windowed = [], [], 0, 0
        for index, example in enumerate(examples):
            if unit == "tokens":
                enc = encode_sentence(tokenizer, example.text, spans=example.spans, label2id=label2id, unit=unit)
            else:
                enc = encode_sentence(
                    tokenizer,
                    example.text,
                    words=example.words,
                    tags=example.tags,
                    spans=None if example.words is not None else example.spans,
                    label2id=label2id,
                    label_all_subwords=cfg.ner.label_all_subwords,
                )
            snapped += enc.snapped
            windows = plan_windows(len(enc.ids), size, cfg.ner.stride)
            windowed += len(windows) > 1
            for window in windows:
                stop = window.start + window.size
                ids = before + enc.ids[window.start : stop] + after
                labels = [IGNORE] * len(before) + enc.labels[window.start : stop] + [IGNORE] * len(after)
                items.append(
                    {
                        "input_ids": ids,
                        "labels": labels,
                        "sentence": index,
                        "window": window,
                        "encoding": enc,
                        "offset": len(before),
                    }
                )
                lengths.append(len(ids))
        if snapped:
            unit_name = "token" if unit == "tokens" else "word"
            log.warning(
                "%d entities start or end inside a %s (or share one with another) and were "
                "widened to whole %ss in training; they are scored by their own character edges",
                snapped,
                unit_name,
                unit_name,
            )
        if windowed:
            log.info(
                "%d of %d sentences are longer than model.max_length=%d tokens: split into overlapping "
                "windows (stride %d)",
                windowed,
                len(examples),
                cfg.model.max_length,
                cfg.ner.stride,
            )
        return Features(items=items, lengths=lengths)

    def collate(self, items: list[dict[str, Any]], tokenizer: Any, *, train: bool = False) -> dict[str, torch.Tensor]:
        input_ids = pad_batch([it["input_ids"] for it in items], tokenizer.pad_token_id)  # (batch, seq)
        lengths = torch.tensor([len(it["input_ids"]) for it in items])
        attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()  # (batch, seq)
        labels = pad_batch([it["labels"] for it in items], IGNORE)  # (batch, seq)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def create_objective(self, cfg: RunConfig, data: TaskData) -> nn.Module:
        return create_objective("token-cross-entropy")

    def compute_metrics(self, logits: torch.Tensor, labels: torch.Tensor, data: TaskData) -> dict[str, Any]:
        """Entity metrics when every row is one whole sentence (labelled positions are its words)."""
        predicted = logits.argmax(-1)  # (n, seq)
        true_tags, pred_tags = [], []
        for row_labels, row_pred in zip(labels.tolist(), predicted.tolist()):
            kept = [(gold, pred) for gold, pred in zip(row_labels, row_pred) if gold != IGNORE]
            true_tags.append([data.labels[g] for g, _ in kept])
            pred_tags.append([data.labels[p] for _, p in kept])
        return entity_metrics(true_tags, pred_tags, entity_types(data.labels))

    def compute_feature_metrics(
        self, features: Features, logits: torch.Tensor, labels: torch.Tensor, data: TaskData
    ) -> dict[str, Any]:
        """Entity metrics per sentence, scored on character spans: windows merged back, each unit's tag
        mapped back to its characters, plus examples of missed and spurious entities.

        Args:
            features: the split's windows (``encode``'s output), in the order of ``logits``' rows.
            logits: (n_windows, seq, num_labels), padded per batch by the loop.
            labels: (n_windows, seq); unused (the gold tags travel with each sentence's encoding).
        """
        sentences = merge_sentences(features, logits.numpy())
        true_tags, pred_tags, true_spans, pred_spans = [], [], [], []
        errors: dict[str, list[dict]] = {"missed": [], "spurious": []}
        for enc, sentence_logits in sentences:
            predicted = sentence_logits[enc.first_tokens].argmax(-1)  # (units,)
            tags = [data.labels[i] for i in predicted.tolist()]
            true_tags.append(enc.tags)
            pred_tags.append(tags)
            true_spans.append(enc.entities)
            pred_spans.append(decode_entities(enc, tags))
            collect_errors(enc, pred_spans[-1], errors)
        metrics = entity_metrics(
            true_tags, pred_tags, entity_types(data.labels), true_spans=true_spans, pred_spans=pred_spans
        )
        metrics["errors"] = errors
        return metrics

    def save(self, model: nn.Module, tokenizer: Any, cfg: RunConfig, data: TaskData, out_dir: Path) -> None:
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        meta = {
            "task": self.name,
            "max_length": cfg.model.max_length,
            "stride": cfg.ner.stride,
            "label_all_subwords": cfg.ner.label_all_subwords,
            "label_unit": data.info["label_unit"],
            "base_model": cfg.model.name,
            "labels": data.labels,
            "entity_types": entity_types(data.labels),
            "domainfit_version": __version__,
        }
        write_folder_settings(out_dir, meta)


def merge_sentences(features: Features, logits: np.ndarray) -> list[tuple[SentenceEncoding, np.ndarray]]:
    """Per sentence (in order): its encoding and merged per-token logits (tokens, num_labels)."""
    grouped: dict[int, list[int]] = {}
    for row, item in enumerate(features.items):
        grouped.setdefault(item["sentence"], []).append(row)
    out = []
    for sentence in sorted(grouped):
        rows = grouped[sentence]
        first = features.items[rows[0]]
        enc = first["encoding"]
        merged = merge_window_logits(
            [logits[r] for r in rows], [features.items[r]["window"] for r in rows], len(enc.ids), first["offset"]
        )
        out.append((enc, merged))
    return out


def collect_errors(enc: SentenceEncoding, predicted: list[tuple[str, int, int]], errors: dict[str, list[dict]]) -> None:
    """Add this sentence's missed (gold, not predicted) and spurious (predicted, not gold) entities, given
    the predicted entities as character spans ``(label, start, end)``."""
    gold = set(enc.entities or [])
    found = set(predicted)
    for kind, entities in (
        ("missed", sorted(gold - found, key=lambda e: e[1])),
        ("spurious", sorted(found - gold, key=lambda e: e[1])),
    ):
        for label, start, end in entities:
            if len(errors[kind]) >= MAX_ERROR_EXAMPLES:
                break
            errors[kind].append(
                {
                    "label": label,
                    "text": enc.text[start:end],
                    "start": start,
                    "end": end,
                    "context": _context(enc.text, start, end),
                }
            )


def _context(text: str, start: int, end: int, width: int = 60) -> str:
    """The entity in its sentence, marked with [[ ]], cut to ``width`` characters either side."""
    left = text[max(0, start - width) : start]
    right = text[end : end + width]
    return (
        ("..." if start > width else "")
        + left
        + "[["
        + text[start:end]
        + "]]"
        + right
        + ("..." if end + width < len(text) else "")
    )
