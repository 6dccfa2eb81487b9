"""Explanations as a page to read: one block per explained label, entity or image.

    write_explanations(Path("explanations.html"), results)   # results of TextExplainer.explain
    write_explanations(Path("explanations.json"), results)   # the same as JSON (words + scores)
    write_explanations(Path("heatmaps.html"), results, images=files)   # GradCamExplainer: the images too

The HTML file is self-contained (inline style, no script, no link, no font to fetch; images as base64 PNG):
it opens on an air-gapped machine and can be mailed. Green words pushed the model towards the label shown,
red ones away from it; the colour's strength is the word's score relative to the largest absolute score of
that block, and hovering a word shows its score. A token classifier's block is one line per entity, the
entity outlined. An image's block shows the image and its Grad-CAM heat map over it (red: the regions that
raised the label most).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
.entity { outline: 2px solid #333; outline-offset: 1px; }
.pair img { margin-right: 1em; border: 1px solid #ccc; image-rendering: auto; }
"""
# longest side of the image shown in the page: the file stays small whatever the photo's resolution
_SHOWN_SIZE = 320
_HEAT_ALPHA = 0.5


def _colour(score: float, scale: float) -> str:
    """Background for a word: green (positive) or red (negative), alpha = |score| / scale."""
    alpha = min(abs(score) / scale, 1.0) if scale > 0 else 0.0
    rgb = "0, 160, 60" if score >= 0 else "220, 40, 40"
    return f"rgba({rgb}, {alpha:.3f})"


def _highlighted(text: str, words: Sequence[dict[str, Any]], entity: dict[str, Any] | None = None) -> str:
    """The whole text, HTML-escaped, with each word in a coloured span (the text between words kept); the
    words inside ``entity`` (a token classifier's span) are outlined."""
    scale = max((abs(w["score"]) for w in words), default=0.0)
    parts, position = [], 0
    for w in words:
        parts.append(html.escape(text[position : w["start"]]))
        inside = entity is not None and entity["start"] <= w["start"] and w["end"] <= entity["end"]
        parts.append(
            f'<span class="w{" entity" if inside else ""}" style="background: '
            f'{_colour(w["score"], scale)}" title="{w["score"]:+.4f}">'
            f"{html.escape(text[w['start'] : w['end']])}</span>"
        )
        position = w["end"]
    parts.append(html.escape(text[position:]))
    return "".join(parts)


