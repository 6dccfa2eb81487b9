"""The model card's intended use, limitations, data licence and robustness sections."""

from __future__ import annotations

import re

from conftest import DATASETS

from domainfit.evaluation.model_card import find_data_licence, write_model_card
from domainfit.metrics.classification import classification_metrics

LABELS = ["negative", "neutral", "positive"]
CFG = {
    "task": "text-classification",
    "output": {"dir": "runs/fin"},
    "model": {"name": "m", "max_length": 64},
    "train": {
        "best_metric": "f1_macro",
        "epochs": 1,
        "batch_size": 8,
        "learning_rate": 1e-4,
        "weight_decay": 0,
        "warmup_ratio": 0,
        "seed": 1,
    },
}
STRESS = {
    "n": 10,
    "accuracy": 0.8,
    "skipped": {},
    "perturbations": {
        "typos": {
            "changed": 10,
            "flips": 3,
            "flip_rate": 0.3,
            "accuracy_before": 0.8,
            "accuracy_after": 0.6,
            "accuracy_drop": 0.2,
            "examples": [{"text": "secret example text"}],
        },
        "lowercase": {
            "changed": 10,
            "flips": 0,
            "flip_rate": 0.0,
            "accuracy_before": 0.8,
            "accuracy_after": 0.8,
            "accuracy_drop": 0.0,
            "examples": [],
        },
    },
}


def _section(card: str, title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", card, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)


def _card(tmp_path, train: str, **results) -> str:
    metrics = classification_metrics([0, 1, 2, 1, 1], [0, 1, 1, 1, 1], LABELS)
    results = {"test": metrics, "data": {"files": {"train": train}, "counts": {"train": 120}}, **results}
    write_model_card(tmp_path, cfg=CFG, results=results, labels=LABELS)
    return (tmp_path / "README.md").read_text(encoding="utf-8")


def test_licence_comes_from_the_datasets_source_txt(tmp_path):
    train = DATASETS / "financial_phrasebank" / "split_seed42" / "train.csv"  # SOURCE.txt is one folder up
    text, path = find_data_licence(train)
    assert path == DATASETS / "financial_phrasebank" / "SOURCE.txt"
    assert "CC BY-NC-SA 3.0" in text
    assert "Commercial use needs a separate licence" in text  # the indented continuation line
    licence = _section(_card(tmp_path, str(train)), "Data licence")
    assert "CC BY-NC-SA 3.0" in licence and "SOURCE.txt" in licence


def test_licence_file_beside_the_data_and_none_found(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "LICENSE.txt").write_text("\nCreative Commons Attribution 4.0\nlong legal text\n")
    assert find_data_licence(data / "train.csv") == ("Creative Commons Attribution 4.0", data / "LICENSE.txt")
    # a LICENSE one folder up is the user's code licence, not the data's: not taken
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "LICENSE").write_text("MIT License\n")
    (tmp_path / "project" / "data").mkdir()
    assert find_data_licence(tmp_path / "project" / "data" / "train.csv") is None
    card_dir = tmp_path / "card"
    card_dir.mkdir()
    licence = _section(_card(card_dir, str(tmp_path / "project" / "data" / "train.csv")), "Data licence")
    assert licence.strip().startswith("Not recorded") and "before sharing this model" in licence


def test_intended_use_and_limitations_follow_from_data_and_warnings(tmp_path):
    warning = {
        "code": "never_predicted",
        "message": "'positive' (1 examples) is never predicted: the model does not answer it at all.",
        "advice": [],
        "classes": {"positive": 1},
    }
    card = _card(tmp_path, "data/fin.csv", warnings=[warning])
    assert "like those in `data/fin.csv`" in _section(card, "Intended use")
    limits = _section(card, "Limitations")
    assert "- 'positive' (1 examples) is never predicted: the model does not answer it at all." in limits
    assert "learned from 120 examples" in limits
    assert "rest on fewer than 20 test examples" in limits
    assert "weakest on 'positive' (test F1 0.00)" in limits
    assert "at most 64 tokens" in limits
    assert "## Robustness" not in card and "Its answer changes" not in limits


def test_robustness_figures_when_the_run_has_them(tmp_path):
    card = _card(tmp_path, "data/fin.csv", stress=STRESS)
    robustness = _section(card, "Robustness")
    assert "| typos | 10 | 3 | 30.0% | 0.8000 | 0.6000 | +0.2000 |" in robustness
    assert "| lowercase | 10 | 0 | 0.0% |" in robustness
    assert "secret example text" not in card  # the card leaves the examples (data) out
    assert "Its answer changes under typos (see Robustness)." in _section(card, "Limitations")


def test_the_card_says_what_transformers_pipeline_does_not_apply(tmp_path):
    import json

    plain = _card(tmp_path, "train.csv")  # no domainfit.json: nothing fitted, nothing to say
    assert "temperature" not in _section(plain, "Use")
    (tmp_path / "domainfit.json").write_text(json.dumps({"temperature": 1.7321, "min_confidence": 0.62}))
    use = _section(_card(tmp_path, "train.csv"), "Use")
    assert "temperature fitted on validation (T = 1.73)" in use and "`transformers.pipeline` does not read T" in use
    assert "`abstain` below a top probability of 0.62" in use
