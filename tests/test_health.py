"""Collapse detection: a model that answers one class, never answers some, or scores at chance is flagged."""

from __future__ import annotations

import json
import logging

import numpy as np

from domainfit.config import RunConfig
from domainfit.evaluation.health import HealthMonitor, banner_sections, check_metrics, check_predictions
from domainfit.evaluation.report import write_report
from domainfit.metrics.classification import classification_metrics

LABELS = ["negative", "neutral", "positive"]
# PhraseBank-like test split: 60 negative, 290 neutral, 134 positive
Y_TRUE = [0] * 60 + [1] * 290 + [2] * 134
HEALTHY = [0] * 50 + [1] * 10 + [1] * 270 + [0] * 10 + [2] * 10 + [2] * 120 + [1] * 14


def _codes(warnings: list[dict]) -> list[str]:
    return [w["code"] for w in warnings]


def test_healthy_predictions_give_no_warnings():
    assert check_predictions(Y_TRUE, HEALTHY, LABELS) == []


def test_collapse_onto_the_majority_class():
    """The Chinese hotel-review case: every answer the majority class; macro-F1 is the majority baseline."""
    warnings = check_predictions(Y_TRUE, [1] * len(Y_TRUE), LABELS)

    assert _codes(warnings) == ["collapsed", "below_majority_baseline"]
    collapsed = warnings[0]
    message = collapsed["message"]
    assert message.startswith("This model predicts only 'neutral' for every one of the 484 examples")
    assert "'negative' (60 examples) and 'positive' (134 examples) are never predicted" in message
    assert collapsed["classes"] == {"neutral": 290, "negative": 60, "positive": 134}
    advice = " ".join(collapsed["advice"])
    for key in ("train.learning_rate", "train.epochs", "regularization.class_weights", "regularization.oversample"):
        assert f"`{key}" in advice
    assert "no better than always answering 'neutral'" in warnings[1]["message"]


def test_collapse_with_a_few_stray_answers_still_counts():
    y_pred = [1] * len(Y_TRUE)
    y_pred[0] = 0  # 483 of 484 neutral
    warnings = check_predictions(Y_TRUE, y_pred, LABELS)
    assert warnings[0]["code"] == "collapsed"
    assert "for 483 of the 484 examples (99.8%)" in warnings[0]["message"]


def test_collapse_onto_a_rare_class_does_not_blame_imbalance():
    warnings = check_predictions(Y_TRUE, [0] * len(Y_TRUE), LABELS)
    assert warnings[0]["code"] == "collapsed"
    assert not any("imbalance" in a for a in warnings[0]["advice"])


def test_class_never_predicted_names_it_with_its_support():
    y_pred = [1 if y == 0 else y for y in HEALTHY]  # negatives all read as neutral
    warnings = check_predictions(Y_TRUE, y_pred, LABELS)

    assert _codes(warnings) == ["never_predicted"]
    assert warnings[0]["message"].startswith("'negative' (60 examples) is never predicted")
    assert warnings[0]["classes"] == {"negative": 60}


def test_near_chance_without_collapse():
    y_true = [0, 1, 2] * 30
    y_pred = [0, 0, 0, 1, 1, 1, 2, 2, 2] * 10  # every class answered, one answer in three right
    warnings = check_predictions(y_true, y_pred, LABELS)
    assert _codes(warnings) == ["near_chance"]
    assert "close to the 0.333" in warnings[0]["message"]


def test_a_truly_skewed_split_predicted_well_is_not_collapsed():
    y_true = [0] * 96 + [1] * 4
    y_pred = [0] * 96 + [1] * 3 + [0]  # 97% answered class 0, as the data is 96% class 0
    assert check_predictions(y_true, y_pred, ["ok", "defect"]) == []


def test_advice_uses_the_run_config():
    cfg = RunConfig()
    cfg.regularization.class_weights = "balanced"
    cfg.train.learning_rate = 5e-5
    advice = " ".join(check_predictions(Y_TRUE, [1] * len(Y_TRUE), LABELS, cfg=cfg)[0]["advice"])
    assert "(now 5e-05)" in advice and "(now 3)" in advice
    assert "regularization.class_weights" not in advice  # already on
    assert "`regularization.oversample: true`" in advice

    cfg.train.learning_rate = 1e-8
    advice = " ".join(check_predictions(Y_TRUE, [1] * len(Y_TRUE), LABELS, cfg=cfg)[0]["advice"])
    assert "Learning rate too low" in advice and "too high" not in advice

    cfg.task = "image-classification"  # its loss has no class weights: do not point at keys it ignores
    advice = " ".join(check_predictions(Y_TRUE, [1] * len(Y_TRUE), LABELS, cfg=cfg)[0]["advice"])
    assert "regularization." not in advice and "add examples of them" in advice