def _png_data_url(image: Any) -> str:
    """A PIL image as a ``data:image/png;base64,...`` URL (inline: nothing is fetched)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def heatmap_overlay(image: Any, heatmap: Sequence[Sequence[float]]) -> tuple[Any, Any]:
    """The image scaled to at most ``_SHOWN_SIZE`` pixels a side, and the same with the heat map over it.

    Args:
        image: a PIL image (any size: the heat map is in the frame of the model's square input, which is the
            image resized without cropping, so resizing the map to the image's size places it right).
        heatmap: (height, width) values in [0, 1].

    Returns:
        ``(shown, overlay)``: two PIL RGB images of the same size.
    """
    import matplotlib
    from PIL import Image

    shown = image.convert("RGB")
    shown.thumbnail((_SHOWN_SIZE, _SHOWN_SIZE))
    heat = Image.fromarray((np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1) * 255).astype(np.uint8))
    heat = np.asarray(heat.resize(shown.size, Image.Resampling.BILINEAR), dtype=np.float32) / 255.0  # (h, w)
    colours = matplotlib.colormaps["jet"](heat)[..., :3]  # (h, w, 3) in [0, 1]
    # the colour shows only where the map is high, so the image stays readable under the cold regions
    alpha = (_HEAT_ALPHA * heat)[..., None]
    pixels = np.asarray(shown, dtype=np.float32) / 255.0
    overlay = (1 - alpha) * pixels + alpha * colours
    return shown, Image.fromarray((overlay * 255).round().astype(np.uint8))


def _image_blocks(n: int, result: dict[str, Any], image: Any) -> list[str]:
    blocks = []
    for explanation in result["explanations"]:
        notes = [f"method {html.escape(result['method'])}", f"layer {html.escape(str(result['layer']))}"]
        pictures = "<p>(the image was not given to the page writer)</p>"
        if image is not None:
            shown, overlay = heatmap_overlay(_open_image(image), explanation["heatmap"])
            pictures = (
                f'<img alt="image" src="{_png_data_url(shown)}">'
                f'<img alt="Grad-CAM heat map over the image" src="{_png_data_url(overlay)}">'
            )
        blocks.append(
            f'<div class="block"><div class="head">#{n} &middot; {html.escape(str(result["image"]))} &middot; '
            f'<span class="label">{html.escape(str(explanation["label"]))}</span> &middot; probability '
            f"{explanation['probability']:.3f} &middot; {' &middot; '.join(notes)}</div>"
            f'<div class="pair">{pictures}</div></div>'
        )
    return blocks


def _open_image(image: Any) -> Any:
    if isinstance(image, (str, Path)):
        from PIL import Image

        with Image.open(image) as opened:
            return opened.convert("RGB")
    return image


def render_html(
    results: Sequence[dict[str, Any]], *, title: str = "Explanations", images: Sequence[Any] | None = None
) -> str:
    """The page for ``results`` (as returned by an explainer's ``explain``).

    Args:
        results: text, entity or image explanations.
        title: the page's title.
        images: for image results, the images explained (paths or PIL images), in the order of ``results``.
    """
    blocks = []
    for n, result in enumerate(results, start=1):
        if "image" in result:
            blocks += _image_blocks(n, result, images[n - 1] if images is not None else None)
            continue
        if not result["explanations"]:  # a token classifier found no entity in this text
            blocks.append(
                f'<div class="block"><div class="head">#{n} &middot; no entity found</div>'
                f'<div class="text">{html.escape(result["text"])}</div></div>'
            )
        for explanation in result["explanations"]:
            delta = explanation.get("convergence_delta")
            notes = [f"method {html.escape(result['method'])}", html.escape(result["unit"])]
            if delta is not None:
                notes.append(f"IG convergence delta {delta:+.4f}")
            if result.get("truncated"):
                notes.append("text truncated: the end was not read")
            entity = explanation.get("entity")
            what = f" &ldquo;{html.escape(entity['text'])}&rdquo;" if entity else ""
            blocks.append(
                f'<div class="block"><div class="head">#{n} &middot; <span class="label">'
                f"{html.escape(str(explanation['label']))}</span>{what} &middot; probability "
                f"{explanation['probability']:.3f} &middot; {' &middot; '.join(notes)}</div>"
                f'<div class="text">{_highlighted(result["text"], explanation["words"], entity)}</div></div>'
            )
    legend = (
        '<p class="legend"><span style="background: rgba(0, 160, 60, 0.6)">towards the label</span> '
        '<span style="background: rgba(220, 40, 40, 0.6)">away from it</span> '
        "(hover a word for its score)</p>"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{legend}"
        f"{''.join(blocks)}</body></html>\n"
    )


def output_format(path: str | Path) -> str:
    """ "html" or "json" from the file name's suffix; a DomainfitError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DomainfitError(
            f"cannot tell the output format from the name {str(path)!r}",
            path=path,
            fix="end the --output name in .html (a page to read) or .json (words and scores).",
        )
    return FORMATS[suffix]


def write_explanations(
    path: str | Path,
    results: Sequence[dict[str, Any]],
    *,
    title: str = "Explanations",
    images: Sequence[Any] | None = None,
) -> None:
    """Write ``results`` whole or not at all, as HTML or JSON by ``path``'s suffix (``images``: see
    :func:`render_html`)."""
    path = Path(path)
    if output_format(path) == "html":
        write_text_atomic(path, render_html(results, title=title, images=images))
    else:
        # a heat map is thousands of numbers: one per line would make the file unreadable, not clearer
        indent = None if any("image" in result for result in results) else 1
        write_text_atomic(path, json.dumps(list(results), indent=indent, ensure_ascii=False))
