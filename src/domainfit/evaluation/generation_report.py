"""report.md, model card and terminal table of the ``generation`` task: perplexity before/after, ROUGE-L, examples.

Called by the training loop in place of the classification report (``Task.write_report``), with the same
signature as :func:`domainfit.evaluation.report.write_report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from domainfit.evaluation import markdown as md
from domainfit.evaluation.health import banner_sections
from domainfit.evaluation.report import REPORT_NAME
from domainfit.evaluation.reports import REPORTS, RunReport
from domainfit.io.atomic import write_bytes_atomic
from domainfit.version import __version__

_GLOSSARY = """## How to read the scores

- **Perplexity**: how surprised the model is by the reference responses, per token (exp of the mean
  negative log-likelihood of the response tokens; prompt tokens are not scored). Lower is better; 1.0 would
  mean it predicts every reference token with certainty. Compare it only between models sharing a tokenizer.
- **ROUGE-L**: overlap of the generated and the reference response as the longest common subsequence of
  words (Chinese: characters), F-measure between 0 and 1 (Lin 2004). Greedy decoding, on a capped sample.
- **Exact match**: share of generations equal to the reference (ignoring case and spacing)."""


def write_generation_report(
    out_dir: Path,
    metrics: dict,
    *,
    title: str,
    split_name: str = "test",
    context: dict | None = None,
    history: list[dict] | None = None,
    best_metric: str = "perplexity",
    warnings: list[dict] | None = None,
) -> Path:
    """Write ``report.md``: the headline (base vs fine-tuned), example generations, history, run facts.

    ``warnings`` (health warnings; none yet for generation, whose scores have no classes) open it as a
    banner.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [
        *banner_sections(warnings or []),
        f"# {title}",
        _summary(metrics, split_name),
        _scores_section(metrics, split_name),
    ]
    if metrics.get("examples"):
        sections.append(_examples_section(metrics["examples"]))
    if history:
        sections.append(md.history_section(history, best_metric))
    if context:
        sections.append(md.context_section(context))
    sections.append(_GLOSSARY)
    path = out_dir / REPORT_NAME
    write_bytes_atomic(path, ("\n\n".join(sections) + "\n").encode("utf-8"))
    return path


def _summary(metrics: dict, split_name: str) -> str:
    text = (
        f"On {metrics['n']} held-out {split_name} examples the fine-tuned model's perplexity on the reference "
        f"responses is {metrics['perplexity']:.2f}"
    )
    if "base_perplexity" in metrics:
        text += (
            f", down from {metrics['base_perplexity']:.2f} for the base model"
            if metrics["perplexity"] < metrics["base_perplexity"]
            else f" (base model: {metrics['base_perplexity']:.2f}; fine-tuning did not lower it)"
        )
    text += "."
    if "rougeL" in metrics:
        text += (
            f" Its greedy answers to {metrics['generated']} of them reach ROUGE-L {metrics['rougeL']:.3f} "
            f"against the references (base model {metrics.get('base_rougeL', float('nan')):.3f}), "
            f"{metrics['exact_match']:.0%} word for word."
        )
    return text


def _scores_section(metrics: dict, split_name: str) -> str:
    rows = [
        [
            "Perplexity (response tokens)",
            f"{metrics.get('base_perplexity', float('nan')):.3f}",
            f"{metrics['perplexity']:.3f}",
        ]
    ]
    if "rougeL" in metrics:
        rows.append(
            [
                f"ROUGE-L F ({metrics['generated']} generations)",
                f"{metrics['base_rougeL']:.4f}",
                f"{metrics['rougeL']:.4f}",
            ]
        )
        rows.append(["Exact match", f"{metrics['base_exact_match']:.4f}", f"{metrics['exact_match']:.4f}"])
    return "\n".join(
        [
            f"## Scores ({split_name} split)",
            "",
            md.table(["", "Base model", "Fine-tuned"], rows),
            "",
            f"{metrics.get('response_tokens', '?')} response tokens scored.",
        ]
    )


