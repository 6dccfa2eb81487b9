"""Each task owns its contract: options it would ignore are refused naming the key, and a new task is one module
plus one registration (shown by a small example task defined here and trained end to end)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from domainfit.config import RunConfig
from domainfit.errors import ConfigError
from domainfit.tasks import TASKS, Features, Task, TaskData, create_task, load_run_config

# (task, an override that task does not support, the key the refusal must name)
UNSUPPORTED = [
    ("text-classification", "ner.stride=8", "ner.stride"),
    ("text-classification", "regularization.objective=bce", "regularization.objective"),
    ("text-classification", "regularization.objective=joint-mlm", "regularization.objective"),
    ("multi-label-classification", "peft.method=lora", "peft.method"),
    ("multi-label-classification", "regularization.rdrop_alpha=1.0", "regularization.rdrop_alpha"),
    ("multi-label-classification", "joint.enabled=true", "joint.enabled"),
    ("multi-label-classification", "model.long_text=windows", "model.long_text"),
    ("token-classification", "augment.ops=[swap]", "augment.ops"),
    ("token-classification", "regularization.adversarial=fgm", "regularization.adversarial"),
    ("token-classification", "image.hflip=false", "image.hflip"),
    ("image-classification", "model.freeze_embeddings=true", "model.freeze_embeddings"),
    ("image-classification", "regularization.label_smoothing=0.1", "regularization.label_smoothing"),
    ("image-classification", "multi_label.threshold=0.3", "multi_label.threshold"),
    ("generation", "regularization.class_weights=balanced", "regularization.class_weights"),
    ("generation", "augment.ops=[delete]", "augment.ops"),
    ("generation", "ner.label_all_subwords=true", "ner.label_all_subwords"),
]


@pytest.mark.parametrize("task, override, key", UNSUPPORTED)
def test_every_option_a_task_would_ignore_is_refused_naming_the_key(tmp_path, task, override, key):
    path = tmp_path / "c.yaml"
    path.write_text(f"task: {task}\ndata:\n  train: x.csv\n")
    load_run_config(path)  # the task's own defaults pass
    with pytest.raises(ConfigError) as error:
        load_run_config(path, [override])
    assert error.value.key == key, str(error.value)


def test_every_task_declares_a_contract():
    for name in TASKS.names():
        task = create_task(name)
        assert isinstance(task, Task) and task.name == name
        assert task.sections <= {
            "augment",
            "peft",
            "regularization",
            "joint",
            "multi_label",
            "ner",
            "image",
            "generation",
            "evaluation",
        }


def test_training_refuses_an_unsupported_option_before_writing_anything(tmp_path, phrasebank_split, tiny_bert):
    from domainfit.config import load_config
    from domainfit.training import train

    path = tmp_path / "c.yaml"
    path.write_text(
        f"task: multi-label-classification\nmodel:\n  name: {tiny_bert}\ndata:\n"
        f"  train: {phrasebank_split / 'train.csv'}\noutput:\n  dir: {tmp_path / 'out'}\n"
    )
    cfg = load_config(path, ["peft.method=lora"])  # the pure config layer cannot know; train() checks
    with pytest.raises(ConfigError, match="peft"):
        train(cfg)
    assert not (tmp_path / "out").exists()


# -- a new task: this module's class plus one registration ----------------------------------------------------


class LengthBucketTask(Task):
    """Predict whether a PhraseBank sentence is short (< 20 words) or long: the smallest complete task."""

    name = "length-bucket"

    def load_data(self, cfg: RunConfig) -> TaskData:
        import csv

        with open(cfg.data.train, encoding="utf-8", newline="") as f:
            texts = [row[cfg.data.text_column] for row in csv.DictReader(f)][:96]
        examples = [(t, int(len(t.split()) >= 20)) for t in texts]
        return TaskData(splits={"train": examples[:64], "validation": examples[64:]}, labels=["short", "long"])

    def build(self, cfg: RunConfig, data: TaskData) -> tuple[nn.Module, object]:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(
            cfg.model.name, num_labels=2, ignore_mismatched_sizes=True
        )
        return model, AutoTokenizer.from_pretrained(cfg.model.name)

    def encode(self, examples, tokenizer, cfg: RunConfig, data: TaskData) -> Features:
        ids = tokenizer([t for t, _ in examples], truncation=True, max_length=cfg.model.max_length)["input_ids"]
        items = [{"input_ids": x, "label": y} for x, (_, y) in zip(ids, examples)]
        return Features(items=items, lengths=[len(x) for x in ids])

    def collate(self, items, tokenizer, *, train: bool = False) -> dict[str, torch.Tensor]:
        width = max(len(i["input_ids"]) for i in items)
        input_ids = torch.zeros(len(items), width, dtype=torch.long)
        for row, item in enumerate(items):
            input_ids[row, : len(item["input_ids"])] = torch.tensor(item["input_ids"])
        return {
            "input_ids": input_ids,
            "attention_mask": (input_ids != 0).long(),
            "labels": torch.tensor([i["label"] for i in items]),
        }

    def create_objective(self, cfg: RunConfig, data: TaskData) -> nn.Module:
        from domainfit.objectives import create_objective

        return create_objective("cross-entropy")

    def compute_metrics(self, logits, labels, data: TaskData) -> dict:
        from domainfit.metrics.classification import classification_metrics

        return classification_metrics(labels.tolist(), logits.argmax(-1).tolist(), data.labels)

    def save(self, model, tokenizer, cfg: RunConfig, data: TaskData, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)


def test_a_new_task_is_one_module_plus_one_registration(tmp_path, phrasebank_split, tiny_bert):
    from domainfit.training import train

    TASKS.register(LengthBucketTask.name, LengthBucketTask)  # the one registration
    try:
        path = tmp_path / "c.yaml"
        path.write_text(
            f"task: length-bucket\nmodel:\n  name: {tiny_bert}\n  max_length: 48\ndata:\n"
            f"  train: {phrasebank_split / 'train.csv'}\ntrain:\n  epochs: 1\n  batch_size: 16\n"
            f"output:\n  dir: {tmp_path / 'out'}\n"
        )
        with pytest.raises(ConfigError, match="peft"):  # the contract comes with the base class
            load_run_config(path, ["peft.method=lora"])
        results = train(load_run_config(path))
    finally:
        TASKS._items.pop(LengthBucketTask.name, None)
    out = tmp_path / "out"
    assert (out / "model" / "config.json").is_file() and (out / "report.md").is_file()
    assert set(results["validation"]) >= {"accuracy", "f1_macro", "loss"}
