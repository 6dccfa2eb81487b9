"""Long documents: windows cover every token, aggregation, per-document metrics, a label at the END is learnt,
and prediction windows long texts exactly as evaluation does."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from domainfit.data.windows import (
    WindowSettings,
    aggregate_by_group,
    group_labels,
    special_token_counts,
    split_windows,
    window_spans,
)
from domainfit.errors import ConfigError
from domainfit.tasks import load_run_config as load_config


@pytest.mark.parametrize(
    "n,size,step", [(1, 6, 3), (6, 6, 3), (7, 6, 3), (20, 6, 3), (20, 6, 6), (21, 6, 4), (100, 30, 7), (5, 6, 1)]
)
def test_windows_cover_every_token_with_the_given_stride(n, size, step):
    spans = window_spans(n, size, step)
    covered = sorted({i for s, e in spans for i in range(s, e)})
    assert covered == list(range(n))
    assert all(e - s == min(size, n) for s, e in spans)  # full windows only (the last one is moved back)
    starts = [s for s, _ in spans]
    assert all(b - a == step for a, b in zip(starts[:-1], starts[1:-1]))  # regular stride except the last
    assert all(0 < b - a <= step for a, b in zip(starts, starts[1:]))


def test_split_windows_keeps_special_tokens_and_max_length():
    settings = WindowSettings(max_length=8, stride=3, aggregation="mean", n_head=1, n_tail=1)
    ids = [101, *range(1000, 1020), 102]  # 20 content tokens
    windows = split_windows(ids, settings)
    assert all(w[0] == 101 and w[-1] == 102 and len(w) == 8 for w, _, _ in windows)
    content = {t for w, _, _ in windows for t in w[1:-1]}
    assert content == set(range(1000, 1020))
    assert split_windows([101, 5, 6, 102], settings) == [([101, 5, 6, 102], 0, 2)]  # short: unchanged


def test_special_token_counts_of_bert(tiny_bert):
    from transformers import AutoTokenizer

    assert special_token_counts(AutoTokenizer.from_pretrained(tiny_bert)) == (1, 1)


def test_mean_and_max_aggregation_per_document():
    logits = torch.tensor([[1.0, 0.0], [3.0, -2.0], [0.0, 5.0], [2.0, 2.0]])
    groups = [0, 0, 1, 0]
    mean = aggregate_by_group(logits, groups, "mean")
    assert torch.allclose(mean, torch.tensor([[2.0, 0.0], [0.0, 5.0]]))
    top = aggregate_by_group(logits, groups, "max")
    assert torch.allclose(top, torch.tensor([[3.0, 2.0], [0.0, 5.0]]))
    as_numpy = aggregate_by_group(logits.numpy(), groups, "max")
    assert isinstance(as_numpy, np.ndarray) and np.allclose(as_numpy, top.numpy())
    assert group_labels(torch.tensor([1, 1, 0, 1]), groups).tolist() == [1, 0]


def test_a_stride_that_skips_tokens_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="model.window_stride"):
        WindowSettings(max_length=16, stride=15, aggregation="mean").check()
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train: x.csv\nmodel:\n  max_length: 32\n  long_text: windows\n  window_stride: 40\n")
    with pytest.raises(ConfigError, match="model.window_stride"):
        load_config(path)


# ----------------------------------------------------------------------------------------------------------
# The test: a label decided by the last words of documents several times the model's limit

FILLER = "the a cat dog sat ran on under mat tree house river blue green small big old new".split()


def write_end_label_data(folder: Path, n: int, seed: int) -> Path:
    """Documents of 70-90 filler words ending in 8 x "good" or 8 x "bad": the label."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", n), ("val", n // 3), ("test", n // 3)):
        with open(folder / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for _ in range(count):
                label = rng.choice(["pos", "neg"])
                words = [rng.choice(FILLER) for _ in range(rng.randint(70, 90))]
                words += ["good" if label == "pos" else "bad"] * 8
                writer.writerow([" ".join(words), label])
    return folder


def end_label_config(tmp: Path, model: Path, data: Path, long_text: str, **model_kw) -> Path:
    lines = [
        "task: text-classification",
        "model:",
        f"  name: {model}",
        "  max_length: 32",
        f"  long_text: {long_text}",
        *[f"  {k}: {v}" for k, v in model_kw.items()],
        "data:",
        f"  train: {data / 'train.csv'}",
        f"  validation: {data / 'val.csv'}",
        f"  test: {data / 'test.csv'}",
        "train:",
        "  epochs: 4",
        "  batch_size: 32",
        "  learning_rate: 0.003",
        "  seed: 3",
        "  best_metric: accuracy",
        "  num_threads: 1",
        "  save_last: false",
        "output:",
        f"  dir: {tmp / ('out-' + long_text)}",
    ]
    path = tmp / f"{long_text}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def end_label_runs(tmp_path_factory):
    from assets import build_tiny_bert

    from domainfit.training import train

    tmp = tmp_path_factory.mktemp("endlabel")
    tiny_bert = build_tiny_bert(tmp / "tiny-bert", num_labels=2)
    data = write_end_label_data(tmp / "data", 210, seed=0)
    truncated = train(load_config(end_label_config(tmp, tiny_bert, data, "truncate")))
    windowed = train(
        load_config(end_label_config(tmp, tiny_bert, data, "windows", window_stride=15, window_aggregation="max"))
    )
    return tmp, data, truncated, windowed


def test_truncation_is_at_chance_and_windows_learn_the_end_label(end_label_runs):
    _, _, truncated, windowed = end_label_runs
    assert truncated["test"]["n"] == windowed["test"]["n"] == 70  # documents, not windows
    assert truncated["test"]["accuracy"] < 0.7  # it never sees the last word: a coin flip
    assert windowed["test"]["accuracy"] >= 0.85


def test_windowed_model_folder_records_its_settings(end_label_runs):
    tmp = end_label_runs[0]
    meta = json.loads((tmp / "out-windows" / "model" / "domainfit.json").read_text())
    assert (meta["long_text"], meta["window_stride"], meta["window_aggregation"]) == ("windows", 15, "max")


def test_prediction_on_long_texts_matches_evaluation(end_label_runs):
    """Predictor (windows from domainfit.json) == the loop's evaluation path, text by text."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import domainfit
    from domainfit.data.readers import read_examples
    from domainfit.objectives import create_objective
    from domainfit.tasks import TaskData, create_task
    from domainfit.training.loop import predict_logits

    tmp, data, _, windowed = end_label_runs
    model_dir = tmp / "out-windows" / "model"
    cfg = load_config(tmp / "windows.yaml")
    examples = read_examples(str(data / "test.csv"))
    task = create_task("text-classification")
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    labels = ["neg", "pos"]
    features = task.encode(examples, tokenizer, cfg, TaskData(splits={}, labels=labels))
    assert len(features) > 3 * len(examples)  # several windows per document
    logits, _, _ = predict_logits(
        model, create_objective("cross-entropy"), features, task, tokenizer, 16, torch.device("cpu")
    )
    predictor = domainfit.load(model_dir, backend="torch")
    # the predictor divides by the temperature fitted on validation (labels unchanged)
    expected = torch.softmax(aggregate_by_group(logits, features.groups, "max") / predictor.temperature, -1).numpy()
    assert predictor.windows is not None and predictor.windows.step == 15
    got = predictor.predict_proba([e.text for e in examples])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    accuracy = np.mean([labels[i] == e.label for i, e in zip(got.argmax(1), examples)])
    assert accuracy == pytest.approx(windowed["test"]["accuracy"])
    one = predictor.predict_proba([examples[0].text])  # the single-text path windows too
    np.testing.assert_allclose(one[0], expected[0], atol=1e-4)


def test_windows_with_augmentation_keep_each_windows_own_text(tiny_bert, tmp_path):
    """Augmentation re-tokenises a window's text: its character span must give back the window's tokens.

    (Exact for whole-word tokens; a window that starts inside a word split into pieces re-tokenises that
    first piece as a word start, a one-token difference on augmented training windows only.)
    """
    from transformers import AutoTokenizer

    from domainfit.data.records import Example
    from domainfit.tasks import TaskData, create_task

    path = tmp_path / "c.yaml"
    path.write_text(
        f"data:\n  train: x.csv\nmodel:\n  name: {tiny_bert}\n  max_length: 16\n  long_text: windows\n"
        f"  window_stride: 5\n  text_prefix: 'note: '\naugment:\n  ops: [swap]\n"
    )
    cfg = load_config(path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    rng = random.Random(0)
    examples = [
        Example(" ".join(rng.choice(FILLER + ["x-ray", "3.5", "(acute)"]) for _ in range(n)), "pos", i)
        for i, n in enumerate([3, 30, 55])
    ]
    features = create_task("text-classification").encode(examples, tokenizer, cfg, TaskData(splits={}, labels=["pos"]))
    counts = [features.groups.count(d) for d in range(3)]
    assert counts[0] == 1 and counts[2] > counts[1] > 1
    for item in features.items:
        again = tokenizer(item["prefix"] + item["text"], truncation=True, max_length=16)["input_ids"]
        assert again == item["input_ids"]
    assert sum(item["prefix"] == "note: " for item in features.items) == 3  # the first window of each document
