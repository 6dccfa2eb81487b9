"""Explanations as a page to read: one block per text, its words coloured by their attribution.

    write_explanations(Path("explanations.html"), results)   # results of TextExplainer.explain
    write_explanations(Path("explanations.json"), results)   # the same as JSON (words + scores)

The HTML file is self-contained (inline style, no script, no link, no font to fetch): it opens on an
air-gapped machine and can be mailed. Green words pushed the model towards the label shown, red ones away
from it; the colour's strength is the word's score relative to the largest absolute score of that block,
and hovering a word shows its score.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from domainfit.errors import DomainfitError
from domainfit.io.atomic import write_text_atomic

FORMATS = {".html": "html", ".htm": "html", ".json": "json"}

_STYLE = """
body { font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #222; }
.block { border: 1px solid #ccc; border-radius: 4px; padding: 0.6em 1em; margin: 1em 0; }
.head { font-size: 0.9em; color: #555; margin-bottom: 0.4em; }
.label { font-weight: bold; color: #000; }
.text { line-height: 1.9; }
.w { padding: 0.1em 0.05em; border-radius: 3px; }
.legend span { padding: 0.1em 0.4em; border-radius: 3px; }
"""


def _colour(score: float, scale: float) -> str:
    """Background for a word: green (positive) or red (negative), alpha = |score| / scale."""
    alpha = min(abs(score) / scale, 1.0) if scale > 0 else 0.0
    rgb = "0, 160, 60" if score >= 0 else "220, 40, 40"
    return f"rgba({rgb}, {alpha:.3f})"


def _highlighted(text: str, words: Sequence[dict[str, Any]]) -> str:
    """The whole text, HTML-escaped, with each word in a coloured span (the text between words kept)."""
    scale = max((abs(w["score"]) for w in words), default=0.0)
    parts, position = [], 0
    for w in words:
        parts.append(html.escape(text[position : w["start"]]))
        parts.append(f'<span class="w" style="background: {_colour(w["score"], scale)}" '
                     f'title="{w["score"]:+.4f}">{html.escape(text[w["start"] : w["end"]])}</span>')
        position = w["end"]
    parts.append(html.escape(text[position:]))
    return "".join(parts)


def render_html(results: Sequence[dict[str, Any]], *, title: str = "Explanations") -> str:
    """The page for ``results`` (as returned by ``TextExplainer.explain``)."""
    blocks = []
    for n, result in enumerate(results, start=1):
        for explanation in result["explanations"]:
            delta = explanation.get("convergence_delta")
            notes = [f"method {html.escape(result['method'])}", html.escape(result["unit"])]
            if delta is not None:
                notes.append(f"IG convergence delta {delta:+.4f}")
            if result.get("truncated"):
                notes.append("text truncated: the end was not read")
            blocks.append(
                f'<div class="block"><div class="head">#{n} &middot; <span class="label">'
                f'{html.escape(str(explanation["label"]))}</span> &middot; probability '
                f'{explanation["probability"]:.3f} &middot; {" &middot; ".join(notes)}</div>'
                f'<div class="text">{_highlighted(result["text"], explanation["words"])}</div></div>')
    legend = ('<p class="legend"><span style="background: rgba(0, 160, 60, 0.6)">towards the label</span> '
              '<span style="background: rgba(220, 40, 40, 0.6)">away from it</span> '
              '(hover a word for its score)</p>')
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{legend}"
            f'{"".join(blocks)}</body></html>\n')


def output_format(path: str | Path) -> str:
    """"html" or "json" from the file name's suffix; a DomainfitError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DomainfitError(f"cannot tell the output format from the name {str(path)!r}", path=path,
                             fix="end the --output name in .html (a page to read) or .json (words and scores).")
    return FORMATS[suffix]


def write_explanations(path: str | Path, results: Sequence[dict[str, Any]], *, title: str = "Explanations") -> None:
    """Write ``results`` whole or not at all, as HTML or JSON by ``path``'s suffix."""
    path = Path(path)
    if output_format(path) == "html":
        write_text_atomic(path, render_html(results, title=title))
    else:
        write_text_atomic(path, json.dumps(list(results), indent=1, ensure_ascii=False))
