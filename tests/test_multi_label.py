"""Multi-label classification: label parsing and errors, thresholds, metrics vs scikit-learn, and an
end-to-end run on real NCBI-disease sentences with a tiny model (train -> report -> predict)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATASETS

import domainfit
from domainfit.cli import main
from domainfit.data.multilabel import MultiLabelSet, read_multilabel_examples
from domainfit.errors import ConfigError, DataError
from domainfit.metrics.classification import metric_direction
from domainfit.metrics.multilabel import multilabel_metrics, sigmoid, tune_thresholds
from domainfit.objectives import create_objective
from domainfit.objectives.binary_cross_entropy import positive_weights
from domainfit.tasks import load_run_config as load_config

REPO = Path(__file__).resolve().parents[1]
NCBI = DATASETS / "ner_ncbi_disease" / "NCBI-disease-IOB"


# --- reading --------------------------------------------------------------------------------------------


def test_jsonl_lists_and_empty_sets(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"text": "breast cancer", "label": ["cancer", "tumor", "cancer"]}\n'
        '\n{"text": "no disease here", "label": []}\n{"text": "codes", "label": "I10;E11"}\n'
    )
    examples = read_multilabel_examples(path)
    assert [e.label for e in examples] == [("cancer", "tumor"), (), ("E11", "I10")]
    assert [e.line for e in examples] == [1, 3, 4]


def test_csv_and_tsv_with_a_configurable_separator(tmp_path):
    csv_path = tmp_path / "a.csv"
    csv_path.write_text('text,codes\n"fever, cough",J18|R50\nnothing,\none, J18 \n')
    examples = read_multilabel_examples(csv_path, label_column="codes", label_separator="|")
    assert [e.label for e in examples] == [("J18", "R50"), (), ("J18",)]
    tsv_path = tmp_path / "a.tsv"
    tsv_path.write_text("text\tlabel\nsome note\ta;b\n")
    assert read_multilabel_examples(tsv_path)[0].label == ("a", "b")


@pytest.mark.parametrize(
    "line, what",
    [
        ('{"text": "x", "label": null}', "missing or null"),
        ('{"text": "x", "label": {"a": 1}}', "expected a list of labels"),
        ('{"text": "x", "label": ["a", ""]}', "empty"),
        ('{"text": "x", "label": "a;;b"}', "empty label between separators"),
        ('{"text": "x", "label": [["a"]]}', "must be a string"),
        ('{"text": "x"}', "expected a key 'label'"),
    ],
)
def test_bad_label_cells_name_file_line_and_column(tmp_path, line, what):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine", "label": ["a"]}\n' + line + "\n")
    with pytest.raises(DataError) as e:
        read_multilabel_examples(path)
    assert what in str(e.value) and "bad.jsonl" in str(e.value)
    assert e.value.line == 2 and e.value.column == "label"


def test_unseen_validation_labels_error_or_drop(tmp_path):
    train = read_multilabel_examples(_jsonl(tmp_path / "t.jsonl", [("a", ["x"]), ("b", ["y"]), ("c", [])]))
    val_path = _jsonl(tmp_path / "v.jsonl", [("d", ["x"]), ("e", ["x", "z"])])
    val = read_multilabel_examples(val_path)
    label_set = MultiLabelSet.from_examples(train, path="t.jsonl")
    assert label_set.labels == ["x", "y"]
    with pytest.raises(DataError) as e:
        label_set.check(val, val_path, policy="error")
    assert "'z' never appears in the training data" in str(e.value) and e.value.line == 2
    assert "unseen_labels: drop" in e.value.fix
    kept = label_set.check(val, val_path, policy="drop")
    assert [e.label for e in kept] == [("x",), ("x",)]


def test_training_data_without_any_label_is_an_error(tmp_path):
    train = read_multilabel_examples(_jsonl(tmp_path / "t.jsonl", [("a", []), ("b", [])]))
    with pytest.raises(DataError, match="none of the 2 training examples has a label"):
        MultiLabelSet.from_examples(train, path="t.jsonl")


def test_config_rejects_clashing_separators(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: multi-label-classification\ndata:\n  train: x.txt\n  format: delimited\n  separator: ';'\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.key == "multi_label.label_separator"
    assert (
        load_config(
            path, ["multi_label.label_separator='|'", "train.best_metric=hamming_loss"]
        ).multi_label.label_separator
        == "|"
    )


# --- thresholds, metrics, objective -----------------------------------------------------------------------


def test_tuned_thresholds_beat_the_default_on_a_constructed_case():
    # label 0: positives score 0.30-0.40, negatives 0.05-0.20 -> nothing reaches 0.5, but 0.25 separates them;
    # label 1: negatives reach 0.6, positives 0.7+ -> the cut belongs above 0.6; label 2: never positive.
    probs = np.array(
        [
            [0.35, 0.75, 0.9],
            [0.30, 0.80, 0.1],
            [0.40, 0.60, 0.2],
            [0.05, 0.55, 0.3],
            [0.20, 0.10, 0.4],
            [0.10, 0.90, 0.6],
        ],
        dtype=np.float32,
    )
    gold = np.array([[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0]])
    thresholds = tune_thresholds(probs, gold, step=0.05, default=0.5, min_positives=1)
    assert 0.20 < thresholds[0] <= 0.30 and 0.60 < thresholds[1] <= 0.75 and thresholds[2] == 0.5
    labels = ["a", "b", "c"]
    tuned = multilabel_metrics(gold, probs >= thresholds, labels)
    plain = multilabel_metrics(gold, probs >= 0.5, labels)
    assert tuned["per_class"]["a"]["f1"] == 1.0 and plain["per_class"]["a"]["f1"] == 0.0
    assert tuned["f1_micro"] > plain["f1_micro"] and tuned["hamming_loss"] < plain["hamming_loss"]


def test_labels_with_few_validation_positives_keep_the_default():
    probs = np.array(
        [[0.35, 0.35], [0.30, 0.30], [0.05, 0.05], [0.10, 0.10], [0.32, 0.32], [0.31, 0.31]], dtype=np.float32
    )
    gold = np.array([[1, 1], [1, 1], [0, 0], [0, 0], [0, 1], [0, 1]])  # 2 positives for label 0, 4 for label 1
    thresholds = tune_thresholds(probs, gold, step=0.05, default=0.5, min_positives=3)
    assert thresholds[0] == 0.5 and thresholds[1] < 0.5


def test_tied_thresholds_go_to_the_one_nearest_the_default():
    probs = np.array([[0.9], [0.1]], dtype=np.float32)  # every cut in (0.1, 0.9] is perfect
    assert tune_thresholds(probs, np.array([[1], [0]]), step=0.05, default=0.5, min_positives=1)[0] == 0.5


def test_metrics_match_scikit_learn_on_a_hand_example():
    from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support

    gold = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    pred = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]])
    m = multilabel_metrics(gold, pred, ["a", "b", "c", "d"])  # "d" has no support, one false positive
    for average in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(gold, pred, average=average, zero_division=0)
        assert (m[f"precision_{average}"], m[f"recall_{average}"], m[f"f1_{average}"]) == pytest.approx((p, r, f))
    p, r, f, _ = precision_recall_fscore_support(gold, pred, average="samples", zero_division=1)
    assert (m["precision_samples"], m["recall_samples"], m["f1_samples"]) == pytest.approx((p, r, f))
    assert m["hamming_loss"] == pytest.approx(hamming_loss(gold, pred)) == 6 / 24
    assert m["subset_accuracy"] == pytest.approx(accuracy_score(gold, pred)) == 1 / 6
    p, r, f, s = precision_recall_fscore_support(gold, pred, average=None, zero_division=0)
    assert [m["per_class"][x]["f1"] for x in "abcd"] == pytest.approx(f)
    assert [m["per_class"][x]["support"] for x in "abcd"] == list(s) == [3, 2, 1, 0]


def test_selection_metrics_know_their_direction():
    assert metric_direction("hamming_loss") == "min"
    assert (
        metric_direction("f1_micro") == metric_direction("f1_samples") == metric_direction("subset_accuracy") == "max"
    )
    assert metric_direction("f1_macro_default") == "max"


def test_bce_objective_and_positive_weights():
    multi_hot = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    weights = positive_weights(multi_hot, max_weight=3.0)
    assert weights.tolist() == pytest.approx([3.0, 1.5])  # 4/1 capped at 3; 3/2
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5]])

    class Model(torch.nn.Module):
        def forward(self, input_ids):
            return type("Out", (), {"logits": logits})()

    batch = {"input_ids": torch.zeros(2, 1), "labels": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
    out = create_objective("bce", pos_weight=weights)(Model(), batch)
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=weights)(logits, batch["labels"])
    assert out["loss"].item() == pytest.approx(expected.item())
    assert create_objective("bce")(Model(), batch)["loss"].item() != pytest.approx(expected.item())


# --- end to end on real text ------------------------------------------------------------------------------


def _jsonl(path: Path, rows: list[tuple[str, list[str]]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return path


@pytest.fixture(scope="module")
def ncbi_small(tmp_path_factory) -> Path:
    """A few dozen real NCBI-disease sentences per split, labelled by scripts/ncbi_multilabel.py."""
    if not (NCBI / "train.tsv").is_file():
        pytest.skip(f"NCBI-disease not found at {NCBI} (set DOMAINFIT_DATA)")
    sys.path.insert(0, str(REPO / "scripts"))
    import ncbi_multilabel

    full = tmp_path_factory.mktemp("ncbi-full")
    ncbi_multilabel.convert(NCBI, full, top=4)
    out = tmp_path_factory.mktemp("ncbi-small")
    labels = json.loads((full / "labels.json").read_text())["labels"]
    for name in ("train", "devel", "test"):
        rows = [json.loads(line) for line in (full / f"{name}.jsonl").read_text().splitlines()]
        if name == "train":  # the first 10 sentences of each label, so every label is learnable
            labelled = [r for r in rows if r["label"]]
            labelled = [
                r
                for i, r in enumerate(labelled)
                if any(x in r["label"] and sum(x in q["label"] for q in labelled[:i]) < 10 for x in labels)
            ]
        else:
            labelled = [r for r in rows if r["label"]][:16]
        empty = [r for r in rows if not r["label"]][: len(labelled) // 2]
        _jsonl(out / f"{name}.jsonl", [(r["text"], r["label"]) for r in labelled + empty])
    return out


def _write_config(tmp: Path, model: Path, data: Path, out: Path, **train_kw) -> Path:
    train_cfg = {
        "epochs": 1,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "seed": 3,
        "eval_every": 4,
        "best_metric": "f1_micro",
        "log_every": 2,
        **train_kw,
    }
    config = tmp / "config.yaml"
    config.write_text(
        "\n".join(
            [
                "task: multi-label-classification",
                "model:",
                f"  name: {model}",
                "  max_length: 48",
                "data:",
                f"  train: {data / 'train.jsonl'}",
                f"  validation: {data / 'devel.jsonl'}",
                f"  test: {data / 'test.jsonl'}",
                "multi_label:",
                "  pos_weight: true",
                "train:",
                *[f"  {k}: {json.dumps(v)}" for k, v in train_cfg.items()],
                "output:",
                f"  dir: {out}",
            ]
        )
        + "\n"
    )
    return config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_bert, ncbi_small):
    tmp = tmp_path_factory.mktemp("ml-run")
    out = tmp / "out"
    assert main(["train", str(_write_config(tmp, tiny_bert, ncbi_small, out))]) == 0
    return out


def test_run_writes_model_metrics_and_report(finished_run):
    out = finished_run
    for name in ("metrics.json", "report.md", "run.json", "model/model.safetensors", "model/domainfit.json"):
        assert (out / name).is_file(), name
    settings = json.loads((out / "model/domainfit.json").read_text())
    labels = settings["labels"]
    assert settings["task"] == "multi-label-classification" and len(labels) == 4
    assert set(settings["thresholds"]) == set(labels) and all(0 < t < 1 for t in settings["thresholds"].values())
    assert json.loads((out / "model/config.json").read_text())["problem_type"] == "multi_label_classification"
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert test["n"] == 24
    for key in ("f1_micro", "f1_macro", "hamming_loss", "f1_micro_default", "subset_accuracy"):
        assert 0 <= test[key] <= 1, key
    assert [test["per_class"][x]["threshold"] for x in labels] == [settings["thresholds"][x] for x in labels]
    assert sum(test["per_class"][x]["support"] for x in labels) >= 16
    assert metrics["data"]["pos_weight"] and len(metrics["history"]) >= 2
    assert metrics["best"]["step"] in [h["step"] for h in metrics["history"]]
    report = (out / "report.md").read_text()
    assert "Hamming loss" in report and "## Scores per label" in report and "## Training history" in report
    for label in labels:
        assert f"| {label} | {settings['thresholds'][label]:.2f} |" in report


def test_thresholds_are_the_validation_optimum_of_the_saved_model(finished_run, ncbi_small):
    out = finished_run
    settings = json.loads((out / "model/domainfit.json").read_text())
    predictor = domainfit.load(out / "model", backend="torch")
    rows = [json.loads(line) for line in (ncbi_small / "devel.jsonl").read_text().splitlines()]
    probs = predictor.predict_proba([r["text"] for r in rows])
    gold = np.array([[label in r["label"] for label in predictor.labels] for r in rows])
    assert tune_thresholds(probs, gold).tolist() == [settings["thresholds"][x] for x in predictor.labels]


def test_predict_applies_the_stored_thresholds(finished_run, ncbi_small, tmp_path):
    from assets import reference_logits

    out = finished_run
    model_dir = out / "model"
    texts = [json.loads(line)["text"] for line in (ncbi_small / "test.jsonl").read_text().splitlines()]
    predictor = domainfit.load(model_dir)
    results = predictor.predict(texts)
    probs = sigmoid(reference_logits(model_dir, texts, max_length=48))  # plain per-text forward
    assert np.allclose([[r["probabilities"][x] for x in predictor.labels] for r in results], probs, atol=1e-5)
    for row, result in zip(probs, results):
        assert set(result["labels"]) == {x for x, p, t in zip(predictor.labels, row, predictor.thresholds) if p >= t}
    # lowering the thresholds must give more labels: predict really uses them
    predictor.thresholds = np.full(len(predictor.labels), 0.01, dtype=np.float32)
    assert sum(map(len, (r["labels"] for r in predictor.predict(texts)))) >= sum(len(r["labels"]) for r in results)

    csv_out = tmp_path / "preds.csv"
    assert main(["predict", str(model_dir), str(ncbi_small / "test.jsonl"), "--output", str(csv_out)]) == 0
    with open(csv_out, newline="", encoding="utf-8") as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(texts)
    assert [set(filter(None, w["labels"].split(";"))) for w in written] == [set(r["labels"]) for r in results]
    assert float(written[0][f"p_{predictor.labels[0]}"]) == pytest.approx(
        results[0]["probabilities"][predictor.labels[0]], abs=1e-6
    )


def test_evaluate_command_reproduces_the_runs_test_scores(finished_run, ncbi_small, tmp_path):
    out = finished_run
    assert main(["evaluate", str(out / "model"), str(ncbi_small / "test.jsonl"), "--output", str(tmp_path / "ev")]) == 0
    run_test = json.loads((out / "metrics.json").read_text())["test"]
    evaluated = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in ("f1_micro", "f1_macro", "hamming_loss", "f1_micro_default", "subset_accuracy"):
        assert evaluated[key] == pytest.approx(run_test[key], abs=1e-6), key
    assert "Hamming loss" in (tmp_path / "ev" / "report.md").read_text()


def test_interrupted_run_resumes_to_the_same_result(finished_run, tiny_bert, ncbi_small, tmp_path, monkeypatch):
    """Stop after the checkpoint of step 5 (of 8), resume, and land on the uninterrupted run's model."""
    from domainfit.training import train
    from domainfit.training.checkpoint import CheckpointManager

    out = tmp_path / "out"
    cfg = load_config(_write_config(tmp_path, tiny_bert, ncbi_small, out, save_every=1))
    save = CheckpointManager.save

    def save_then_stop(self, state, *args, **kwargs):
        path = save(self, state, *args, **kwargs)
        if state.step >= 5:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(CheckpointManager, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert not (out / "metrics.json").exists()
    monkeypatch.setattr(CheckpointManager, "save", save)
    train(cfg, resume=True)
    straight, resumed = (json.loads((d / "metrics.json").read_text()) for d in (finished_run, out))
    assert resumed["train"]["samples_seen"] == straight["train"]["samples_seen"]
    assert resumed["best"]["step"] == straight["best"]["step"]
    # precision: auto may pick bf16 autocast on this CPU, so resumed arithmetic differs in the last bits:
    # allow about one label decision of difference
    for key in ("f1_micro", "f1_macro", "hamming_loss"):
        assert resumed["test"][key] == pytest.approx(straight["test"][key], abs=0.02), key
    assert resumed["test"]["loss"] == pytest.approx(straight["test"]["loss"], rel=0.01)
    assert set(json.loads((out / "model/domainfit.json").read_text())["thresholds"]) == set(resumed["test"]["labels"])
