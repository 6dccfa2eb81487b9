"""Text classification: one label per text (disease type from a clinical note, sentiment of a news line).

Reads the configured files, deduplicates and splits, checks labels, fine-tunes
``AutoModelForSequenceClassification`` with cross-entropy, and writes a standard Hugging Face folder
that ``transformers.pipeline("text-classification", model=DIR)`` loads without domainfit.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domainfit.config import DataConfig, RunConfig
from domainfit.data.augment import Augmenter, create_augmenter, format_samples
from domainfit.data.batching import pad_batch
from domainfit.data.labels import LabelMap
from domainfit.data.readers import read_examples
from domainfit.data.records import Example
from domainfit.data.splits import make_splits, sample_fraction, sample_per_class
from domainfit.data.windows import WindowSettings, encode_windows, special_token_counts
from domainfit.errors import ConfigError
from domainfit.metrics.classification import classification_metrics
from domainfit.metrics.errors import error_examples
from domainfit.models import mlm_augment as _mlm_augment  # noqa: F401  registers the "mlm" augmenter
from domainfit.models.folder import write_folder_settings
from domainfit.models.loading import freeze_word_embeddings, load_pretrained, load_tokenizer
from domainfit.models.peft import apply_peft, parameter_counts, save_model_folder
from domainfit.objectives.compose import build_objective
from domainfit.tasks.base import TASKS, Features, Task, TaskData
from domainfit.tasks.trust import ClassifierTrust, check_evaluation_config
from domainfit.version import __version__

log = logging.getLogger(__name__)


def read_split(
    path: str,
    data: DataConfig,
    *,
    require_labels: bool = True,
    skipped: list[int] | None = None,
    group_column: str | None = None,
) -> list[Example]:
    """Read one labelled file with the reading options of ``data``; ``skipped`` collects the lines left out
    as empty texts (``data.skip_empty``); ``group_column`` is kept as each example's group."""
    return read_examples(
        path,
        format=data.format,
        text_column=data.text_column,
        label_column=data.label_column,
        separator=data.separator,
        encoding=data.encoding,
        header=data.header,
        require_labels=require_labels,
        skip_empty=data.skip_empty,
        skipped=skipped,
        group_column=group_column,
    )


def load_classification_splits(data: DataConfig, group_column: str | None = None) -> TaskData:
    """Read train (and validation/test, or split them off), dedup, build and check the label map."""
    info: dict[str, Any] = {"files": {}}
    skipped: dict[str, list[int]] = {"train": []}
    train = read_split(data.train, data, skipped=skipped["train"], group_column=group_column)
    info["files"]["train"] = data.train
    given = {}
    for name in ("validation", "test"):
        path = getattr(data, name)
        if path:
            given[name] = read_split(path, data, skipped=skipped.setdefault(name, []), group_column=group_column)
            info["files"][name] = path
    if data.skip_empty:
        info["empty_texts_skipped"] = {name: len(lines) for name, lines in skipped.items()}
    splits = make_splits(train, given, data, info, stratify=data.stratify)
    if data.max_train_per_class is not None:
        splits["train"] = sample_per_class(splits["train"], data.max_train_per_class, seed=data.sample_seed)
    if data.train_fraction is not None:
        splits["train"] = sample_fraction(splits["train"], data.train_fraction, seed=data.sample_seed)
    label_map = LabelMap.from_examples(splits["train"], path=data.train)
    for name in ("validation", "test"):
        if name in splits:
            label_map.check(splits[name], info["files"].get(name, data.train))
    info["counts"] = {name: len(examples) for name, examples in splits.items()}
    return TaskData(splits=splits, labels=label_map.labels, info=info)


def encode_long_texts(examples: list[Example], labels: list[int], tokenizer: Any, cfg: RunConfig) -> Features:
    """Features of overlapping windows: every window carries its document's label and index (``groups``)."""
    settings = WindowSettings(
        cfg.model.max_length, cfg.model.window_stride, cfg.model.window_aggregation, *special_token_counts(tokenizer)
    )
    settings.check()
    windows = encode_windows([e.text for e in examples], tokenizer, settings, prefix=cfg.model.text_prefix)
    items = [{"input_ids": w.input_ids, "labels": labels[w.document]} for w in windows]
    if cfg.augment.ops:  # a window's own text, so augmentation keeps the window's place in the document
        for k, (item, w) in enumerate(zip(items, windows)):
            item.update(
                text=examples[w.document].text[w.char_start : w.char_end],
                example_id=k,
                prefix=cfg.model.text_prefix if w.char_start == 0 else "",
            )
    groups = [w.document for w in windows]
    long = sum(1 for count in Counter(groups).values() if count > 1)
    log.info(
        "long texts: %d documents -> %d windows of <= %d tokens, stride %d (%d documents longer than one window)",
        len(examples),
        len(windows),
        settings.max_length,
        settings.step,
        long,
    )
    return Features(
        items=items, lengths=[len(w.input_ids) for w in windows], groups=groups, aggregation=settings.aggregation
    )


