"""Report sections on trusting a single-label classifier: calibration, abstention, group slices.

:func:`trust_sections` turns the ``ece``, ``calibration``, ``risk_coverage``, ``abstention`` and ``slices``
entries of a split's metrics (:mod:`domainfit.tasks.trust`, ``domainfit evaluate``) into Markdown and writes
the reliability diagram (``reliability_diagram.png``: accuracy against confidence per bin, before and after
temperature scaling).
The text-classification report registers here; the image report adds the same sections.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from domainfit.evaluation import markdown as md
from domainfit.evaluation.html_report import write_html_report
from domainfit.evaluation.report import write_report
from domainfit.evaluation.reports import REPORTS, RunReport
from domainfit.evaluation.robustness import robustness_section
from domainfit.io.atomic import write_bytes_atomic

RELIABILITY_NAME = "reliability_diagram.png"
_CURVE_ROWS = (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)  # coverages shown in the risk-coverage table


def trust_sections(out_dir: Path, metrics: dict[str, Any], split_name: str) -> list[str]:
    """Markdown sections for the trust entries of ``metrics`` (none when it has none); writes the diagram."""
    sections = []
    if "ece" in metrics:
        sections.append(_calibration_section(out_dir, metrics, split_name))
    if metrics.get("risk_coverage"):
        sections.append(_abstention_section(metrics, split_name))
    if metrics.get("slices"):
        sections.append(_slices_section(metrics["slices"], split_name))
    return sections


def _calibration_section(out_dir: Path, metrics: dict[str, Any], split_name: str) -> str:
    lines = ["## Calibration: can the probabilities be taken at face value?", ""]
    before = metrics["ece"]
    if "ece_calibrated" in metrics:
        lines += [
            f"Expected calibration error (ECE, 15 bins) on the {split_name} split: **{before:.4f}** as "
            f"trained, **{metrics['ece_calibrated']:.4f}** after temperature scaling (T = "
            f"{metrics['temperature']:.3f}, fitted on the validation split; the predicted labels do "
            "not change). predict and serve report the scaled probabilities.",
            "",
        ]
        if metrics.get("calibration"):
            png = reliability_diagram_png(metrics["calibration"])
            write_bytes_atomic(Path(out_dir) / RELIABILITY_NAME, png)
            lines += [
                f"![Reliability diagram]({RELIABILITY_NAME})",
                "",
                "Each bar is the accuracy of the predictions whose confidence falls in that bin; on "
                "the diagonal, a confidence of 0.8 is right 80% of the time.",
            ]
    else:
        lines += [f"Expected calibration error (ECE, 15 bins) on {split_name}: **{before:.4f}**."]
    lines += [
        "",
        "ECE is the average gap between confidence and accuracy: 0.05 means the stated probability "
        "is off by five points on average.",
    ]
    return "\n".join(lines)


def _abstention_section(metrics: dict[str, Any], split_name: str) -> str:
    curve = metrics["risk_coverage"]
    rows = []
    for wanted in _CURVE_ROWS:
        point = min(curve, key=lambda p: abs(p["coverage"] - wanted))
        rows.append([md.percent(point["coverage"]), md.percent(point["accuracy"]), md.cell(point["min_confidence"])])
    lines = [
        "## Abstention: accuracy when the least confident predictions go to a person",
        "",
        f"Keeping the most confident predictions of the {split_name} split first:",
        "",
        md.table(["Answered (coverage)", "Accuracy of the answered", "Lowest confidence answered"], _dedupe(rows)),
    ]
    chosen = metrics.get("abstention")
    if chosen and chosen["min_confidence"] is None:
        target = md.percent(chosen["target_accuracy"])
        lines += [
            "",
            f"**The target accuracy {target} (evaluation.target_accuracy) is not reached on "
            "validation at any confidence**, so no threshold was saved: predict and serve answer every "
            "input.",
        ]
    elif chosen:
        validation = chosen.get("validation")
        if validation:
            lines += [
                "",
                f"For the target accuracy {md.percent(chosen['target_accuracy'])} "
                "(evaluation.target_accuracy), the validation split chose min_confidence = "
                f"**{chosen['min_confidence']:.4f}**: it answers "
                f"{md.percent(validation['coverage'])} of validation at "
                f"{md.percent(validation['accuracy'])} accuracy.",
            ]
        else:
            lines += ["", f"With min_confidence = **{chosen['min_confidence']:.4f}**:"]
        accuracy = md.percent(chosen["accuracy"]) if chosen["accuracy"] is not None else "–"
        lines += [
            "",
            f"On {split_name} it answers **{md.percent(chosen['coverage'])}** "
            f"({chosen['answered']} inputs; {chosen['abstained']} go to a person) at **{accuracy}** "
            'accuracy. predict and serve answer "abstain" below it (`--min-confidence` overrides).',
        ]
    return "\n".join(lines)


def _dedupe(rows: list[list[str]]) -> list[list[str]]:
    seen, out = set(), []
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            out.append(row)
    return out


def _slices_section(slices: dict[str, Any], split_name: str) -> str:
    names = [name for name in next(iter(slices["groups"].values())) if name != "count"]
    rows = [
        [md.escape(group), str(scores["count"]), *(md.cell(scores[name]) for name in names)]
        for group, scores in slices["groups"].items()
    ]
    gap_rows = [
        [
            name,
            md.cell(gap["difference"]),
            md.cell(gap["ratio"]),
            md.escape(gap["lowest"]),
            md.escape(gap["highest"]),
            "**over the limit**" if gap["flagged"] else "ok",
        ]
        for name, gap in slices["gaps"].items()
    ]
    column = slices.get("column") or "the group column"
    lines = [
        f"## Groups: scores per {md.escape(str(column))}",
        "",
        f"Every score of the {split_name} split computed on each group's rows (fairlearn MetricFrame).",
        "",
        md.table(["Group", "Examples", *names], rows, numeric_from=1),
        "",
        md.table(["Score", "Largest gap", "Lowest / highest", "Lowest group", "Highest group", "Flag"], gap_rows),
        "",
    ]
    if slices["flagged"]:
        lines.append(
            f"**Warning**: {', '.join(slices['flagged'])} differ between groups by more than "
            f"{slices['max_gap']:.2f} (evaluation.max_gap). Check the lowest group's data and "
            "errors before shipping."
        )
    else:
        lines.append(f"No score differs between groups by more than {slices['max_gap']:.2f} (evaluation.max_gap).")
    return "\n".join(lines)


def reliability_diagram_png(calibration: dict[str, Any]) -> bytes:
    """Accuracy per confidence bin before and after temperature scaling, and the diagonal of perfect
    calibration."""
    # Figure + Agg canvas rather than pyplot: no global figure state (as in report.py)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    for index, (key, title) in enumerate(
        (("reliability_before", "As trained"), ("reliability_after", "After temperature scaling"))
    ):
        ax = fig.add_subplot(1, 2, index + 1)
        bins = calibration[key]
        width = bins[0]["upper"] - bins[0]["lower"]
        filled = [b for b in bins if b["count"]]
        ax.bar(
            [b["lower"] for b in filled],
            [b["accuracy"] for b in filled],
            width=width,
            align="edge",
            edgecolor="black",
            color="#4c72b0",
            label="accuracy",
        )
        ax.bar(
            [b["lower"] for b in filled],
            [b["confidence"] - b["accuracy"] for b in filled],
            bottom=[b["accuracy"] for b in filled],
            width=width,
            align="edge",
            color="#dd8452",
            alpha=0.5,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("Confidence (top probability)")
        ax.set_ylabel("Accuracy")
        ax.set_title(title)
        if index == 0:
            ax.legend(loc="upper left", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _report_text_run(task: Any, out_dir: Path, metrics: dict, **kwargs: Any) -> Path:  # noqa: ARG001
    split = kwargs.get("split_name", "test")
    sections = trust_sections(out_dir, metrics, split) + _recorded_stress(out_dir)
    path = write_report(out_dir, metrics, extra_sections=sections, **kwargs)
    write_html_report(out_dir, metrics, **kwargs)  # report.html beside it, from the same data
    return path


def _recorded_stress(out_dir: Path) -> list[str]:
    """The robustness section when the run's metrics.json records a stress test (``domainfit stress``
    writes the report again after recording one); none during training, whose metrics.json has none yet."""
    try:
        run_metrics = json.loads((Path(out_dir) / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent or unreadable: no section, as report.html does
        return []
    stress = run_metrics.get("stress") if isinstance(run_metrics, dict) else None
    return [robustness_section(stress)] if stress else []


REPORTS.register("text-classification", RunReport(write_report=_report_text_run))


def trust_metrics(
    probabilities: Any,
    gold: list[int],
    predictor: Any,
    groups: list[str] | None,
    group_column: str | None,
    max_gap: float,
) -> dict[str, Any]:
    """``domainfit evaluate``'s calibration, abstention and group entries, from the predictor's probabilities.

    The probabilities are temperature-scaled when the model folder holds a temperature; the unscaled ones are
    recovered as ``softmax(T * log p)`` (the logits up to a per-row constant), so ECE is reported before and
    after.
    """
    import numpy as np

    from domainfit.metrics.calibration import (
        ECE_BINS,
        expected_calibration_error,
        reliability_bins,
        risk_coverage,
        selective_scores,
        softmax,
    )
    from domainfit.metrics.slices import group_metrics

    scaled, y = np.asarray(probabilities, dtype=np.float64), np.asarray(gold)
    temperature = float(getattr(predictor, "temperature", 1.0))
    raw = softmax(temperature * np.log(np.clip(scaled, 1e-300, None)))
    out: dict[str, Any] = {
        "ece": expected_calibration_error(raw, y),
        "ece_calibrated": expected_calibration_error(scaled, y),
        "temperature": temperature,
        "calibration": {
            "bins": ECE_BINS,
            "reliability_before": reliability_bins(raw, y),
            "reliability_after": reliability_bins(scaled, y),
        },
        "risk_coverage": risk_coverage(scaled, y),
    }
    min_confidence = getattr(predictor, "min_confidence", None)
    if min_confidence is not None:
        out["abstention"] = {"min_confidence": min_confidence, **selective_scores(scaled, y, min_confidence)}
    if groups is not None:
        out["slices"] = {
            **group_metrics(y.tolist(), scaled.argmax(axis=1).tolist(), groups, scaled.shape[1], max_gap=max_gap),
            "column": group_column,
        }
    return out
