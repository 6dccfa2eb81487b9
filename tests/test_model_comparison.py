"""`domainfit evaluate MODEL DATA --against OTHER`: the paired bootstrap and the command around it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_training import write_config

from domainfit.cli.app import main
from domainfit.evaluation.comparison_report import verdict
from domainfit.metrics import paired_bootstrap as pb
from domainfit.metrics.classification import classification_metrics
from domainfit.tasks import load_run_config as load_config
from domainfit.training import train

LABELS = ["negative", "neutral", "positive"]


def _predictions(n: int, accuracy_a: float, accuracy_b: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 3, n)
    a = np.where(rng.random(n) < accuracy_a, gold, rng.integers(0, 3, n))
    b = np.where(rng.random(n) < accuracy_b, gold, rng.integers(0, 3, n))
    return gold, a, b


def _reference(gold, a, b, resamples, seed, confidence=0.95):
    """The bootstrap written out slowly: classification_metrics on every resample's rows."""
    picks = np.random.default_rng(seed).integers(0, len(gold), size=(resamples, len(gold)))
    differences = {name: [] for name in pb.COMPARED_METRICS}
    for rows in picks:
        score_a = classification_metrics(gold[rows], a[rows], LABELS)
        score_b = classification_metrics(gold[rows], b[rows], LABELS)
        for name in pb.COMPARED_METRICS:
            differences[name].append(score_a[name] - score_b[name])
    tail = (1 - confidence) / 2
    return {
        name: (np.quantile(d, tail), np.quantile(d, 1 - tail), np.mean(np.array(d) > 0), np.mean(np.array(d) < 0))
        for name, d in differences.items()
    }


def test_observed_scores_are_those_of_classification_metrics():
    gold, a, b = _predictions(200, 0.8, 0.6)
    result = pb.paired_bootstrap(gold, a, b, 3, resamples=10)
    expected_a = classification_metrics(gold, a, LABELS)
    expected_b = classification_metrics(gold, b, LABELS)
    for name in pb.COMPARED_METRICS:
        score = result["metrics"][name]
        assert score["a"] == pytest.approx(expected_a[name], abs=1e-12)
        assert score["b"] == pytest.approx(expected_b[name], abs=1e-12)
        assert score["difference"] == pytest.approx(expected_a[name] - expected_b[name], abs=1e-12)


def test_every_resample_is_scored_as_classification_metrics_would():
    # a class absent from some resamples (few 'positive' rows) exercises the zero_division=0 cells
    gold, a, b = _predictions(60, 0.7, 0.6, seed=3)
    gold[gold == 2] = 1
    gold[:2] = 2
    result = pb.paired_bootstrap(gold, a, b, 3, resamples=200, seed=5)
    for name, (low, high, a_ahead, b_ahead) in _reference(gold, a, b, 200, seed=5).items():
        score = result["metrics"][name]
        assert score["low"] == pytest.approx(low, abs=1e-12), name
        assert score["high"] == pytest.approx(high, abs=1e-12), name
        assert score["a_ahead"] == pytest.approx(a_ahead) and score["b_ahead"] == pytest.approx(b_ahead), name


def test_resampling_in_chunks_gives_the_same_interval(monkeypatch):
    gold, a, b = _predictions(100, 0.8, 0.7)
    whole = pb.paired_bootstrap(gold, a, b, 3, resamples=300, seed=1)
    monkeypatch.setattr(pb, "_CELLS_PER_CHUNK", 100 * 7)  # 7 resamples per chunk, the last one short
    assert pb.paired_bootstrap(gold, a, b, 3, resamples=300, seed=1) == whole


def test_a_model_against_itself_differs_by_nothing():
    gold, a, _ = _predictions(100, 0.8, 0.7)
    result = pb.paired_bootstrap(gold, a, a, 3, resamples=500)
    for score in result["metrics"].values():
        assert score["difference"] == score["low"] == score["high"] == 0
        assert score["a_ahead"] == score["b_ahead"] == 0
    assert "no clear difference" in verdict({"against": "B", **result})


