"""The report section and the printed verdict of `domainfit evaluate MODEL DATA --against OTHER`.

The numbers come from :func:`domainfit.metrics.paired_bootstrap.paired_bootstrap`; this module only words them:
a table of every compared score with its interval, and one sentence per the selection metric that says whether
the interval of the difference excludes 0 (one model is above the other on this data) or not (no clear
difference: more labelled data, or more seeds of each model, would be needed to tell them apart).
"""

from __future__ import annotations

import html
from typing import Any

from domainfit.evaluation import markdown as md
from domainfit.evaluation.html_report import HTML_SECTIONS, HtmlSection


def verdict(comparison: dict[str, Any], metric: str = "f1_macro") -> str:
    """One sentence: is this model above, below, or not clearly apart from the other on ``metric``?"""
    score = comparison["metrics"][metric]
    interval = f"{_points(score['low'])} to {_points(score['high'])} points"
    level = f"{100 * comparison['confidence']:g}%"
    other = comparison["against"]
    if score["low"] > 0:
        return (
            f"{metric}: this model is above {other} by {_points(score['difference'])} points "
            f"(the {level} interval of the difference, {interval}, excludes 0)."
        )
    if score["high"] < 0:
        return (
            f"{metric}: this model is below {other} by {_points(-score['difference'])} points "
            f"(the {level} interval of the difference, {interval}, excludes 0)."
        )
    return (
        f"{metric}: no clear difference from {other} ({_points(score['difference'])} points; the {level} "
        f"interval, {interval}, includes 0): more labelled data, or more seeds of each model, would be "
        "needed to tell them apart."
    )


def comparison_section(comparison: dict[str, Any], split_name: str) -> str:
    """The report.md section: both models' scores on the same examples, each difference with its interval."""
    other = md.escape(comparison["against"])
    level = f"{100 * comparison['confidence']:g}%"
    return "\n".join(
        [
            f"## Against {other}: is the difference real?",
            "",
            f"Both models predicted the same {comparison['n']} examples of the {md.escape(split_name)} split. "
            f"Paired bootstrap: the examples resampled with replacement {comparison['resamples']:,} times "
            f"(seed {comparison['seed']}), both models scored on each resample; differences in points "
            f"(this model minus {other}), with the {level} percentile interval.",
            "",
            md.table([md.escape(h) for h in _header(comparison)], _rows(comparison)),
            "",
            f"**{md.escape(verdict(comparison))}**",
        ]
    )


def _header(comparison: dict[str, Any]) -> list[str]:
    level = f"{100 * comparison['confidence']:g}%"
    return ["Score", "This model", comparison["against"], "Difference", f"{level} interval", "This model ahead in"]


def _rows(comparison: dict[str, Any]) -> list[list[str]]:
    """One row per compared score (metric names and numbers only: nothing to escape)."""
    return [
        [
            name,
            f"{score['a']:.4f}",
            f"{score['b']:.4f}",
            _points(score["difference"]),
            f"{_points(score['low'])} .. {_points(score['high'])}",
            md.percent(score["a_ahead"]),
        ]
        for name, score in comparison["metrics"].items()
    ]


def _points(fraction: float) -> str:
    return f"{100 * fraction:+.1f}"


def _comparison_html(comparison: dict[str, Any]) -> str:
    """report.html's section: the same table and verdict as report.md's, escaped."""
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in _rows(comparison))
    header = "".join(f"<th>{html.escape(h)}</th>" for h in _header(comparison))
    return (
        f"<p>Both models predicted the same {comparison['n']} examples; paired bootstrap, "
        f"{comparison['resamples']:,} resamples (seed {comparison['seed']}); differences in points.</p>"
        f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"
        f"<p><strong>{html.escape(verdict(comparison))}</strong></p>"
    )


HTML_SECTIONS.register(
    "comparison",
    HtmlSection(
        "Against another model",
        _comparison_html,
        "run `domainfit evaluate MODEL DATA --against OTHER_MODEL` to see whether this model's scores are "
        "really above (or below) another's on the same data: a paired bootstrap of each difference.",
    ),
)
