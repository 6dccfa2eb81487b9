"""Calibration, abstention and group slices: scores on crafted data, the predictors, a tiny real run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from domainfit.metrics.calibration import (
    choose_min_confidence,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    risk_coverage,
    selective_scores,
    softmax,
)
from domainfit.metrics.slices import group_metrics

# -- crafted data ------------------------------------------------------------------------------------------


def _calibrated_set(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, 3))
    probabilities = softmax(logits)
    labels = np.array([rng.choice(3, p=p) for p in probabilities])
    return logits, labels


def test_ece_is_near_zero_when_calibrated_and_large_when_overconfident():
    logits, labels = _calibrated_set()
    assert expected_calibration_error(softmax(logits), labels) < 0.03
    # the same predictions stated with three times the confidence
    assert expected_calibration_error(softmax(3 * logits), labels) > 0.1


def test_ece_by_hand_on_two_bins():
    # 4 predictions at confidence 0.9 of which 2 are right: gap 0.4; 4 at 0.6, 3 right: gap 0.15
    probabilities = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 4)
    labels = np.array([0, 0, 1, 1, 0, 0, 0, 1])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.5 * 0.4 + 0.5 * 0.15)
    bins = reliability_bins(probabilities, labels)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 8


def test_temperature_scaling_lowers_nll_and_ece_and_keeps_every_label():
    logits, labels = _calibrated_set()
    overconfident = 3 * logits
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)  # undoes the crafted factor
    nll = negative_log_likelihood
    assert nll(overconfident, labels, temperature) < nll(overconfident, labels)
    assert (
        expected_calibration_error(softmax(overconfident, temperature), labels)
        < expected_calibration_error(softmax(overconfident), labels) / 3
    )
    assert (softmax(overconfident, temperature).argmax(1) == overconfident.argmax(1)).all()


def test_abstention_threshold_meets_the_target_accuracy_with_the_most_coverage():
    logits, labels = _calibrated_set(seed=1)
    probabilities = softmax(logits)
    assert (probabilities.argmax(1) == labels).mean() < 0.8
    threshold = choose_min_confidence(probabilities, labels, 0.9)
    chosen = selective_scores(probabilities, labels, threshold)
    assert chosen["accuracy"] >= 0.9 and 0.05 < chosen["coverage"] < 1
    # any lower observed confidence would answer more inputs but miss the target
    lower = np.sort(np.unique(probabilities.max(1)))
    lower = lower[lower < threshold][-1]
    assert selective_scores(probabilities, labels, lower)["accuracy"] < 0.9
    assert choose_min_confidence(probabilities, labels, 0.5) == 0.0  # already met: answer everything
    assert choose_min_confidence(np.array([[0.9, 0.1]]), np.array([1]), 0.9) is None  # cannot be met
    curve = risk_coverage(probabilities, labels)
    assert curve[-1]["coverage"] == 1.0 and curve[0]["accuracy"] > curve[-1]["accuracy"]


def test_group_metrics_find_the_known_gap():
    gold = [0, 1, 0, 1] * 5 + [0, 1, 0, 1] * 5
    predicted = gold[:20] + [0, 0, 0, 1] * 5  # group b: 3 of 4 right
    groups = ["a"] * 20 + ["b"] * 20
    result = group_metrics(gold, predicted, groups, 2, max_gap=0.1)
    assert result["groups"]["a"]["accuracy"] == 1.0 and result["groups"]["b"]["accuracy"] == 0.75
    assert result["groups"]["b"]["count"] == 20
    gap = result["gaps"]["accuracy"]
    assert gap["difference"] == pytest.approx(0.25) and gap["ratio"] == pytest.approx(0.75)
    assert gap["lowest"] == "b" and gap["flagged"] and "accuracy" in result["flagged"]
    assert not group_metrics(gold, predicted, groups, 2, max_gap=0.3)["gaps"]["accuracy"]["flagged"]


# -- predictors --------------------------------------------------------------------------------------------


def _with_settings(model_dir: Path, tmp_path: Path, **settings) -> Path:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    path = copy / "domainfit.json"
    meta = json.loads(path.read_text()) if path.is_file() else {"task": "text-classification"}
    path.write_text(json.dumps({**meta, **settings}))
    return copy


def test_text_predictor_applies_the_temperature_and_abstains(tiny_bert, tmp_path):
    import domainfit

    texts = ["Profit rose sharply .", "The company is based in Espoo .", "Sales fell ."]
    plain = domainfit.load(tiny_bert, backend="torch")
    logits = np.log(plain.predict_proba(texts))  # the logits up to a per-row constant
    scaled_dir = _with_settings(tiny_bert, tmp_path, temperature=0.01)
    scaled = domainfit.load(scaled_dir, backend="torch")
    assert scaled.predict_proba(texts) == pytest.approx(softmax(logits, 0.01), abs=1e-4)
    assert [r["label"] for r in scaled.predict(texts)] == [r["label"] for r in plain.predict(texts)]
    # a sharpened tiny model is sure of everything; its own threshold of 1.0 sends all but certainties away
    assert all(
        r["label"] == "abstain" for r in domainfit.load(tiny_bert, backend="torch", min_confidence=1.0).predict(texts)
    )
    strict = _with_settings(tiny_bert, tmp_path / "b", min_confidence=0.99)
    assert {r["label"] for r in domainfit.load(strict, backend="torch").predict(texts)} == {"abstain"}
    assert "abstain" not in {
        r["label"] for r in domainfit.load(strict, backend="torch", min_confidence=0.0).predict(texts)
    }


def test_a_bad_saved_temperature_is_one_message_naming_the_key(tiny_bert, tmp_path):
    import domainfit
    from domainfit.errors import ModelError

    bad = _with_settings(tiny_bert, tmp_path, temperature=-1)
    with pytest.raises(ModelError, match="temperature") as e:
        domainfit.load(bad, backend="torch")
    assert e.value.key == "temperature" and "domainfit.json" in str(e.value)


def test_image_predictor_applies_the_temperature():
    from domainfit.data.image_transforms import ImagePreprocessing
    from domainfit.serving.image_predictor import ImagePredictor, ImageTorchRunner

    class Fixed(torch.nn.Module):
        def forward(self, pixel_values):
            return type("Out", (), {"logits": torch.tensor([[2.0, 0.0]]).repeat(len(pixel_values), 1)})()

    from PIL import Image

    image = Image.new("RGB", (8, 8))
    prep = ImagePreprocessing(size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    plain = ImagePredictor(ImageTorchRunner(Fixed()), ["a", "b"], prep).predict_proba([image])
    hot = ImagePredictor(ImageTorchRunner(Fixed()), ["a", "b"], prep, temperature=2.0, min_confidence=0.9)
    assert plain[0, 0] == pytest.approx(float(torch.tensor([2.0, 0.0]).softmax(0)[0]))
    assert hot.predict_proba([image])[0, 0] == pytest.approx(float(torch.tensor([1.0, 0.0]).softmax(0)[0]))
    assert hot.predict([image])[0]["label"] == "abstain"  # 0.73 < 0.9


# -- config errors -----------------------------------------------------------------------------------------


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "domainfit", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_out_of_range_target_accuracy_is_one_message(tmp_path):
    cfg = tmp_path / "c.yaml"
    (tmp_path / "t.csv").write_text("text,label\na,b\n")
    cfg.write_text(f"data:\n  train: {tmp_path / 't.csv'}\nevaluation:\n  target_accuracy: 1.5\n")
    proc = _cli("train", cfg)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "evaluation.target_accuracy" in proc.stderr and str(cfg) in proc.stderr


def test_group_column_on_a_task_without_groups_names_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    (tmp_path / "t.csv").write_text("text,label\na,b\n")
    cfg.write_text(
        f"task: multi-label-classification\ndata:\n  train: {tmp_path / 't.csv'}\n"
        "evaluation:\n  group_column: hospital\n"
    )
    proc = _cli("train", cfg)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "evaluation.group_column" in proc.stderr


def test_missing_group_column_names_file_line_and_column(tmp_path):
    from domainfit.data.readers import read_examples
    from domainfit.errors import DataError

    path = tmp_path / "d.csv"
    path.write_text("text,label,site\nfine,a,x\nbad,b,\n")
    examples = read_examples(path, group_column="site")
    assert [e.group for e in examples] == ["x", "(missing)"]
    with pytest.raises(DataError) as e:
        read_examples(path, group_column="hospital")
    assert e.value.column == "hospital" and e.value.line == 1 and "site" in str(e.value)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a", "label": "x", "site": 3}\n{"text": "b", "label": "y"}\n')
    with pytest.raises(DataError) as e:
        read_examples(jsonl, group_column="site")
    assert e.value.line == 2 and e.value.column == "site"


# -- end to end: a tiny run on real PhraseBank data with a synthetic group column ---------------------------


def _with_synthetic_groups(source: Path, out: Path, limit: int | None = None) -> Path:
    """PhraseBank has no group column: a synthetic 'desk' (alternating north/south) for the test only."""
    rows = list(csv.DictReader(open(source, encoding="utf-8")))[:limit]
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "desk"])
        writer.writerows([r["text"], r["label"], "north" if i % 2 else "south"] for i, r in enumerate(rows))
    return out


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory, tiny_bert, phrasebank_split):
    from domainfit.tasks import load_run_config
    from domainfit.training import train

    tmp = tmp_path_factory.mktemp("calibrated")
    files = {
        name: _with_synthetic_groups(phrasebank_split / f"{name}.csv", tmp / f"{name}.csv", 200)
        for name in ("train", "val", "test")
    }
    config = tmp / "config.yaml"
    config.write_text(
        "\n".join(
            [
                "task: text-classification",
                "model:",
                f"  name: {tiny_bert}",
                "  max_length: 48",
                "data:",
                f"  train: {files['train']}",
                f"  validation: {files['val']}",
                f"  test: {files['test']}",
                "train:",
                "  epochs: 1",
                "  batch_size: 16",
                "  learning_rate: 0.001",
                "  seed: 3",
                "  best_metric: loss",
                "evaluation:",
                "  target_accuracy: 0.7",
                "  group_column: desk",
                "  max_gap: 0.01",
                "output:",
                f"  dir: {tmp / 'out'}",
            ]
        )
        + "\n"
    )
    results = train(load_run_config(config))
    return tmp, tmp / "out", results


def test_run_reports_ece_before_and_after_abstention_and_groups(calibrated_run):
    _, out, _ = calibrated_run
    metrics = json.loads((out / "metrics.json").read_text())
    for split in ("validation", "test"):
        scores = metrics[split]
        assert 0 <= scores["ece"] <= 1 and 0 <= scores["ece_calibrated"] <= 1 and scores["temperature"] > 0
        assert set(scores["slices"]["groups"]) == {"north", "south"}
        assert sum(g["count"] for g in scores["slices"]["groups"].values()) == scores["n"]
        assert scores["slices"]["column"] == "desk"
        assert scores["risk_coverage"][-1]["accuracy"] == pytest.approx(scores["accuracy"])
    fit = metrics["data"]["calibration"]
    assert fit["nll_after"] <= fit["nll_before"] + 1e-9  # fitted on validation: never worse there
    assert metrics["validation"]["ece_calibrated"] == pytest.approx(fit["ece_after"])
    chosen = metrics["validation"]["abstention"]
    if chosen["min_confidence"] is not None:  # the threshold meets the target on the split it was chosen on
        assert chosen["accuracy"] >= 0.7
    saved = json.loads((out / "model" / "domainfit.json").read_text())
    assert saved["temperature"] == pytest.approx(metrics["test"]["temperature"])
    assert saved["target_accuracy"] == 0.7 and saved["min_confidence"] == chosen["min_confidence"]
    report = (out / "report.md").read_text()
    assert "## Calibration" in report and "## Abstention" in report and "## Groups: scores per desk" in report
    assert (out / "reliability_diagram.png").read_bytes().startswith(b"\x89PNG")


def test_predict_uses_the_saved_calibration_and_evaluate_slices_by_group(calibrated_run, tmp_path):
    import domainfit

    tmp, out, results = calibrated_run
    predictor = domainfit.load(out / "model", backend="torch")
    assert predictor.temperature == pytest.approx(results["test"]["temperature"])
    proc = _cli(
        "predict",
        out / "model",
        tmp / "test.csv",
        "--output",
        tmp_path / "p.csv",
        "--backend",
        "torch",
        "--min-confidence",
        "1.0",
    )
    assert proc.returncode == 0, proc.stderr
    assert {r["label"] for r in csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8"))} == {"abstain"}
    proc = _cli(
        "evaluate",
        out / "model",
        tmp / "test.csv",
        "--output",
        tmp_path / "ev",
        "--backend",
        "torch",
        "--group-column",
        "desk",
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(results["test"]["accuracy"])
    assert metrics["ece_calibrated"] == pytest.approx(results["test"]["ece_calibrated"], abs=1e-4)
    assert metrics["ece"] == pytest.approx(results["test"]["ece"], abs=1e-4)
    north = results["test"]["slices"]["groups"]["north"]
    assert metrics["slices"]["groups"]["north"]["count"] == north["count"]
    proc = _cli(
        "evaluate",
        out / "model",
        tmp / "test.csv",
        "--output",
        tmp_path / "ev2",
        "--backend",
        "torch",
        "--group-column",
        "hospital",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'hospital'" in proc.stderr and "test.csv" in proc.stderr and "line 1" in proc.stderr
