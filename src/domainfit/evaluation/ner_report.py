"""``report.md`` for a token-classification run: entity P/R/F1, per-type table, history, example errors.

Written by ``domainfit train`` through the task's ``write_report`` (the text-classification report's
confusion matrix has no meaning for entities). The file is written atomically like
:mod:`domainfit.evaluation.report`, whose table and history helpers it reuses.
"""

from __future__ import annotations

from pathlib import Path

from domainfit.evaluation import markdown as md
from domainfit.evaluation.health import banner_sections
from domainfit.evaluation.report import REPORT_NAME
from domainfit.evaluation.reports import REPORTS, RunReport
from domainfit.io.atomic import write_bytes_atomic

# the columns of the history table (all metrics stay in metrics.json)
HISTORY_KEYS = ("entity_f1", "entity_precision", "entity_recall", "token_accuracy", "loss")

_GLOSSARY = """## How to read the scores

- An entity counts as **found** only if its type and both its first and last word match the gold
  annotation exactly (strict IOB2, as CoNLL and seqeval score it). A mention found with one word too
  many or too few counts as one miss and one false alarm.
- **Precision**: of the entities the model marked, the share that are right.
- **Recall**: of the entities in the data, the share the model found.
- **F1**: one number balancing the two; the entity F1 over all mentions (micro) is the figure papers report.
- **Token accuracy**: share of words with the right tag, `O` included; high even for a poor model,
  because most words are outside any entity."""


def write_ner_report(
    out_dir: Path,
    metrics: dict,
    *,
    title: str,
    split_name: str = "test",
    context: dict | None = None,
    history: list[dict] | None = None,
    best_metric: str = "entity_f1",
    warnings: list[dict] | None = None,
) -> Path:
    """Write ``report.md`` into ``out_dir`` (atomically).

    Args:
        out_dir: folder to write into; created if missing.
        metrics: the dict of :func:`domainfit.metrics.ner.entity_metrics`, with ``errors``
            (``{"missed": [...], "spurious": [...]}``) when the task collected examples.
        title: the report's heading.
        split_name: which split was scored.
        context: facts about the run, listed under "Run".
        history: per-evaluation records (``{"epoch", "step", "train_loss", "validation": {...}}``).
        best_metric: the validation metric that marks the best evaluation in the history table.
        warnings: health warnings (an entity type never marked), shown as a banner above the title.

    Returns:
        The path of ``report.md``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [
        *banner_sections(warnings or []),
        f"# {title}",
        _summary(metrics, split_name),
        _per_type_section(metrics),
    ]
    errors = metrics.get("errors") or {}
    if errors.get("missed") or errors.get("spurious"):
        sections.append(_errors_section(errors))
    if history:
        keys = [k for k in (*HISTORY_KEYS, best_metric) if k in (history[-1].get("validation") or {})]
        keys = list(dict.fromkeys(keys))
        slim = [
            {**record, "validation": {k: (record.get("validation") or {}).get(k) for k in keys}} for record in history
        ]
        sections.append(md.history_section(slim, best_metric))
    if context:
        sections.append(md.context_section(context))
    sections.append(_GLOSSARY)
    path = out_dir / REPORT_NAME
    write_bytes_atomic(path, ("\n\n".join(sections) + "\n").encode("utf-8"))
    return path


def _summary(metrics: dict, split_name: str) -> str:
    rows = [
        ["Entity F1", f"{metrics['entity_f1']:.4f}"],
        ["Entity precision", f"{metrics['entity_precision']:.4f}"],
        ["Entity recall", f"{metrics['entity_recall']:.4f}"],
        ["Token accuracy", f"{metrics['token_accuracy']:.4f}"],
    ]
    if len(metrics.get("labels", [])) > 1:
        rows.insert(1, ["Entity F1, mean over types", f"{metrics['f1_macro']:.4f}"])
    text = (
        f"On the **{split_name}** split ({metrics['n']} sentences, {metrics['words']} words), the model found "
        f"{md.percent(metrics['entity_recall'])} of the {metrics['gold_entities']} entities, and "
        f"{md.percent(metrics['entity_precision'])} of the {metrics['predicted_entities']} entities it marked "
        f"were right: **entity F1 {metrics['entity_f1']:.4f}**."
    )
    return "\n".join([text, "", md.table(["Metric", "Value"], rows)])


def _per_type_section(metrics: dict) -> str:
    rows = []
    for label in metrics["labels"]:
        s = metrics["per_class"][label]
        rows.append(
            [
                md.escape(label),
                f"{s['precision']:.4f}",
                f"{s['recall']:.4f}",
                f"{s['f1']:.4f}",
                str(s["support"]),
                str(s["predicted"]),
            ]
        )
    return "\n".join(
        ["## Per entity type", "", md.table(["Type", "Precision", "Recall", "F1", "Gold", "Predicted"], rows)]
    )


def _errors_section(errors: dict) -> str:
    lines = [
        "## Example errors",
        "",
        "The first mistakes in the scored split; `[[ ]]` marks the entity in its sentence.",
    ]
    for kind, heading in (
        ("missed", "Missed (in the data, not found)"),
        ("spurious", "Spurious (marked, but not in the data)"),
    ):
        if errors.get(kind):
            rows = [[md.escape(e["label"]), f"`{md.escape(e['text'])}`", md.escape(e["context"])] for e in errors[kind]]
            lines += ["", f"### {heading}", "", md.table(["Type", "Entity", "Context"], rows, numeric_from=3)]
    return "\n".join(lines)


def format_ner_metrics(metrics: dict) -> str:
    """The terminal table: entity P/R/F1 overall and per type, token accuracy."""
    width = max([len(t) for t in metrics["labels"]] + [16])
    lines = [
        f"{'sentences':{width}}  {metrics['n']}",
        f"{'entity F1':{width}}  {metrics['entity_f1']:.4f}  (P {metrics['entity_precision']:.4f}, "
        f"R {metrics['entity_recall']:.4f})",
        f"{'token accuracy':{width}}  {metrics['token_accuracy']:.4f}",
        "per-type F1",
    ]
    for label in metrics["labels"]:
        scores = metrics["per_class"][label]
        lines.append(
            f"  {label:{width - 2}}  {scores['f1']:.4f}  (gold {scores['support']}, predicted {scores['predicted']})"
        )
    return "\n".join(lines)


def _report_ner_run(task, out_dir: Path, metrics: dict, **kwargs) -> Path:  # noqa: ARG001
    return write_ner_report(out_dir, metrics, **kwargs)


REPORTS.register("token-classification", RunReport(write_report=_report_ner_run, format_metrics=format_ner_metrics))