def _examples_section(examples: list[dict[str, Any]]) -> str:
    lines = ["## Example generations", ""]
    for n, e in enumerate(examples, 1):
        lines.append(f"**{n}.** {_quote(e['instruction'])}")
        if e.get("input"):
            lines.append(f"> {_quote(e['input'])}")
        lines += [
            "",
            f"- reference: {_quote(e['reference'])}",
            f"- fine-tuned: {_quote(e['generated'])}",
            f"- base model: {_quote(e.get('base', ''))}",
            "",
        ]
    return "\n".join(lines).rstrip()


def _quote(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return (text[:limit] + " ...") if len(text) > limit else text or "(empty)"


def format_generation_metrics(metrics: dict) -> str:
    """Plain-text lines for the terminal."""
    rows = [("examples", str(metrics["n"])), ("perplexity", f"{metrics['perplexity']:.3f}")]
    if "base_perplexity" in metrics:
        rows.append(("base perplexity", f"{metrics['base_perplexity']:.3f}"))
    for key in ("rougeL", "base_rougeL", "exact_match"):
        if key in metrics:
            rows.append((key, f"{metrics[key]:.4f}"))
    return "\n".join(f"{name:18} {value}" for name, value in rows)


def write_generation_model_card(
    model_dir: Path, *, cfg: dict[str, Any], results: dict[str, Any], labels: list[str]
) -> None:
    """``README.md`` of the model folder: what it is, how to load it, how good it is."""
    split = "test" if "test" in results else "validation"
    final = results.get(split) or {}
    method = "lora" if cfg["peft"]["method"] == "lora" else "full"  # LoRA settings: the peft section
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [domainfit]",
        "---",
        "",
        f"# {Path(cfg['output']['dir']).name}",
        "",
        f"A causal LM fine-tuned ({method}) from `{cfg['model']['name']}` with domainfit {__version__} to answer "
        "instructions.",
        "",
        "## Use",
        "",
        "```python",
        "import domainfit",
        'gen = domainfit.load("PATH/TO/THIS/FOLDER")',
        'gen.predict([{"instruction": "...", "input": "..."}])',
        "```",
        "",
        "or `domainfit predict THIS_FOLDER input.jsonl --output answers.jsonl`. The merged weights load with "
        "`AutoModelForCausalLM.from_pretrained(THIS_FOLDER)`; prompts must use the format in `domainfit.json`.",
    ]
    if method == "lora":
        lines += [
            "",
            "The LoRA adapter alone is in `adapter/` (`peft.PeftModel.from_pretrained(base_model, 'adapter')`).",
        ]
    lines += ["", f"## Results ({split} set)", "", "| metric | base model | fine-tuned |", "|---|---:|---:|"]
    if "perplexity" in final:
        lines.append(f"| perplexity | {final.get('base_perplexity', float('nan')):.3f} | {final['perplexity']:.3f} |")
    if "rougeL" in final:
        lines.append(f"| ROUGE-L | {final['base_rougeL']:.4f} | {final['rougeL']:.4f} |")
    t = cfg["train"]
    lines += [
        "",
        "## Training",
        "",
        f"epochs {t['epochs']}, batch size {t['batch_size']}, learning rate {t['learning_rate']}, "
        f"seed {t['seed']}, max length {cfg['model']['max_length']}. Full config: the run folder's `config.yaml`.",
        "",
    ]
    (Path(model_dir) / "README.md").write_text("\n".join(lines), encoding="utf-8")


def _report_generation_run(task, out_dir: Path, metrics: dict, **kwargs) -> Path:  # noqa: ARG001
    return write_generation_report(out_dir, metrics, **kwargs)


REPORTS.register(
    "generation",
    RunReport(
        write_report=_report_generation_run,
        write_model_card=write_generation_model_card,
        format_metrics=format_generation_metrics,
    ),
)
