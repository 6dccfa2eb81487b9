"""The evaluation report: ``report.md`` and ``confusion_matrix.png``, written for a reader who is not
an ML engineer, plus a compact table for the terminal at the end of a run.

``write_report`` takes the dict from :func:`domainfit.metrics.classification.classification_metrics`
and writes a plain-language summary, the headline and per-class scores, the confusion matrix (as an
image and as a list of the most frequent mistakes), the per-epoch history and the run's settings.
"""

from __future__ import annotations

import functools
import io
import unicodedata
import warnings
from pathlib import Path

from domainfit.evaluation import markdown as md
from domainfit.evaluation.health import banner_sections
from domainfit.io.atomic import write_bytes_atomic

REPORT_NAME = "report.md"
CONFUSION_MATRIX_NAME = "confusion_matrix.png"

_TOP_CONFUSIONS = 10
_MAX_PLOT_LABEL_CHARS = 28

# Fonts that draw Chinese/Japanese/Korean text, by family name, most common first. Only used as a
# fallback after the default font, so Latin labels look the same on every machine.
_CJK_FONT_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Heiti SC",
    "Arial Unicode MS",
)


def write_report(
    out_dir: Path,
    metrics: dict,
    *,
    title: str,
    split_name: str = "test",
    context: dict | None = None,
    history: list[dict] | None = None,
    best_metric: str = "f1_macro",
    warnings: list[dict] | None = None,
    extra_sections: list[str] | None = None,
) -> Path:
    """Write ``report.md`` and ``confusion_matrix.png`` into ``out_dir``.

    Both files are written atomically (a temp file in ``out_dir``, then ``os.replace``), so a reader
    never sees half a report.

    Args:
        out_dir: folder to write into; created if missing.
        metrics: the dict returned by ``classification_metrics``.
        title: the report's heading, e.g. ``"Sentiment of financial news"``.
        split_name: which data split was scored, in the summary and headings.
        context: facts about the run (model, data, config, ...) listed under "Run"; nested dicts
            are flattened to dotted keys.
        history: per-epoch records such as ``{"epoch": 1, "step": 120, "train_loss": 0.41,
            "validation": {"f1_macro": 0.80, "accuracy": 0.83, "loss": 0.52}}``.
        best_metric: the validation metric that marks the best epoch in the history table.
        warnings: health warnings (:func:`domainfit.evaluation.health.check_metrics`); the report opens
            with them as a banner.
        extra_sections: Markdown sections placed after the confusion matrix (calibration, groups: see
            :func:`domainfit.evaluation.calibration_report.trust_sections`).

    Returns:
        The path of ``report.md``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = list(metrics["labels"])
    matrix = metrics["confusion_matrix"]

    plot_labels, numbered = _plot_labels(labels)
    png = _confusion_matrix_png(matrix, plot_labels, title=f"Confusion matrix ({split_name} split)")
    write_bytes_atomic(out_dir / CONFUSION_MATRIX_NAME, png)

    sections = [
        *banner_sections(warnings or []),
        f"# {title}",
        _summary(metrics, split_name),
        _headline_section(metrics),
        _per_class_section(metrics),
        _confusion_section(metrics, numbered),
        *(extra_sections or []),
    ]
    if history:
        sections.append(md.history_section(history, best_metric))
    if context:
        sections.append(md.context_section(context))
    sections.append(_GLOSSARY)
    report_path = out_dir / REPORT_NAME
    write_bytes_atomic(report_path, ("\n\n".join(sections) + "\n").encode("utf-8"))
    return report_path


def format_metrics_table(metrics: dict) -> str:
    """A compact plain-text table for the terminal: accuracy, macro-F1 and each class's F1.

    Example output::

        examples     485
        accuracy     0.8124
        macro F1     0.7650
        per-class F1
          negative   0.7000  (n=120)
          neutral    0.8105  (n=250)
    """
    labels = list(metrics["labels"])
    width = max([_display_width(label) for label in labels] + [len("per-class F1") - 2])
    rows = [
        ("examples", str(metrics["n"])),
        ("accuracy", f"{metrics['accuracy']:.4f}"),
        ("macro F1", f"{metrics['f1_macro']:.4f}"),
    ]
    lines = [f"{_pad(name, width + 2)} {value}" for name, value in rows]
    lines.append("per-class F1")
    for label in labels:
        scores = metrics["per_class"][label]
        lines.append(f"  {_pad(label, width)} {scores['f1']:.4f}  (n={scores['support']})")
    return "\n".join(lines)


# --- report sections ---------------------------------------------------------------------------


def _summary(metrics: dict, split_name: str) -> str:
    n = metrics["n"]
    sentence = f"On {n} held-out {split_name} examples the model is right {md.percent(metrics['accuracy'])} of the time"
    per_class = metrics["per_class"]
    present = [label for label in metrics["labels"] if per_class[label]["support"] > 0]
    matrix = metrics["confusion_matrix"]
    errors = n - sum(matrix[i][i] for i in range(len(matrix)))
    if errors == 0:
        sentence += "; it made no mistakes."
    elif present:
        weakest = min(present, key=lambda label: (per_class[label]["f1"], -per_class[label]["support"]))
        sentence += f"; it is weakest on {md.quote(weakest)} (F1 {per_class[weakest]['f1']:.2f})"
        partner = _most_confused_with(metrics, weakest)
        if partner is not None:
            other, as_other, as_weakest = partner
            directions = []
            if as_other:
                directions.append(f"{as_other} {md.quote(weakest)} read as {md.quote(other)}")
            if as_weakest:
                directions.append(f"{as_weakest} {md.quote(other)} read as {md.quote(weakest)}")
            sentence += (
                f", most often confused with {md.quote(other)} "
                f"({md.times(as_other + as_weakest)}: {'; '.join(directions)})"
            )
        sentence += "."
    else:
        sentence += "."
    # A majority-class baseline tells a reader whether the accuracy is any good on skewed data.
    majority = max(metrics["labels"], key=lambda label: per_class[label]["support"])
    baseline = per_class[majority]["support"] / n
    sentence += (
        f" For comparison, always answering the most common label, {md.quote(majority)}, "
        f"would be right {md.percent(baseline)} of the time."
    )
    return sentence


def _most_confused_with(metrics: dict, label: str) -> tuple[str, int, int] | None:
    """The label most often mixed up with ``label``, counting both directions of the mistake."""
    labels = metrics["labels"]
    matrix = metrics["confusion_matrix"]
    i = labels.index(label)
    best = None
    for j, other in enumerate(labels):
        if j == i:
            continue
        as_other, as_label = matrix[i][j], matrix[j][i]
        if as_other + as_label > 0 and (best is None or as_other + as_label > best[1] + best[2]):
            best = (other, as_other, as_label)
    return best


def _headline_section(metrics: dict) -> str:
    rows = [
        [name, *(f"{metrics[f'{key}_{average}']:.4f}" for average in ("macro", "micro", "weighted"))]
        for name, key in (("Precision", "precision"), ("Recall", "recall"), ("F1", "f1"))
    ]
    return "\n".join(
        [
            "## Headline scores",
            "",
            f"**Accuracy: {metrics['accuracy']:.4f}** ({metrics['n']} examples)",
            "",
            md.table(["", "Macro", "Micro", "Weighted"], rows),
            "",
            "Macro averages every label equally; weighted averages by how common each label is; micro "
            "pools all examples (for single-label data it equals accuracy).",
        ]
    )


def _per_class_section(metrics: dict) -> str:
    rows = []
    for index, label in enumerate(metrics["labels"]):
        scores = metrics["per_class"][label]
        rows.append(
            [
                str(index),
                md.escape(label),
                f"{scores['precision']:.4f}",
                f"{scores['recall']:.4f}",
                f"{scores['f1']:.4f}",
                str(scores["support"]),
            ]
        )
    absent = [label for label in metrics["labels"] if metrics["per_class"][label]["support"] == 0]
    headers = ["#", "Label", "Precision", "Recall", "F1", "Support"]
    lines = ["## Scores per label", "", md.table(headers, rows, numeric_from=2)]
    if absent:
        lines += ["", f"Not present in this split (scores are 0 by convention): {md.quote_list(absent)}."]
    return "\n".join(lines)


def _confusion_section(metrics: dict, numbered: dict[str, str]) -> str:
    lines = [
        "## Where the model goes wrong",
        "",
        f"![Confusion matrix]({CONFUSION_MATRIX_NAME})",
        "",
        "Rows are the true label, columns the model's answer; the diagonal is correct answers, and the "
        "colour shows the share of each true label.",
    ]
    if numbered:
        lines += [
            "",
            "Labels that are too long, or that no installed font can draw, are shown in the image by "
            "their number (the # column of the table above).",
        ]
    confusions = _top_confusions(metrics)
    lines += ["", "Most frequent mistakes:", ""]
    if confusions:
        for true_label, predicted, count, share in confusions:
            lines.append(
                f"- {md.quote(true_label)} predicted as {md.quote(predicted)}: {md.times(count)} "
                f"({md.percent(share)} of {md.quote(true_label)})"
            )
    else:
        lines.append("- none")
    return "\n".join(lines)


def _top_confusions(metrics: dict) -> list[tuple[str, str, int, float]]:
    labels = metrics["labels"]
    matrix = metrics["confusion_matrix"]
    cells = [
        (labels[i], labels[j], count, count / sum(row))
        for i, row in enumerate(matrix)
        for j, count in enumerate(row)
        if i != j and count > 0
    ]
    # Stable sort: ties keep label order, so the report is the same on every run.
    return sorted(cells, key=lambda cell: -cell[2])[:_TOP_CONFUSIONS]


_GLOSSARY = """## How to read the scores