def augment_items(
    augmenter: Augmenter, items: list[dict[str, Any]], tokenizer: Any, max_length: int
) -> list[dict[str, Any]]:
    """Training items with augmented text re-tokenised (a fast tokenizer does a batch of 32 in well under 1 ms)."""
    new_texts = augmenter.augment([it["text"] for it in items], [it["example_id"] for it in items])
    changed = [i for i, t in enumerate(new_texts) if t is not None]
    if not changed:
        return items
    texts = [items[i]["prefix"] + new_texts[i] for i in changed]
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    items = list(items)
    for i, x in zip(changed, ids):
        items[i] = {**items[i], "input_ids": x}
    return items


def write_augment_samples(augmenter: Augmenter, train: Features, n: int, out_dir: Path) -> None:
    """Write ``augment_samples.txt`` (original -> augmented, every op in turn) and log it: the remedy is on."""
    if n == 0:
        return
    samples = augmenter.preview([it["text"] for it in train.items], n)
    text = format_samples(samples)
    (out_dir / "augment_samples.txt").write_text(text, encoding="utf-8")
    log.info(
        "augmentation on (ops %s, rate %.2f, alpha %.2f); samples in %s:\n%s",
        ", ".join(augmenter.ops),
        augmenter.rate,
        augmenter.alpha,
        out_dir / "augment_samples.txt",
        text,
    )


