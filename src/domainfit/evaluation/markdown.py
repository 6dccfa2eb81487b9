"""Markdown building blocks shared by every report: escaped cells, tables, percentages, the context list
and the per-evaluation history table."""

from __future__ import annotations

import html
import math

from domainfit.metrics.classification import improves_on_best


def history_section(history: list[dict], best_metric: str) -> str:
    metric_keys: list[str] = []
    for record in history:
        for key in record.get("validation") or {}:
            if key not in metric_keys:
                metric_keys.append(key)
    best_index, best_value, best_loss = None, None, None
    for index, record in enumerate(history):
        value = (record.get("validation") or {}).get(best_metric)
        loss = (record.get("validation") or {}).get("loss")
        if value is not None and improves_on_best(best_metric, value, loss, best_value, best_loss):
            best_index, best_value, best_loss = index, value, loss

    headers = ["Epoch", "Step", "Train loss", *(f"Validation {key}" for key in metric_keys), ""]
    rows = []
    for index, record in enumerate(history):
        validation = record.get("validation") or {}
        rows.append(
            [
                cell(record.get("epoch")),
                cell(record.get("step")),
                cell(record.get("train_loss")),
                *(cell(validation.get(key)) for key in metric_keys),
                "**best**" if index == best_index else "",
            ]
        )
    lines = ["## Training history", "", table(headers, rows)]
    if best_index is not None:
        epoch = history[best_index].get("epoch", best_index + 1)
        lines += ["", f"The best epoch by validation {best_metric} is epoch {epoch} ({best_value:.4f})."]
    else:
        lines += ["", f"No epoch reported validation {best_metric}, so none is marked best."]
    return "\n".join(lines)


def context_section(context: dict) -> str:
    lines = ["## Run", ""]
    for key, value in flatten(context):
        lines.append(f"- **{escape(key)}**: {code(value)}")
    return "\n".join(lines)


def flatten(mapping: dict, prefix: str = "") -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            items.extend(flatten(value, prefix=f"{name}."))
        else:
            items.append((name, value))
    return items


def table(headers: list[str], rows: list[list[str]], *, numeric_from: int = 1) -> str:
    """A Markdown table; columns from ``numeric_from`` on are right-aligned."""
    aligns = ["---"] * numeric_from + ["---:"] * (len(headers) - numeric_from)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(aligns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def cell(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4f}"
    return escape(str(value))


def code(value: object) -> str:
    text = str(value).replace("`", "'").replace("\n", " ")
    return f"`{text}`"


def escape(text: str) -> str:
    """Make text safe inside a Markdown table cell or list item: no table breaks, and HTML (a label such as
    ``<script>``) shows as text instead of being rendered."""
    text = html.escape(str(text), quote=False)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def quote(label: str) -> str:
    return f"'{escape(label)}'"


def quote_list(labels: list[str]) -> str:
    return ", ".join(quote(label) for label in labels)


def times(count: int) -> str:
    return "1 time" if count == 1 else f"{count} times"


def percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"