def test_entity_type_never_marked_and_no_entities_at_all():
    from domainfit.metrics.ner import entity_metrics

    gold = [["B-Chem", "O", "B-Dis", "I-Dis"], ["B-Dis", "O", "O", "B-Chem"]]
    healthy = entity_metrics(gold, gold, ["Chem", "Dis"])
    assert check_metrics(healthy) == []

    no_chem = entity_metrics(gold, [["O", "O", "B-Dis", "I-Dis"], ["B-Dis", "O", "O", "O"]], ["Chem", "Dis"])
    warnings = check_metrics(no_chem)
    assert _codes(warnings) == ["never_predicted"]
    assert warnings[0]["message"].startswith("'Chem' (2 entities) is never marked")

    nothing = entity_metrics(gold, [["O"] * 4, ["O"] * 4], ["Chem", "Dis"])
    warnings = check_metrics(nothing)
    assert _codes(warnings) == ["collapsed"]
    assert "marks no entities at all" in warnings[0]["message"] and "4 entities" in warnings[0]["message"]


def test_multi_label_no_label_every_label_and_one_never_given():
    from domainfit.metrics.multilabel import multilabel_metrics

    gold = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 1, 0]])  # rash is the rarest label
    labels = ["fever", "cough", "rash"]
    assert check_metrics(multilabel_metrics(gold, gold, labels)) == []
    none = check_metrics(multilabel_metrics(gold, np.zeros_like(gold), labels))
    assert _codes(none) == ["collapsed"] and "no label to any example" in none[0]["message"]
    every = check_metrics(multilabel_metrics(gold, np.ones_like(gold), labels))
    assert _codes(every) == ["collapsed"] and "every label to every example" in every[0]["message"]
    no_rash = gold.copy()
    no_rash[:, 2] = 0
    warnings = check_metrics(multilabel_metrics(gold, no_rash, labels))
    assert _codes(warnings) == ["never_predicted"] and warnings[0]["classes"] == {"rash": 1}
    assert "multi_label.pos_weight" in " ".join(warnings[0]["advice"])


def test_scores_without_classes_give_no_warnings():
    assert check_metrics({"n": 10, "perplexity": 3.2, "loss": 1.1}) == []  # generation


def test_monitor_warns_once_per_change_and_keeps_a_progress_bar_note(caplog):
    collapsed = classification_metrics(Y_TRUE, [1] * len(Y_TRUE), LABELS)
    healthy = classification_metrics(Y_TRUE, HEALTHY, LABELS)
    monitor = HealthMonitor()
    with caplog.at_level(logging.INFO, logger="domainfit.evaluation.health"):
        notes = [
            monitor.update(m, step)
            for step, m in enumerate([collapsed, collapsed, collapsed, healthy, collapsed], start=1)
        ]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(":")[0] for r in warned] == ["validation at step 1", "validation at step 5"]
    assert "predicts only 'neutral'" in warned[0].getMessage()
    assert sum("no longer applies" in r.getMessage() for r in caplog.records) == 1  # at step 4
    assert notes[0] == notes[1] == {"warning": "collapsed to one answer"} and notes[3] == {}
    assert monitor.postfix == notes[4]


def test_report_opens_with_the_banner(tmp_path):
    metrics = classification_metrics(Y_TRUE, [1] * len(Y_TRUE), LABELS)
    warnings = check_metrics(metrics)
    lines = write_report(tmp_path, metrics, title="t", warnings=warnings).read_text(encoding="utf-8")
    lines = lines.splitlines()

    assert lines[0] == "> [!CAUTION]"
    assert lines[1].startswith("> ⚠️ **This model predicts only 'neutral'")
    assert "> Likely causes, and what to try:" in lines
    title = lines.index("# t")
    assert all(line.startswith(">") for line in lines[: title - 1])  # one blockquote, then the usual report
    # a healthy report has none
    healthy = classification_metrics(Y_TRUE, HEALTHY, LABELS)
    text = write_report(tmp_path, healthy, title="t", warnings=check_metrics(healthy)).read_text("utf-8")
    assert text.startswith("# t\n") and "CAUTION" not in text