def test_the_verdict_follows_the_interval():
    gold, a, b = _predictions(400, 0.9, 0.6)
    ahead = {"against": "B", **pb.paired_bootstrap(gold, a, b, 3, resamples=2000)}
    assert ahead["metrics"]["f1_macro"]["low"] > 0 and ahead["metrics"]["f1_macro"]["a_ahead"] == 1.0
    assert "this model is above B" in verdict(ahead)
    behind = {"against": "B", **pb.paired_bootstrap(gold, b, a, 3, resamples=2000)}
    assert behind["metrics"]["f1_macro"]["high"] < 0 and "this model is below B" in verdict(behind)
    # B gets right 6 of A's mistakes and wrong 6 of A's right answers: the interval straddles 0
    close = a.copy()
    wrong, right = np.flatnonzero(a != gold)[:6], np.flatnonzero(a == gold)[:6]
    close[wrong] = gold[wrong]
    close[right] = (gold[right] + 1) % 3
    near = {"against": "B", **pb.paired_bootstrap(gold, a, close, 3, resamples=2000)}
    score = near["metrics"]["f1_macro"]
    assert score["low"] <= 0 <= score["high"]
    assert "no clear difference" in verdict(near)


def test_the_same_seed_gives_the_same_interval_and_another_seed_another():
    gold, a, b = _predictions(150, 0.8, 0.75)
    first = pb.paired_bootstrap(gold, a, b, 3, resamples=400, seed=2)
    assert pb.paired_bootstrap(gold, a, b, 3, resamples=400, seed=2) == first
    assert pb.paired_bootstrap(gold, a, b, 3, resamples=400, seed=3) != first


@pytest.mark.parametrize(
    ("gold", "a", "b", "k", "message"),
    [
        ([0, 1], [0], [0, 1], 2, "have 2, 1 and 2 items"),
        ([], [], [], 2, "no examples"),
        ([0, 2], [0, 1], [0, 1], 2, "y_true holds class ids outside 0..1"),
        ([0, 1], [0, 1], [0, -1], 2, "pred_b holds class ids outside"),
    ],
)
def test_bad_predictions_are_a_bug_with_the_numbers(gold, a, b, k, message):
    with pytest.raises(ValueError, match=message):
        pb.paired_bootstrap(gold, a, b, k, resamples=10)


# --- the command ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, tiny_bert, phrasebank_split):
    """Two tiny text classifiers trained on the same labels: one for 2 epochs, one for 2 steps."""
    models = []
    for name, options in (("longer", {"epochs": 2}), ("shorter", {"epochs": 1, "train_samples": 32})):
        tmp = tmp_path_factory.mktemp(name)
        config = write_config(tmp, tiny_bert, phrasebank_split, tmp / "out", eval_every="epoch", **options)
        train(load_config(config))
        models.append(tmp / "out" / "model")
    return models


