"""The results of ``domainfit stress`` in words: a Markdown section for stress.md and the model card.

The dict is :func:`domainfit.serving.stress.stress_test`'s (``stress.json``, or the ``stress`` key of a
run's ``metrics.json``): ``{"n", "accuracy", "perturbations": {name: {"changed", "flips", "flip_rate",
"accuracy_before", "accuracy_after", "accuracy_drop", "examples", ...}}, "skipped": {name: why}}``.
"""

from __future__ import annotations

from typing import Any

from domainfit.evaluation import markdown as md

# a perturbation that flips more than this share of the texts it changed is called out in the summary
FRAGILE_FLIP_RATE = 0.05


def robustness_rows(stress: dict[str, Any]) -> list[list[str]]:
    """One row per perturbation: name, texts changed, flips, flip rate, accuracy before, after, drop."""
    rows = []
    for name, scores in stress.get("perturbations", {}).items():
        flip_rate = scores.get("flip_rate")
        rows.append(
            [
                name,
                str(scores["changed"]),
                str(scores["flips"]),
                "–" if flip_rate is None else md.percent(flip_rate),
                f"{scores['accuracy_before']:.4f}",
                f"{scores['accuracy_after']:.4f}",
                f"{scores['accuracy_drop']:+.4f}",
            ]
        )
    return rows


ROBUSTNESS_HEADERS = [
    "Perturbation",
    "Texts changed",
    "Label flips",
    "Flip rate",
    "Accuracy before",
    "Accuracy after",
    "Drop",
]


def fragile_perturbations(stress: dict[str, Any]) -> list[str]:
    """Names of the perturbations whose flip rate is above :data:`FRAGILE_FLIP_RATE`, worst first."""
    scored = [
        (name, s["flip_rate"])
        for name, s in stress.get("perturbations", {}).items()
        if s.get("flip_rate") is not None and s["flip_rate"] > FRAGILE_FLIP_RATE
    ]
    return [name for name, _ in sorted(scored, key=lambda item: -item[1])]


def robustness_summary(stress: dict[str, Any]) -> str:
    """One or two sentences: how many texts, and which perturbations the model is fragile to."""
    fragile = fragile_perturbations(stress)
    sentence = (
        f"Each perturbation keeps the label a reader would give; on {stress['n']} labelled texts the "
        f"model should answer the same before and after."
    )
    if fragile:
        worst = stress["perturbations"][fragile[0]]
        sentence += (
            f" It is fragile to {', '.join(md.escape(name) for name in fragile)}: "
            f"{md.escape(fragile[0])} changes its answer on {md.percent(worst['flip_rate'])} of the "
            f"texts it alters."
        )
    else:
        sentence += f" No perturbation flips more than {md.percent(FRAGILE_FLIP_RATE)} of the texts it alters."
    return sentence


def robustness_section(stress: dict[str, Any], *, heading: str = "## Robustness", examples: bool = True) -> str:
    """The Markdown section: summary, the table, skipped perturbations, and examples of flips.

    Args:
        stress: the stress-test dict.
        heading: the section's heading line.
        examples: whether to list the flips' examples (the model card leaves them out).
    """
    lines = [
        heading,
        "",
        robustness_summary(stress),
        "",
        md.table(ROBUSTNESS_HEADERS, robustness_rows(stress)),
        "",
        "Flip rate: the share of the changed texts whose predicted label changed. Accuracy is on all "
        "texts (unchanged texts keep their answer).",
    ]
    skipped = stress.get("skipped") or {}
    if skipped:
        lines += ["", "Not run:", ""]
        lines += [f"- {md.escape(name)}: {md.escape(why)}" for name, why in skipped.items()]
    if examples:
        for name, scores in stress.get("perturbations", {}).items():
            if not scores.get("examples"):
                continue
            lines += ["", f"### Flips under {md.escape(name)}", ""]
            for e in scores["examples"]:
                lines.append(
                    f"- gold {md.quote(e['label'])}: {md.quote(e['before']['label'])} "
                    f"({e['before']['probability']:.2f}) -> {md.quote(e['after']['label'])} "
                    f"({e['after']['probability']:.2f})  "
                )
                lines.append(f"  before: {md.code(e['text'])}  ")
                lines.append(f"  after: {md.code(e['perturbed'])}")
    return "\n".join(lines)