def test_banner_lists_each_piece_of_advice_once():
    metrics = classification_metrics(Y_TRUE, [1] * len(Y_TRUE), LABELS)
    (banner,) = banner_sections(check_metrics(metrics))
    advice = [line for line in banner.splitlines() if line.startswith("> - ")]
    assert len(advice) == len(set(advice)) >= 3
    assert banner_sections([]) == []


def test_other_reports_and_model_card_open_with_the_banner(tmp_path):
    from domainfit.config import to_dict
    from domainfit.evaluation.image_report import write_image_report
    from domainfit.evaluation.model_card import write_model_card
    from domainfit.evaluation.multilabel_report import write_multilabel_report
    from domainfit.evaluation.ner_report import write_ner_report
    from domainfit.metrics.multilabel import score_with_thresholds
    from domainfit.metrics.ner import entity_metrics

    image = classification_metrics([0, 0, 1, 1], [0, 0, 0, 0], ["crack", "scratch"])
    gold = [["B-Dis", "O"], ["O", "B-Dis"]]
    ner = entity_metrics(gold, [["O", "O"], ["O", "O"]], ["Dis"])
    labels_gold = np.array([[1, 0], [0, 1], [1, 1]])
    multi = score_with_thresholds(np.zeros((3, 2)), labels_gold, ["a", "b"], np.full(2, 0.5), 0.5)
    no_grid = {"model": None, "inputs": None, "examples": [], "labels": ["crack", "scratch"]}
    writers = [(write_image_report, image, no_grid), (write_ner_report, ner, {}), (write_multilabel_report, multi, {})]
    for k, (writer, metrics, extra) in enumerate(writers):
        warnings = check_metrics(metrics)
        assert warnings and warnings[0]["code"] == "collapsed", writer.__name__
        out = tmp_path / str(k)
        text = writer(out, metrics, title="t", warnings=warnings, **extra).read_text(encoding="utf-8")
        assert text.startswith(f"> [!CAUTION]\n> ⚠️ **{warnings[0]['message']}**"), writer.__name__

    card_dir = tmp_path / "model"
    card_dir.mkdir()
    cfg = to_dict(RunConfig())
    results = {"test": image, "warnings": check_metrics(image)}
    write_model_card(card_dir, cfg=cfg, results=results, labels=["crack", "scratch"])
    card = (card_dir / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")  # the Hub metadata stays first
    assert card.index("> [!CAUTION]") < card.index("## Use")
    assert "This model predicts only 'crack'" in card
    json.dumps(results)  # warnings are plain JSON


def test_collapsed_training_run_writes_the_warning_everywhere(tmp_path, tiny_bert, phrasebank_split, caplog):
    """A real run that cannot learn (learning rate 1e-8 on a random tiny model) must not ship looking fine."""
    from test_training import write_config

    from domainfit.tasks import load_run_config as load_config
    from domainfit.training import train

    out = tmp_path / "out"
    cfg = load_config(
        write_config(tmp_path, tiny_bert, phrasebank_split, out, epochs=1, learning_rate=1e-8, eval_every=5)
    )
    with caplog.at_level(logging.WARNING, logger="domainfit.evaluation.health"):
        results = train(cfg)

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["warnings"] == results["warnings"]
    assert metrics["warnings"][0]["code"] == "collapsed"
    # the warning names the one class the confusion matrix's columns say it answers
    columns = np.asarray(metrics["test"]["confusion_matrix"]).sum(axis=0)
    assert (columns > 0).sum() == 1
    only = metrics["test"]["labels"][int(columns.argmax())]
    assert f"predicts only '{only}'" in metrics["warnings"][0]["message"]
    assert "Learning rate too low: `train.learning_rate` is 1e-08" in metrics["warnings"][0]["advice"][0]

    report = (out / "report.md").read_text(encoding="utf-8").splitlines()
    assert report[0] == "> [!CAUTION]" and f"predicts only '{only}'" in report[1]
    assert f"predicts only '{only}'" in (out / "model" / "README.md").read_text(encoding="utf-8")
    # 2 validations, both collapsed the same way: warned once while training, once more for the test split
    during = [r for r in caplog.records if r.getMessage().startswith("validation at step")]
    assert len(during) == 1 and "predicts only" in during[0].getMessage()
    assert sum(r.getMessage().startswith("This model predicts only") for r in caplog.records) == 1
