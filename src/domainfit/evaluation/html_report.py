"""report.html: the run's report as one self-contained page (inline CSS, images as data URIs, no network).

Written next to report.md, from the same data, at the end of every training run (the classification
:class:`~domainfit.evaluation.reports.RunReport` writes both) and by ``domainfit evaluate``: the health
banner, the scores, the confusion matrix, the learning curves (train loss and validation scores per
evaluation, from the history), the mistakes the model was surest of (``metrics["errors"]``, with their
probabilities), the run's
settings, and one section per optional result found in the folder's ``metrics.json`` (or the split's scores):
``calibration``, ``stress`` (robustness; also read from a ``stress.json`` beside it) and ``groups`` (slices).

A new optional section is one ``HTML_SECTIONS.register(key, HtmlSection(...))`` call; a section whose key is
absent shows its placeholder, so a reader sees what was not measured.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainfit.evaluation import markdown as md
from domainfit.evaluation.report import CONFUSION_MATRIX_NAME, _summary
from domainfit.evaluation.robustness import ROBUSTNESS_HEADERS, robustness_rows, robustness_summary
from domainfit.io.atomic import write_bytes_atomic
from domainfit.registry import Registry

HTML_REPORT_NAME = "report.html"
_STRESS_FILE = "stress.json"


@dataclass(frozen=True)
class HtmlSection:
    """An optional section of report.html, filled from one key of metrics.json.

    Attributes:
        title: the section's heading.
        render: ``value -> HTML`` (escaped by the renderer) for the key's value.
        missing: what the placeholder says when the key is absent (how to get the result).
    """

    title: str
    render: Callable[[Any], str]
    missing: str


HTML_SECTIONS: Registry[HtmlSection] = Registry("report.html section")


def write_html_report(
    out_dir: Path,
    metrics: dict,
    *,
    title: str,
    split_name: str = "test",
    context: dict | None = None,
    history: list[dict] | None = None,
    best_metric: str = "f1_macro",
    warnings: list[dict] | None = None,
) -> Path:
    """Write ``out_dir/report.html`` (atomically) for a single-label classification split.

    Args are those of :func:`domainfit.evaluation.report.write_report`, which must have run first: its
    ``confusion_matrix.png`` is embedded. ``out_dir/metrics.json``, when present, supplies the optional
    sections.

    Returns:
        The path of ``report.html``.
    """
    out_dir = Path(out_dir)
    run_metrics = _read_json(out_dir / "metrics.json")
    body = [
        f"<h1>{_e(title)}</h1>",
        _banner(warnings or []),
        f"<p class='summary'>{_summary(metrics, split_name)}</p>",
        _scores(metrics),
        _confusion(out_dir / CONFUSION_MATRIX_NAME, split_name),
        _learning_curves(history or [], best_metric),
        _errors(metrics.get("errors"), split_name),
    ]
    for key in HTML_SECTIONS.names():
        section = HTML_SECTIONS.get(key)
        value = metrics.get(key, run_metrics.get(key))
        if value is None and key == "stress":
            value = _read_json(out_dir / _STRESS_FILE) or None
        inner = section.render(value) if value else f"<p class='missing'>Not measured: {_e(section.missing)}</p>"
        body.append(f"<section id='{_e(key)}'><h2>{_e(section.title)}</h2>{inner}</section>")
    if context:
        body.append(_context(context))
    page = _PAGE_HEAD % (_e(title), _CSS) + "\n".join(part for part in body if part) + "\n</body>\n</html>\n"
    path = out_dir / HTML_REPORT_NAME
    write_bytes_atomic(path, page.encode("utf-8"))
    return path


# --- sections ------------------------------------------------------------------------------------------


def _banner(warnings: list[dict]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{_e(w['message'])}</li>" for w in warnings)
    advice = list(dict.fromkeys(a for w in warnings for a in w.get("advice", [])))
    tips = "".join(f"<li>{_e(a)}</li>" for a in advice)
    return (
        f"<div class='banner' role='alert'><strong>⚠️ Warning</strong><ul>{items}</ul>"
        + (f"<p>Likely causes, and what to try:</p><ul>{tips}</ul>" if tips else "")
        + "</div>"
    )


def _scores(metrics: dict) -> str:
    headline = _table(
        ["", "Macro", "Micro", "Weighted"],
        [
            [name, *(_num(metrics[f"{key}_{average}"]) for average in ("macro", "micro", "weighted"))]
            for name, key in (("Precision", "precision"), ("Recall", "recall"), ("F1", "f1"))
        ],
    )
    rows = [
        [
            str(i),
            label,
            *(_num(metrics["per_class"][label][k]) for k in ("precision", "recall", "f1")),
            str(metrics["per_class"][label]["support"]),
        ]
        for i, label in enumerate(metrics["labels"])
    ]
    return (
        f"<section id='scores'><h2>Scores</h2><p class='big'>Accuracy <strong>{_num(metrics['accuracy'])}"
        f"</strong> on {metrics['n']} examples</p>{headline}<h3>Per label</h3>"
        f"{_table(['#', 'Label', 'Precision', 'Recall', 'F1', 'Support'], rows)}</section>"
    )


def _confusion(png_path: Path, split_name: str) -> str:
    if not png_path.is_file():
        return ""
    return (
        f"<section id='confusion'><h2>Confusion matrix</h2>{_img(png_path.read_bytes(), 'Confusion matrix')}"
        f"<p>Rows are the true label, columns the model's answer, on the {_e(split_name)} split; the colour "
        "shows the share of each true label.</p></section>"
    )


def _learning_curves(history: list[dict], best_metric: str) -> str:
    # selected by validation loss: the right panel shows macro-F1 (or accuracy), the loss is on the left
    metric = best_metric if best_metric != "loss" else "f1_macro"
    if metric not in ((history[0].get("validation") or {}) if history else {}):
        metric = "accuracy" if best_metric == "loss" else metric
    steps = [r.get("step") for r in history]
    train = [(s, r.get("train_loss")) for s, r in zip(steps, history) if _finite(r.get("train_loss"))]
    validation = {
        key: [
            (s, (r.get("validation") or {}).get(key))
            for s, r in zip(steps, history)
            if _finite((r.get("validation") or {}).get(key))
        ]
        for key in (metric, "loss")
    }
    if not train and not any(validation.values()):
        return (
            "<section id='curves'><h2>Learning curves</h2><p class='missing'>No training history: this "
            "report scores a finished model.</p></section>"
        )
    png = _curves_png(train, validation, metric)
    return (
        f"<section id='curves'><h2>Learning curves</h2>{_img(png, 'Learning curves')}<p>Train loss (mean "
        f"since the previous log) and validation scores at each evaluation, by training step.</p></section>"
    )


def _curves_png(train: list[tuple], validation: dict[str, list[tuple]], metric: str) -> bytes:
    # Figure + Agg canvas rather than pyplot: no global figure state (as report.py's confusion matrix)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    loss_ax, metric_ax = fig.subplots(1, 2)
    if train:
        loss_ax.plot(*zip(*train), marker="o", label="train loss")
    if validation.get("loss"):
        loss_ax.plot(*zip(*validation["loss"]), marker="s", label="validation loss")
    loss_ax.set_xlabel("step")
    loss_ax.set_title("Loss")
    loss_ax.legend()
    if validation.get(metric):
        metric_ax.plot(*zip(*validation[metric]), marker="o", color="tab:green")
        metric_ax.set_title(f"Validation {metric}")
    else:
        metric_ax.axis("off")
    metric_ax.set_xlabel("step")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _errors(errors: list[dict] | None, split_name: str) -> str:
    if errors is None:
        return ""
    if not errors:
        return "<section id='errors'><h2>Mistakes</h2><p>The model made no mistakes on this split.</p></section>"
    rows = [
        [
            e["text"],
            e["label"],
            e["predicted"],
            _num(e["probability"]),
            ", ".join(f"{label} {p:.2f}" for label, p in e["probabilities"].items()),
        ]
        for e in errors
    ]
    return (
        f"<section id='errors'><h2>Mistakes</h2><p>The {len(errors)} misclassified {_e(split_name)} examples "
        f"the model was surest of: a confident mistake often shows a mislabelled example or a missing "
        f"rule.</p>{_table(['Text', 'True label', 'Predicted', 'Probability', 'Likeliest labels'], rows)}"
        "</section>"
    )


def _context(context: dict) -> str:
    rows = [[key, str(value)] for key, value in md.flatten(context)]
    return f"<section id='run'><h2>Run</h2>{_table(['Setting', 'Value'], rows)}</section>"


# --- optional sections ------------------------------------------------------------------------------


def _stress_html(stress: dict) -> str:
    parts = [f"<p>{robustness_summary(stress)}</p>", _table(ROBUSTNESS_HEADERS, robustness_rows(stress))]
    for name, scores in stress.get("perturbations", {}).items():
        rows = [
            [
                e["text"],
                e["perturbed"],
                e["label"],
                f"{e['before']['label']} ({e['before']['probability']:.2f})",
                f"{e['after']['label']} ({e['after']['probability']:.2f})",
            ]
            for e in scores.get("examples", [])
        ]
        if rows:
            parts.append(
                f"<h3>Flips under {_e(name)}</h3>"
                + _table(["Text", "Perturbed", "True label", "Before", "After"], rows)
            )
    return "".join(parts)


def _generic_html(value: Any) -> str:
    """Any JSON value as a two-column table of its numbers and short strings (nested keys dotted)."""
    if not isinstance(value, dict):
        return f"<pre>{_e(json.dumps(value, indent=1, ensure_ascii=False)[:5000])}</pre>"
    rows = [
        [key, _num(v) if isinstance(v, float) else str(v)]
        for key, v in md.flatten(value)
        if isinstance(v, (int, float, str, bool)) or v is None
    ]
    return _table(["Key", "Value"], rows)


HTML_SECTIONS.register(
    "calibration",
    HtmlSection("Calibration", _generic_html, "no calibration results in this run's metrics.json (key 'calibration')."),
)
HTML_SECTIONS.register(
    "stress",
    HtmlSection(
        "Robustness",
        _stress_html,
        "run `domainfit stress RUN/model DATA`: it records the results in this run's metrics.json and "
        "writes this report again (beside an evaluation: `--output THIS_FOLDER`, for its stress.json).",
    ),
)
HTML_SECTIONS.register(
    "groups",
    HtmlSection("Slices", _generic_html, "no per-group results in this run's metrics.json (key 'groups')."),
)


# --- HTML helpers -----------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text))


def _num(value: object) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4f}"
    return _e(value)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent or unreadable: the optional sections show their placeholders
        return {}
    return data if isinstance(data, dict) else {}


_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #1f2328; }
h1 { font-size: 1.6em; border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #eaeef2; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td { max-width: 520px; overflow-wrap: anywhere; }
img { max-width: 100%; height: auto; }
.banner { background: #ffebe9; border: 1px solid #cf222e; border-radius: 6px; padding: .6em 1em; }
.missing { color: #656d76; font-style: italic; }
.big { font-size: 1.2em; }
"""

# %-formatting, not str.format: the CSS is full of braces
_PAGE_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s</title>
<style>%s</style>
</head>
<body>
"""
