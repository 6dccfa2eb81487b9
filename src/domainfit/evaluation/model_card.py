"""The model card (README.md inside the shipped model folder): what it is, what it was trained on, how good."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from domainfit.evaluation import markdown as md
from domainfit.evaluation.health import banner_sections
from domainfit.version import __version__

# domainfit task -> the Hugging Face pipeline that loads the saved folder
_PIPELINE_TAGS = {"multi-label-classification": "text-classification", "generation": "text-generation"}
_TEXT_USE = [
    "```python",
    "from transformers import pipeline",
    'clf = pipeline("{pipeline}", model="PATH/TO/THIS/FOLDER")',
    "```",
    "",
    "or `domainfit predict THIS_FOLDER input.csv --output predictions.csv`.",
]
_IMAGE_USE = [
    "```python",
    "import domainfit",
    'domainfit.load("PATH/TO/THIS/FOLDER").predict(["photo.jpg"])',
    "```",
    "",
    "or `domainfit predict THIS_FOLDER images/ --output predictions.csv`.",
]


def write_model_card(model_dir: Path, *, cfg: dict[str, Any], results: dict[str, Any], labels: list[str]) -> None:
    """Write ``model_dir/README.md`` from the resolved config and the run's metrics."""
    final = results.get("test") or results.get("validation") or {}
    split = "test" if "test" in results else "validation"
    data = results.get("data", {})
    lines = [
        "---",
        "library_name: transformers",
        f"pipeline_tag: {_PIPELINE_TAGS.get(cfg['task'], cfg['task'])}",  # the Hugging Face pipeline that loads the folder
        "tags: [domainfit]",
        "---",
        "",
        f"# {md.escape(Path(cfg['output']['dir']).name)}",
        "",
        *(f"{section}\n" for section in banner_sections(results.get("warnings") or [])),
        f"A `{cfg['task']}` model fine-tuned from `{cfg['model']['name']}` with domainfit {__version__}.",
        "",
        "## Use",
        "",
        *(_IMAGE_USE if cfg["task"] == "image-classification"
          else [line.replace("{pipeline}", _PIPELINE_TAGS.get(cfg["task"], cfg["task"])) for line in _TEXT_USE]),
        "",
        f"Labels: {', '.join(md.escape(label) for label in labels)}.",
        "",
        "## Data",
        "",
    ]
    for name, path in data.get("files", {}).items():
        lines.append(f"- {name}: `{path}`")
    for name, count in data.get("counts", {}).items():
        lines.append(f"- {name} examples: {count}")
    if "parameters" in data:
        c = data["parameters"]
        lines.append(f"- trained parameters ({c['method']}): {c['trainable']:,} of {c['total']:,} "
                     f"({c['trainable_percent']}%)")
    if "dedup" in data:
        d = data["dedup"]
        lines.append(f"- duplicates removed from the training file before splitting: {d['duplicates_removed']} "
                     f"({d['conflicting_labels']} with conflicting labels)")
    lines += ["", f"## Results ({split} set)", "", "| metric | value |", "|---|---|"]
    for key in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "f1_weighted"):
        if key in final:
            lines.append(f"| {key} | {final[key]:.4f} |")
    if results.get("best"):
        b = results["best"]
        lines += ["", f"Selected at step {b['step']} (epoch {b['epoch']}) by validation {cfg['train']['best_metric']}."]
    t = cfg["train"]
    lines += ["", "## Training", "",
              f"epochs {t['epochs']}, batch size {t['batch_size']}, learning rate {t['learning_rate']}, "
              f"weight decay {t['weight_decay']}, warmup ratio {t['warmup_ratio']}, seed {t['seed']}, "
              f"max length {cfg['model']['max_length']}." if cfg["task"] != "image-classification"
              else f"image size {cfg['image']['image_size'] or 'the model default'}, augmentation {cfg['image']['augment']}.", "",
              "The full resolved config is in the run folder's `config.yaml`.", ""]
    (Path(model_dir) / "README.md").write_text("\n".join(lines), encoding="utf-8")