@TASKS.register("text-classification")
class TextClassificationTask(Task):
    """Single-label classification of texts with a pretrained encoder and a linear head."""

    name = "text-classification"
    sections = frozenset({"augment", "peft", "regularization", "joint", "evaluation"})
    objectives = ("cross-entropy", "focal")
    long_text_windows = True
    calibrates = True  # temperature and abstention threshold on validation (tasks/trust.py)

    def __init__(self) -> None:
        self.trust = ClassifierTrust()
        # each split's texts by its Features object, so a scored split can name its mistakes (the reports)
        self._texts: dict[int, list[str]] = {}

    def check_own_config(self, cfg: RunConfig, source: Path | None = None) -> None:
        """Names of augmenters, the objective, the adversarial and PEFT methods; what each op needs."""
        from domainfit.data.augment import AUGMENTERS
        from domainfit.models.peft import PEFT_METHODS
        from domainfit.objectives.adversarial import ADVERSARIAL

        def lookup(registry: Any, value: str, key: str) -> None:
            try:
                registry.get(value, key=key)
            except ConfigError as e:
                raise ConfigError(e.what, path=source, key=key, fix=e.fix) from e

        for op in cfg.augment.ops:
            lookup(AUGMENTERS, op, "augment.ops")
        if "synonym" in cfg.augment.ops and not cfg.augment.lexicon:
            raise ConfigError(
                "the synonym op needs a lexicon of synonym groups",
                path=source,
                key="augment.lexicon",
                fix="set augment.lexicon: path/to/synonyms.txt (one group per line), or drop synonym.",
            )
        if "mlm" in cfg.augment.ops and not cfg.augment.mlm_model:
            raise ConfigError(
                "the mlm op needs a masked language model with its MLM head",
                path=source,
                key="augment.mlm_model",
                fix="set augment.mlm_model to a hub id or folder (e.g. bert-base-uncased, or a "
                "domain-pretrained model folder), or drop mlm.",
            )
        if cfg.regularization.objective not in self.objectives:
            raise ConfigError(
                f"{self.name} trains with {' or '.join(self.objectives)}, not {cfg.regularization.objective!r}",
                path=source,
                key="regularization.objective",
                fix=f"set regularization.objective to one of: {', '.join(self.objectives)} (R-Drop: "
                "regularization.rdrop_alpha; adversarial training: regularization.adversarial).",
            )
        if cfg.regularization.adversarial != "none":
            lookup(ADVERSARIAL, cfg.regularization.adversarial, "regularization.adversarial")
        if cfg.peft.method != "none":
            lookup(PEFT_METHODS, cfg.peft.method, "peft.method")
        check_evaluation_config(cfg, source)

    augmenter: Augmenter | None = None  # set by build() when augment.ops is not empty
    augment_samples = 0
    max_length = 512
    pad_multiple: int | None = None  # train.pad_to_multiple_of

    def load_data(self, cfg: RunConfig) -> TaskData:
        self.trust = ClassifierTrust(cfg.evaluation)
        return load_classification_splits(cfg.data, cfg.evaluation.group_column)

    def build(self, cfg: RunConfig, data: TaskData) -> tuple[nn.Module, Any]:
        from transformers import AutoModelForSequenceClassification

        if cfg.augment.ops:  # before the model: a bad lexicon fails fast; the masked LM is loaded once per run
            self.augmenter = create_augmenter(cfg.augment, seed=cfg.train.seed)
            self.augment_samples = cfg.augment.samples
        self.max_length = cfg.model.max_length
        self.pad_multiple = cfg.train.pad_to_multiple_of
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
        if cfg.model.freeze_embeddings:
            freeze_word_embeddings(model)
        model = apply_peft(model, cfg.peft)
        data.info["parameters"] = parameter_counts(model, cfg.peft.method)
        return model, tokenizer

    def encode(self, examples: list[Example], tokenizer: Any, cfg: RunConfig, data: TaskData) -> Features:
        label_ids = {label: i for i, label in enumerate(data.labels)}
        slices = [e.group for e in examples] if cfg.evaluation.group_column else None
        if cfg.model.long_text == "windows":
            features = encode_long_texts(examples, [label_ids[e.label] for e in examples], tokenizer, cfg)
            self._texts[id(features)] = [e.text for e in examples]
            features.slices = slices  # one per document, as the scored (aggregated) logits are
            return features
        texts = [cfg.model.text_prefix + e.text for e in examples]
        ids = tokenizer(texts, truncation=True, max_length=cfg.model.max_length)["input_ids"]
        items = [{"input_ids": x, "labels": label_ids[e.label]} for x, e in zip(ids, examples)]
        if cfg.augment.ops:  # the training collate re-tokenises augmented text (see docs/augmentation.md)
            for k, (item, e) in enumerate(zip(items, examples)):
                item.update(text=e.text, prefix=cfg.model.text_prefix, example_id=k)
        balance = [it["labels"] for it in items] if cfg.regularization.oversample else None
        features = Features(items=items, lengths=[len(x) for x in ids], balance_labels=balance, slices=slices)
        self._texts[id(features)] = [e.text for e in examples]
        return features

    def on_run_start(self, out_dir: Path, features: dict[str, Features]) -> None:
        self.trust.remember_validation(features.get("validation"))
        if self.augmenter is not None:
            write_augment_samples(self.augmenter, features["train"], self.augment_samples, out_dir)

    def collate(self, items: list[dict[str, Any]], tokenizer: Any, *, train: bool = False) -> dict[str, torch.Tensor]:
        if train and self.augmenter is not None:
            items = augment_items(self.augmenter, items, tokenizer, self.max_length)
        input_ids = pad_batch(
            [it["input_ids"] for it in items], tokenizer.pad_token_id, self.pad_multiple
        )  # (batch, seq)
        lengths = torch.tensor([len(it["input_ids"]) for it in items])
        attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": torch.tensor([it["labels"] for it in items]),
        }

    def create_objective(self, cfg: RunConfig, data: TaskData) -> nn.Module:
        from domainfit.objectives.joint_mlm import wrap_with_joint_mlm

        # task loss -> R-Drop -> adversarial (regularization.*), then + lambda * MLM when joint.enabled
        task_objective = build_objective(cfg, [e.label for e in data.splits["train"]], data.labels)
        return wrap_with_joint_mlm(task_objective, cfg, data.splits["train"])

    def compute_metrics(self, logits: torch.Tensor, labels: torch.Tensor, data: TaskData) -> dict[str, Any]:
        return classification_metrics(labels.tolist(), logits.argmax(-1).tolist(), data.labels)

    def compute_feature_metrics(
        self, features: Features, logits: torch.Tensor, labels: torch.Tensor, data: TaskData
    ) -> dict[str, Any]:
        """The scores; calibration (and abstention, once fitted) and, with a group column, scores per group; and
        ``errors``: the mistakes the model was surest of, with their texts (reports).

        Windowed splits arrive here already aggregated per document, so rows match the split's examples.
        """
        metrics = self.compute_metrics(logits, labels, data)
        metrics.update(self.trust.metrics(logits, labels, features.slices, len(data.labels)))
        texts = self._texts.get(id(features))
        if texts is not None and len(texts) == len(labels):
            probabilities = torch.softmax(logits.float(), dim=-1).numpy()  # (n, k)
            metrics["errors"] = error_examples(texts, labels.tolist(), probabilities, data.labels)
        return metrics

    def calibrate(self, logits: torch.Tensor, labels: torch.Tensor, data: TaskData) -> None:
        """Temperature and abstention threshold from the best weights' validation logits."""
        data.info["calibration"] = self.trust.fit(logits, labels)

    def save(self, model: nn.Module, tokenizer: Any, cfg: RunConfig, data: TaskData, out_dir: Path) -> None:
        peft_meta = save_model_folder(model, out_dir, cfg.peft)
        tokenizer.save_pretrained(out_dir)
        meta = {
            "task": self.name,
            "max_length": cfg.model.max_length,
            "text_prefix": cfg.model.text_prefix,
            "base_model": cfg.model.name,
            "labels": data.labels,
            "domainfit_version": __version__,
            "long_text": cfg.model.long_text,
            "window_stride": cfg.model.window_stride,
            "window_aggregation": cfg.model.window_aggregation,
            **self.trust.model_settings(),
        }
        if peft_meta:
            meta["peft"] = peft_meta
        write_folder_settings(out_dir, meta)