- **Precision** for a label: when the model answers that label, how often it is right.
- **Recall** for a label: of the examples that truly have that label, how many the model finds.
- **F1**: one number balancing precision and recall; 1.0 is perfect, 0 means it never gets the
  label right.
- **Support**: how many examples of that label the scored data holds; scores on small labels are
  less reliable."""


# --- the confusion-matrix image ------------------------------------------------------------------


def _confusion_matrix_png(matrix: list[list[int]], labels: list[str], *, title: str) -> bytes:
    # Figure + Agg canvas rather than pyplot: no global figure state, and the user's backend is
    # left alone when domainfit is used from a notebook.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(labels)
    counts = [list(row) for row in matrix]
    # Colour by the share of each true label, so a rare label's mistakes are as visible as a
    # common one's; the cells still print the raw counts.
    shares = [[count / sum(row) if sum(row) else 0.0 for count in row] for row in counts]
    size = max(5.0, 0.5 * n + 3.0)
    # A cell is about 0.5 inch (36 pt) wide, room for a 4-digit count at 8 pt.
    annotation_size = 11 if n <= 10 else 9 if n <= 18 else 8
    tick_size = 10 if n <= 15 else 9

    with matplotlib.rc_context({"font.family": _font_families()}):
        fig = Figure(figsize=(size, size * 0.9), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        colorbar.set_label("share of the true label")
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(counts[i][j]),
                    ha="center",
                    va="center",
                    fontsize=annotation_size,
                    color="white" if shares[i][j] > 0.5 else "black",
                )
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=tick_size)
        ax.set_yticklabels(labels, fontsize=tick_size)
        ax.set_xlabel("Predicted label")
        ax.set_ylabel("True label")
        ax.set_title(title)
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            # Labels no font can draw were replaced by numbers in _plot_labels; this only guards a
            # font that claims a glyph it cannot render, which should not stop the report.
            warnings.filterwarnings("ignore", message=r"Glyph .* missing from", category=UserWarning)
            fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _plot_labels(labels: list[str]) -> tuple[list[str], dict[str, str]]:
    """Labels as drawn in the image, with a number for any that is shortened or undrawable.

    A label longer than _MAX_PLOT_LABEL_CHARS is cut and prefixed with its number (two cut labels
    could otherwise read the same); one that no installed font can draw is shown by its number alone.

    Returns:
        The drawn labels, and {original label: its number} for every label drawn with a number.
    """
    drawable = _drawable_codepoints()
    drawn, numbered = [], {}
    for index, label in enumerate(labels):
        number = f"#{index}"
        if not all(ord(char) in drawable or char.isspace() for char in label):
            drawn.append(number)
            numbered[label] = number
        elif len(label) > _MAX_PLOT_LABEL_CHARS:
            drawn.append(f"{number} {_shorten(label, _MAX_PLOT_LABEL_CHARS - len(number) - 1)}")
            numbered[label] = number
        else:
            drawn.append(label)
    return drawn, numbered


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@functools.lru_cache(maxsize=1)
def _font_families() -> tuple[str, ...]:
    """The default sans-serif font, then the first installed CJK font (matplotlib falls back per glyph)."""
    from matplotlib import font_manager, rcParams

    installed = {font.name for font in font_manager.fontManager.ttflist}
    default = [name for name in rcParams["font.sans-serif"] if name in installed][:1] or ["DejaVu Sans"]
    cjk = [name for name in _CJK_FONT_FAMILIES if name in installed][:1]
    return tuple(default + cjk)


@functools.lru_cache(maxsize=1)
def _drawable_codepoints() -> frozenset[int]:
    """Every character the fonts from _font_families() can draw."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    codepoints: set[int] = set()
    for family in _font_families():
        path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=True)
        codepoints.update(FT2Font(path).get_charmap())
    return frozenset(codepoints)


# --- small formatting helpers ----------------------------------------------------------------------


def _display_width(text: str) -> int:
    # CJK characters take two terminal columns.
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _display_width(text))
