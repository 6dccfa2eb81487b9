"""The multi-label evaluation report: ``report.md`` for a reader who is not an ML engineer.

Written by the ``multi-label-classification`` task at the end of ``domainfit train`` (the task's
``write_report``). It takes the dict of :func:`domainfit.metrics.multilabel.score_with_thresholds`
and writes the headline scores at the tuned thresholds beside the default threshold, a per-label table
with each label's threshold, the training history and the run's settings. There is no confusion matrix:
each label is its own yes/no decision.
"""

from __future__ import annotations

from pathlib import Path

from domainfit.evaluation import markdown as md
from domainfit.evaluation.health import banner_sections
from domainfit.evaluation.report import REPORT_NAME
from domainfit.evaluation.reports import REPORTS, RunReport
from domainfit.io.atomic import write_text_atomic
from domainfit.metrics.multilabel import DEFAULT_SUFFIX


def write_multilabel_report(
    out_dir: Path,
    metrics: dict,
    *,
    title: str,
    split_name: str = "test",
    context: dict | None = None,
    history: list[dict] | None = None,
    best_metric: str = "f1_micro",
    warnings: list[dict] | None = None,
) -> Path:
    """Write ``report.md`` into ``out_dir`` atomically (same arguments as ``evaluation.report.write_report``).

    Args:
        out_dir: folder to write into; created if missing.
        metrics: the dict of ``score_with_thresholds``.
        title: the report's heading.
        split_name: which split was scored.
        context: facts about the run, listed under "Run".
        history: per-evaluation records (``epoch``, ``step``, ``train_loss``, ``validation``).
        best_metric: the validation metric that marks the best evaluation in the history.
        warnings: health warnings, shown as a banner above the title.

    Returns:
        The path of ``report.md``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [
        *banner_sections(warnings or []),
        f"# {title}",
        _summary(metrics, split_name),
        _headline(metrics),
        _per_label(metrics),
    ]
    if history:
        sections.append(md.history_section(_short_history(history, best_metric), best_metric))
    if context:
        sections.append(md.context_section(context))
    sections.append(_GLOSSARY)
    path = out_dir / REPORT_NAME
    write_text_atomic(path, "\n\n".join(sections) + "\n")
    return path


def _summary(metrics: dict, split_name: str) -> str:
    per = metrics["per_class"]
    present = [label for label in metrics["labels"] if per[label]["support"] > 0]
    text = (
        f"On {metrics['n']} held-out {split_name} examples the model finds the right labels with a micro F1 "
        f"of {metrics['f1_micro']:.2f} (every label decision pooled) and a macro F1 of "
        f"{metrics['f1_macro']:.2f} (each label counted equally). {_percent(metrics['subset_accuracy'])} of "
        f"the examples get exactly the right set of labels, and {_percent(metrics['hamming_loss'])} of all "
        "individual yes/no label decisions are wrong."
    )
    gain = metrics["f1_macro"] - metrics["f1_macro" + DEFAULT_SUFFIX]
    text += (
        f" Per-label thresholds tuned on the validation set change macro F1 by {gain:+.3f} against a "
        f"plain {metrics['default_threshold']:g} threshold."
    )
    if present:
        weakest = min(present, key=lambda label: (per[label]["f1"], -per[label]["support"]))
        text += (
            f" The weakest label is '{md.escape(weakest)}' (F1 {per[weakest]['f1']:.2f}, "
            f"support {per[weakest]['support']})."
        )
    return text


def _headline(metrics: dict) -> str:
    default = metrics["default_threshold"]
    rows = []
    for key, name in (
        ("f1_micro", "Micro F1"),
        ("f1_macro", "Macro F1"),
        ("f1_samples", "Samples F1"),
        ("hamming_loss", "Hamming loss (lower is better)"),
        ("subset_accuracy", "Subset accuracy"),
    ):
        rows.append([name, f"{metrics[key]:.4f}", f"{metrics[key + DEFAULT_SUFFIX]:.4f}"])
    pr = [
        [f"{name} {average}", f"{metrics[f'{key}_{average}']:.4f}", ""]
        for average in ("micro", "macro")
        for key, name in (("precision", "Precision"), ("recall", "Recall"))
    ]
    return "\n".join(
        [
            "## Headline scores",
            "",
            md.table(["", "Tuned thresholds", f"Threshold {default:g}"], rows + pr),
            "",
            f"{metrics['n']} examples, {len(metrics['labels'])} labels.",
        ]
    )


def _per_label(metrics: dict) -> str:
    rows = []
    for label in metrics["labels"]:
        s = metrics["per_class"][label]
        rows.append(
            [
                md.escape(label),
                f"{s['threshold']:.2f}",
                f"{s['precision']:.4f}",
                f"{s['recall']:.4f}",
                f"{s['f1']:.4f}",
                f"{s['f1_default']:.4f}",
                str(s["support"]),
                str(s["predicted"]),
            ]
        )
    headers = [
        "Label",
        "Threshold",
        "Precision",
        "Recall",
        "F1",
        f"F1 at {metrics['default_threshold']:g}",
        "Support",
        "Predicted",
    ]
    lines = [
        "## Scores per label",
        "",
        md.table(headers, rows),
        "",
        "A label is given when its probability is at least its threshold; thresholds were chosen on the "
        "validation set to maximise each label's F1, and are stored with the model.",
    ]
    absent = [label for label in metrics["labels"] if metrics["per_class"][label]["support"] == 0]
    if absent:
        lines += ["", f"Not present in this split (scores are 0 by convention): {', '.join(map(md.escape, absent))}."]
    return "\n".join(lines)


def _short_history(history: list[dict], best_metric: str) -> list[dict]:
    """History with only the validation columns a reader needs (the full record is in metrics.json)."""
    keep = {"f1_micro", "f1_macro", "hamming_loss", "f1_micro" + DEFAULT_SUFFIX, "loss", best_metric}
    return [
        {**record, "validation": {k: v for k, v in (record.get("validation") or {}).items() if k in keep}}
        for record in history
    ]


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


_GLOSSARY = """## How to read the scores

- Each label is a separate yes/no decision; an example can have several labels, or none.
- **Precision** for a label: when the model gives that label, how often it is right.
- **Recall** for a label: of the examples that truly have that label, how many the model finds.
- **F1**: one number balancing precision and recall; 1.0 is perfect.
- **Micro** averages pool every label decision (common labels weigh more); **macro** averages count
  each label equally; **samples** averages score each example's label set, then average.
- **Hamming loss**: the share of individual label decisions that are wrong (lower is better).
- **Subset accuracy**: the share of examples whose predicted set of labels is exactly right.
- **Threshold**: the probability above which a label is given; tuned per label on the validation set."""


def _report_multilabel_run(task, out_dir: Path, metrics: dict, **kwargs) -> Path:  # noqa: ARG001
    return write_multilabel_report(out_dir, metrics, **kwargs)


REPORTS.register("multi-label-classification", RunReport(write_report=_report_multilabel_run))