def test_evaluate_against_another_model_reports_each_difference(two_models, phrasebank_split, tmp_path, capsys):
    model, other = two_models
    test = phrasebank_split / "test.csv"
    assert main(["evaluate", str(other), str(test), "--output", str(tmp_path / "other"), "--backend", "torch"]) == 0
    code = main(
        [
            "evaluate",
            str(model),
            str(test),
            "--output",
            str(tmp_path / "ev"),
            "--backend",
            "torch",
            "--against",
            str(other),
            "--resamples",
            "300",
            "--seed",
            "4",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    alone = json.loads((tmp_path / "other" / "metrics.json").read_text())
    comparison = metrics["comparison"]
    assert comparison["against"] == str(other) and comparison["resamples"] == 300 and comparison["seed"] == 4
    assert comparison["n"] == metrics["n"] == alone["n"]
    for name in pb.COMPARED_METRICS:  # each side scored as evaluating that model alone scores it
        assert comparison["metrics"][name]["a"] == pytest.approx(metrics[name], abs=1e-12)
        assert comparison["metrics"][name]["b"] == pytest.approx(alone[name], abs=1e-12)
        assert comparison["metrics"][name]["low"] <= comparison["metrics"][name]["high"]
    sentence = verdict(comparison)
    assert sentence in printed
    report = (tmp_path / "ev" / "report.md").read_text()
    assert f"## Against {other}: is the difference real?" in report and sentence in report
    page = (tmp_path / "ev" / "report.html").read_text()
    assert "<section id='comparison'>" in page and "paired bootstrap, 300 resamples" in page
    # without --against the section says how to get it
    assert "--against OTHER_MODEL" in (tmp_path / "other" / "report.html").read_text()


def test_evaluate_against_a_model_with_other_labels_is_refused_before_predicting(
    two_models, phrasebank_split, tmp_path, capsys
):
    model, other = two_models
    renamed = tmp_path / "renamed"
    shutil.copytree(other, renamed)
    config = json.loads((renamed / "config.json").read_text())
    config["id2label"] = {"0": "bad", "1": "meh", "2": "good"}
    config["label2id"] = {"bad": 0, "meh": 1, "good": 2}
    (renamed / "config.json").write_text(json.dumps(config))
    args = ["evaluate", str(model), str(phrasebank_split / "test.csv"), "--output", str(tmp_path / "ev")]
    code = main([*args, "--backend", "torch", "--against", str(renamed)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot be compared" in err and "bad, meh, good" in err and "Traceback" not in err
    assert not (tmp_path / "ev").exists()  # refused before anything was predicted or written


def test_evaluate_against_a_model_of_another_task_is_refused_before_predicting(two_models, tiny_bert, tmp_path, capsys):
    model, _ = two_models
    ner = tmp_path / "ner-model"
    shutil.copytree(tiny_bert, ner)
    (ner / "domainfit.json").write_text(json.dumps({"task": "token-classification"}))
    data = tmp_path / "eval.csv"
    data.write_text("text,label\nProfit rose .,positive\n")
    code = main(["evaluate", str(model), str(data), "--output", str(tmp_path / "ev"), "--against", str(ner)])
    err = capsys.readouterr().err
    assert code == 2 and "--against compares two single-label text classifiers" in err
    assert "token-classification" in err and not (tmp_path / "ev").exists()
    code = main(["evaluate", str(model), str(data), "--against", str(tmp_path / "missing")])
    assert code == 2 and "missing" in capsys.readouterr().err


def test_pairs_on_one_file_line_up_resample_by_resample():
    """Two pairs of models on the same examples, same seed: the same resamples, so the mean of their differences
    per resample is the bootstrap of the mean difference (one recipe against another over training seeds)."""
    gold, a1, b1 = _predictions(80, 0.8, 0.7, seed=1)
    _, a2, b2 = _predictions(80, 0.75, 0.7, seed=2)
    observed, first = pb.bootstrap_differences(gold, a1, b1, 3, resamples=50, seed=9)
    _, second = pb.bootstrap_differences(gold, a2, b2, 3, resamples=50, seed=9)
    picks = np.random.default_rng(9).integers(0, len(gold), size=(50, len(gold)))
    expected = [
        np.mean(
            [
                classification_metrics(gold[rows], a[rows], LABELS)["f1_macro"]
                - classification_metrics(gold[rows], b[rows], LABELS)["f1_macro"]
                for a, b in ((a1, b1), (a2, b2))
            ]
        )
        for rows in picks
    ]
    np.testing.assert_allclose((first["f1_macro"] + second["f1_macro"]) / 2, expected, atol=1e-12)
    summary = pb.summarise(observed, first)
    assert summary == pb.paired_bootstrap(gold, a1, b1, 3, resamples=50, seed=9)["metrics"]
