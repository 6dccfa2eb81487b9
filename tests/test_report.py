"""The evaluation report: files written, the numbers in it, and labels in any script."""

from __future__ import annotations

import re
import warnings

import pytest

from domainfit.evaluation.report import format_metrics_table, write_report
from domainfit.metrics.classification import classification_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Scores for this example are worked out by hand in test_metrics.py.
Y_TRUE = [0, 0, 1, 1, 2]
Y_PRED = [0, 1, 1, 1, 0]
LABELS = ["negative", "neutral", "positive"]

HISTORY = [
    {"epoch": 1, "step": 120, "train_loss": 0.61, "validation": {"f1_macro": 0.70, "loss": 0.40}},
    {"epoch": 2, "step": 240, "train_loss": 0.42, "validation": {"f1_macro": 0.81, "loss": 0.45}},
    {"epoch": 3, "step": 360, "train_loss": 0.30, "validation": {"f1_macro": 0.79, "loss": 0.52}},
]


@pytest.fixture
def metrics():
    return classification_metrics(Y_TRUE, Y_PRED, LABELS)


def _row(text: str, first_cell: str) -> str:
    """The Markdown table row of ``text`` whose first cell is ``first_cell``."""
    rows = [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"expected one row starting {first_cell!r}, found {rows}"
    return rows[0]


def test_writes_report_and_png(tmp_path, metrics):
    out_dir = tmp_path / "eval"  # does not exist yet

    path = write_report(out_dir, metrics, title="Sentiment of financial news")

    assert path == out_dir / "report.md"
    png = (out_dir / "confusion_matrix.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 5_000
    assert sorted(p.name for p in out_dir.iterdir()) == ["confusion_matrix.png", "report.md"]  # no temp files
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Sentiment of financial news\n")
    assert "](confusion_matrix.png)" in text


def test_summary_states_accuracy_weakest_label_and_its_confusion(tmp_path, metrics):
    text = write_report(tmp_path, metrics, title="t").read_text(encoding="utf-8")

    assert "On 5 held-out test examples the model is right 60.0% of the time" in text
    assert "weakest on 'positive' (F1 0.00)" in text
    assert "most often confused with 'negative' (1 time: 1 'positive' read as 'negative')" in text
    # negative and neutral tie at 2 of 5; the first in label order is named.
    assert "always answering the most common label, 'negative', would be right 40.0%" in text


def test_headline_and_per_class_tables(tmp_path, metrics):
    text = write_report(tmp_path, metrics, title="t").read_text(encoding="utf-8")

    assert "**Accuracy: 0.6000**" in text
    assert _row(text, "F1") == "| F1 | 0.4333 | 0.6000 | 0.5200 |"
    assert _row(text, "0") == "| 0 | negative | 0.5000 | 0.5000 | 0.5000 | 2 |"
    assert _row(text, "1") == "| 1 | neutral | 0.6667 | 1.0000 | 0.8000 | 2 |"
    assert _row(text, "2") == "| 2 | positive | 0.0000 | 0.0000 | 0.0000 | 1 |"


def test_most_frequent_confusions_are_listed(tmp_path, metrics):
    text = write_report(tmp_path, metrics, title="t").read_text(encoding="utf-8")

    assert "- 'negative' predicted as 'neutral': 1 time (50.0% of 'negative')" in text
    assert "- 'positive' predicted as 'negative': 1 time (100.0% of 'positive')" in text


def test_history_marks_the_best_epoch(tmp_path, metrics):
    text = write_report(tmp_path, metrics, title="t", history=HISTORY).read_text(encoding="utf-8")

    best_rows = [line for line in text.splitlines() if "**best**" in line]
    assert len(best_rows) == 1
    assert best_rows[0].startswith("| 2 | 240 | 0.4200 | 0.8100 |")
    assert "best epoch by validation f1_macro is epoch 2 (0.8100)" in text


def test_history_best_by_loss_is_the_lowest(tmp_path, metrics):
    text = write_report(tmp_path, metrics, title="t", history=HISTORY, best_metric="loss").read_text(encoding="utf-8")

    best_rows = [line for line in text.splitlines() if "**best**" in line]
    assert len(best_rows) == 1
    assert best_rows[0].startswith("| 1 | 120 |")


def test_run_section_lists_context(tmp_path, metrics):
    context = {"model": "bert-base-uncased", "data": "data/news.csv", "config": {"train": {"epochs": 3}}}

    text = write_report(tmp_path, metrics, title="t", context=context).read_text(encoding="utf-8")

    assert "## Run" in text
    assert "- **model**: `bert-base-uncased`" in text
    assert "- **config.train.epochs**: `3`" in text


def test_optional_sections_are_left_out(tmp_path, metrics):
    text = write_report(tmp_path, metrics, title="t").read_text(encoding="utf-8")

    assert "## Run" not in text
    assert "## Training history" not in text


def test_perfect_predictions(tmp_path):
    perfect = classification_metrics([0, 1, 1], [0, 1, 1], ["a", "b"])

    text = write_report(tmp_path, perfect, title="t", split_name="validation").read_text(encoding="utf-8")

    summary = "On 3 held-out validation examples the model is right 100.0% of the time; it made no mistakes."
    assert summary in text
    assert "Most frequent mistakes:\n\n- none" in text


def test_rewrite_replaces_the_old_report(tmp_path, metrics):
    write_report(tmp_path, metrics, title="first")
    write_report(tmp_path, metrics, title="second")

    assert (tmp_path / "report.md").read_text(encoding="utf-8").startswith("# second\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_matrix.png", "report.md"]


def test_cjk_and_long_labels_with_many_classes(tmp_path):
    # 25 classes, every third a Chinese label (the test machine may have no CJK font), others long.
    labels = [f"治疗方案 {i}" if i % 3 == 0 else f"a very long English label name, number {i}" for i in range(25)]
    y_true = [i % 25 for i in range(200)]
    y_pred = [(i * 7) % 25 if i % 4 == 0 else i % 25 for i in range(200)]
    metrics = classification_metrics(y_true, y_pred, labels)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_report(tmp_path, metrics, title="治疗方案分类")

    assert not [w for w in caught if "Glyph" in str(w.message)]
    assert (tmp_path / "confusion_matrix.png").read_bytes().startswith(PNG_MAGIC)
    text = path.read_text(encoding="utf-8")
    assert "| 0 | 治疗方案 0 |" in text
    assert "| 1 | a very long English label name, number 1 |" in text
    assert "shown in the image by their number" in text  # the long labels are cut and numbered


def test_pipe_in_label_does_not_break_the_table(tmp_path):
    metrics = classification_metrics([0, 1], [0, 1], ["in|patient", "out"])

    text = write_report(tmp_path, metrics, title="t").read_text(encoding="utf-8")

    assert "| 0 | in\\|patient | 1.0000 |" in text


def test_format_metrics_table(metrics):
    table = format_metrics_table(metrics)

    assert re.search(r"^accuracy\s+0\.6000$", table, re.MULTILINE)
    assert re.search(r"^macro F1\s+0\.4333$", table, re.MULTILINE)
    assert re.search(r"^  neutral\s+0\.8000  \(n=2\)$", table, re.MULTILINE)
    assert re.search(r"^  positive\s+0\.0000  \(n=1\)$", table, re.MULTILINE)


def test_format_metrics_table_aligns_wide_characters():
    metrics = classification_metrics([0, 1], [0, 1], ["治疗方案", "ok"])

    lines = format_metrics_table(metrics).splitlines()
    cjk_line = next(line for line in lines if "治疗方案" in line)
    ok_line = next(line for line in lines if line.startswith("  ok"))

    # Each CJK character takes two terminal columns, so it is followed by 4 fewer pad characters.
    assert cjk_line.index("1.0000") + len("治疗方案") == ok_line.index("1.0000")


def test_html_in_label_names_is_shown_as_text_not_rendered(tmp_path):
    from domainfit.evaluation.model_card import write_model_card
    from domainfit.metrics.classification import classification_metrics

    labels = ["<script>alert(1)</script>", "b|c", "plain"]
    metrics = classification_metrics([0, 1, 2, 0], [0, 1, 2, 1], labels)
    write_report(tmp_path, metrics, title="t")
    report = (tmp_path / "report.md").read_text()
    assert "<script>" not in report and "&lt;script&gt;" in report
    cfg = {
        "task": "text-classification",
        "output": {"dir": "runs/<b>x</b>"},
        "model": {"name": "m", "max_length": 8},
        "train": {
            "best_metric": "f1_macro",
            "epochs": 1,
            "batch_size": 1,
            "learning_rate": 1,
            "weight_decay": 0,
            "warmup_ratio": 0,
            "seed": 1,
        },
    }
    write_model_card(tmp_path, cfg=cfg, results={"test": metrics}, labels=labels)
    card = (tmp_path / "README.md").read_text()
    assert "<script>" not in card and "<b>" not in card and "&lt;script&gt;" in card


def test_run_report_arguments_come_from_config_yaml_and_metrics_json_alone(tmp_path, metrics):
    # the one builder the training loop and `domainfit stress` (writing the report again from files) both call
    from domainfit.evaluation import run_report_arguments

    warning = {"message": "a class is never predicted", "advice": ["train longer"]}
    cfg = {
        "task": "text-classification",
        "model": {"name": "minilm"},
        "data": {"train": "data/loans.csv"},
        "output": {"dir": "runs/loans-v2"},
        "train": {"best_metric": "f1_macro"},
    }
    results = {
        "best": {"step": 240, "epoch": 2},
        "history": HISTORY,
        "train": {"samples_per_second": 51.25},
        "warnings": [warning],
        "validation": metrics,
        "test": metrics,
    }
    assert run_report_arguments(cfg, results) == {
        "title": "domainfit text-classification: loans-v2",
        "split_name": "test",
        "context": {
            "model": "minilm",
            "train data": "data/loans.csv",
            "best checkpoint": "step 240 (epoch 2)",
            "selected by": "validation f1_macro",
            "train samples/s": 51.25,
        },
        "history": HISTORY,
        "best_metric": "f1_macro",
        "warnings": [warning],
    }
    # no test split, no checkpoint selected: the validation scores of the final weights
    no_test = {k: v for k, v in results.items() if k != "test"} | {"best": None}
    arguments = run_report_arguments(cfg, no_test)
    assert arguments["split_name"] == "validation" and arguments["context"]["best checkpoint"] == "final"
    text = write_report(tmp_path, metrics, **arguments).read_text(encoding="utf-8")
    assert "# domainfit text-classification: loans-v2\n" in text and "step 240" not in text
    assert "final" in text and "data/loans.csv" in text and "a class is never predicted" in text
