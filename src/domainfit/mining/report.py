"""What `domainfit mine` writes beside the corpus: mining.json (statistics) and mining_report.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from domainfit.io.atomic import write_atomic, write_text_atomic
from domainfit.mining.knn import MiningResult


def write_mining_outputs(result: MiningResult, corpus: str | Path, info: dict[str, Any]) -> tuple[Path, Path, Path]:
    """Write the corpus (one text a line), ``mining.json`` and ``mining_report.md`` next to it, each atomically.

    Args:
        result: what :func:`mine` returned.
        corpus: the corpus file to write.
        info: provenance to record (pool paths, task source, embedding model).

    Returns:
        The paths of the corpus, mining.json and mining_report.md.
    """
    corpus = Path(corpus)

    def write_lines(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for item in result.selected:
                f.write(item.text + "\n")

    write_atomic(corpus, write_lines)
    payload = {"corpus": str(corpus), **info, **result.stats}
    json_path, md_path = corpus.parent / "mining.json", corpus.parent / "mining_report.md"
    write_text_atomic(json_path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    write_text_atomic(md_path, format_mining_report(payload))
    return corpus, json_path, md_path


def _fmt_dist(d: dict[str, float] | None) -> str:
    if d is None:
        return "| - | - | - | - | - | - |"
    return f"| {d['n']} | {d['min']:.3f} | {d['p10']:.3f} | {d['median']:.3f} | {d['p90']:.3f} | {d['max']:.3f} |"


def format_mining_report(s: dict[str, Any]) -> str:
    """mining_report.md: what was selected, how near it is compared with the pool, and examples."""
    sel, rnd = s["similarity_selected"], s["similarity_random_pool_sample"]
    lines = [
        "# Mined pretraining corpus",
        "",
        f"- Corpus: `{s['corpus']}` ({s['selected']} texts, one a line)",
        f"- Pool: {', '.join(f'`{p}`' for p in s.get('pool', []))} ({s['pool_texts_read']} texts read, "
        f"{s['pool_texts_scored']} scored)",
        f"- Task texts (queries): {s['task_texts']} from {s.get('task_source', '?')}",
        f"- Embeddings: {s.get('embedding_model', '?')}, mean pooling + L2 norm; cosine similarity",
        f"- Method: {s['method']}; k = {s['k']}, cap = {s['max_total'] or 'none'}",
        f"- Selected: {s['selected']} of {s['pool_texts_scored']} pool texts "
        f"({100 * s['selected_share_of_pool']:.2f}%); {s['selected_before_cap']} before the cap",
        f"- Excluded as leakage (copies of the task's validation/test texts): **{s['excluded_as_leakage']}**",
        f"- Duplicate copies skipped: {s['duplicate_copies_skipped']}",
        "",
        "## How near: cosine similarity to the nearest task text",
        "",
        "| texts | n | min | p10 | median | p90 | max |",
        "|---|---|---|---|---|---|---|",
        f"| selected {_fmt_dist(sel)}",
        f"| random pool sample {_fmt_dist(rnd)}",
        "",
    ]
    share = s.get("random_share_at_least_selected_median")
    if sel and rnd and share is not None:
        # a quarter: the selected median then lies above the random sample's upper quartile
        reading = (
            "the selected texts are clearly nearer the task than the pool at large"
            if share <= 0.25
            else "the selected texts are only a little nearer than the pool at large: the pool may hold little "
            "in-domain text, or k is large relative to it"
        )
        lines += [
            f"Reading: {reading}: {100 * share:.1f}% of random pool texts are as near as the median selected "
            f"one (selected median {sel['median']:.3f} vs. random median {rnd['median']:.3f}).",
            "",
        ]
    lines += ["## Selected texts by source", "", "| source | texts | share |", "|---|---|---|"]
    for source, n in s["selected_by_source"].items():
        lines.append(f"| `{source}` | {n} | {100 * n / max(1, s['selected']):.1f}% |")
    lines += ["", "## Examples: task text -> nearest pool texts", ""]
    for ex in s["examples"]:
        lines.append(f"- **{_short(ex['task_text'])}**")
        for nb in ex["nearest"]:
            lines.append(
                f"  - {nb['similarity']:.3f}  {_short(nb['text'])}  (`{Path(nb['source']).name}` line {nb['line']})"
            )
    if s["excluded_examples"]:
        lines += ["", "## Excluded as leakage (first few)", ""]
        lines += [f"- `{Path(e['source']).name}` line {e['line']}: {_short(e['text'])}" for e in s["excluded_examples"]]
    lines += ["", f"Mining took {s['seconds']} s.", ""]
    return "\n".join(lines)


def _short(text: str, n: int = 140) -> str:
    text = text.replace("|", "/")
    return text if len(text) <= n else text[: n - 3] + "..."
