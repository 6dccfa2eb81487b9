"""The model card (README.md inside the shipped model folder): what it is, what it was trained on, how good.

Besides use, data, results and training, the card states the intended use, the limitations that follow
from the data and the health warnings, the data's licence, and the robustness figures of ``domainfit stress``
when ``results`` holds them (key ``stress``). The licence is read, not configured: the ``Licence``/``License``
lines of a ``SOURCE.txt`` in the training file's folder or the folder above it (a dataset folder with its
splits in a subfolder), or the first line of a ``LICENSE``/``LICENCE`` file (``.md``/``.txt`` too) in the
training file's own folder (one further up is more likely the licence of the user's code than of the data).
Without one, the card says it is not recorded and asks the owner to state it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from domainfit.evaluation import markdown as md
from domainfit.evaluation.health import banner_sections
from domainfit.evaluation.robustness import fragile_perturbations, robustness_section
from domainfit.io.atomic import write_text_atomic
from domainfit.models.folder import read_folder_settings
from domainfit.version import __version__

# scores on fewer examples than this per label are called unreliable in the limitations
_FEW_EXAMPLES = 20
_LICENCE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "LICENCE.md", "LICENCE.txt")

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


def _pipeline_caveats(model_dir: Path) -> list[str]:
    """What ``transformers.pipeline`` does not apply of the folder's fitted settings (domainfit.json)."""
    settings = read_folder_settings(model_dir)
    temperature, min_confidence = settings.get("temperature"), settings.get("min_confidence")
    lines = []
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature != 1.0:
        lines.append(
            f"Scores: domainfit divides the logits by the temperature fitted on validation (T = {temperature:.3g}) "
            "before the softmax, so its probabilities are calibrated; `transformers.pipeline` does not read T: "
            "its labels are the same, its scores are the uncalibrated ones."
        )
    if isinstance(min_confidence, (int, float)) and not isinstance(min_confidence, bool):
        lines.append(
            f"domainfit answers `abstain` below a top probability of {min_confidence:.3g} (chosen for "
            "`evaluation.target_accuracy`); `transformers.pipeline` always answers a label."
        )
    return ["", *lines] if lines else []


def write_model_card(model_dir: Path, *, cfg: dict[str, Any], results: dict[str, Any], labels: list[str]) -> None:
    """Write ``model_dir/README.md`` from the resolved config and the run's metrics."""
    final = results.get("test") or results.get("validation") or {}
    split = "test" if "test" in results else "validation"
    data = results.get("data", {})
    lines = [
        "---",
        "library_name: transformers",
        # the Hugging Face pipeline that loads the folder
        f"pipeline_tag: {_PIPELINE_TAGS.get(cfg['task'], cfg['task'])}",
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
        *(
            _IMAGE_USE
            if cfg["task"] == "image-classification"
            else [line.replace("{pipeline}", _PIPELINE_TAGS.get(cfg["task"], cfg["task"])) for line in _TEXT_USE]
        ),
        *([] if cfg["task"] == "image-classification" else _pipeline_caveats(model_dir)),  # its use is domainfit's
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
        lines.append(
            f"- trained parameters ({c['method']}): {c['trainable']:,} of {c['total']:,} ({c['trainable_percent']}%)"
        )
    if "dedup" in data:
        d = data["dedup"]
        lines.append(
            f"- duplicates removed from the training file before splitting: {d['duplicates_removed']} "
            f"({d['conflicting_labels']} with conflicting labels)"
        )
    lines += ["", f"## Results ({split} set)", "", "| metric | value |", "|---|---|"]
    for key in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "f1_weighted"):
        if key in final:
            lines.append(f"| {key} | {final[key]:.4f} |")
    if results.get("best"):
        b = results["best"]
        lines += ["", f"Selected at step {b['step']} (epoch {b['epoch']}) by validation {cfg['train']['best_metric']}."]
    lines += [
        "",
        *_intended_use(cfg, data, labels),
        "",
        *_limitations(cfg, results, final, split),
        "",
        *_licence_section(data),
    ]
    if results.get("stress"):
        lines += ["", robustness_section(results["stress"], examples=False)]
    t = cfg["train"]
    lines += [
        "",
        "## Training",
        "",
        f"epochs {t['epochs']}, batch size {t['batch_size']}, learning rate {t['learning_rate']}, "
        f"weight decay {t['weight_decay']}, warmup ratio {t['warmup_ratio']}, seed {t['seed']}, "
        f"max length {cfg['model']['max_length']}."
        if cfg["task"] != "image-classification"
        else f"image size {cfg['image']['image_size'] or 'the model default'}, augmentation {cfg['image']['augment']}.",
        "",
        "The full resolved config is in the run folder's `config.yaml`.",
        "",
    ]
    # atomic: `domainfit stress` rewrites the card of a shipped folder that a server may be reading
    write_text_atomic(Path(model_dir) / "README.md", "\n".join(lines))


def _intended_use(cfg: dict[str, Any], data: dict[str, Any], labels: list[str]) -> list[str]:
    train = data.get("files", {}).get("train")
    source = f" like those in `{md.escape(str(train))}`" if train else ""
    return [
        "## Intended use",
        "",
        f"Assigning one of its {len(labels)} labels to inputs{source}, from the same domain and of the "
        "same kind. It learned from that data only: score it on a labelled sample of your own inputs "
        "(`domainfit evaluate THIS_FOLDER sample.csv`) before relying on it elsewhere, and keep a person "
        "in the loop for decisions that matter. It is not meant for other languages, other domains or "
        "labels it was not trained on.",
    ]


def _limitations(cfg: dict[str, Any], results: dict[str, Any], final: dict[str, Any], split: str) -> list[str]:
    lines = ["## Limitations", ""]
    for warning in results.get("warnings") or []:
        lines.append(f"- {md.escape(' '.join(str(warning['message']).split()))}")
    counts = results.get("data", {}).get("counts", {})
    if "train" in counts:
        lines.append(f"- It learned from {counts['train']} examples; anything unlike them is guesswork.")
    per_class = final.get("per_class") or {}
    scored = {label: s for label, s in per_class.items() if isinstance(s, dict) and "f1" in s}
    few = [label for label, s in scored.items() if 0 < s.get("support", 0) < _FEW_EXAMPLES]
    if few:
        lines.append(
            f"- Scores of {md.quote_list(few)} rest on fewer than {_FEW_EXAMPLES} {split} examples "
            "each: treat them as rough."
        )
    if scored:
        weakest = min(scored, key=lambda label: scored[label]["f1"])
        lines.append(f"- It is weakest on {md.quote(weakest)} ({split} F1 {scored[weakest]['f1']:.2f}).")
    dedup = results.get("data", {}).get("dedup") or {}
    if dedup.get("conflicting_labels"):
        lines.append(
            f"- The training file gave {dedup['conflicting_labels']} texts conflicting labels: the "
            "labels themselves are not fully consistent."
        )
    if cfg["task"] != "image-classification" and "max_length" in cfg.get("model", {}):
        lines.append(
            f"- It reads at most {cfg['model']['max_length']} tokens of a text"
            + (
                " per window (long texts are read in windows)."
                if cfg["model"].get("long_text") == "windows"
                else "; the rest of a longer text is not read."
            )
        )
    stress = results.get("stress")
    if stress:
        fragile = fragile_perturbations(stress)
        names = ", ".join(md.escape(name) for name in fragile)
        lines.append(
            f"- Its answer changes under {names} (see Robustness)."
            if fragile
            else "- No tested perturbation changes its answers much (see Robustness)."
        )
    return lines


def _licence_section(data: dict[str, Any]) -> list[str]:
    train = data.get("files", {}).get("train")
    found = find_data_licence(Path(train)) if train else None
    if found is None:
        return [
            "## Data licence",
            "",
            "Not recorded: no SOURCE.txt or LICENSE file next to the training data file. State the "
            "data's licence here before sharing this model; a model can carry the terms of its training "
            "data.",
        ]
    text, path = found
    return [
        "## Data licence",
        "",
        f"{md.escape(text)} (from `{md.escape(str(path))}`)",
        "",
        "A model can carry the terms of its training data: check them before shipping it.",
    ]


def find_data_licence(train_file: Path) -> tuple[str, Path] | None:
    """The licence of the training data, read from files next to it, and the file it came from.

    The ``Licence`` or ``License`` lines of a ``SOURCE.txt`` (with their indented continuation lines) in the
    training file's folder or its parent, else the first non-empty line of a ``LICENSE``/``LICENCE`` file in
    the training file's own folder.

    Args:
        train_file: the training data file (or folder, for images).

    Returns:
        ``(licence text, file)``, or ``None`` when no such file is found.
    """
    folder = train_file if train_file.is_dir() else train_file.parent
    for candidate in (folder, folder.parent):
        source = candidate / "SOURCE.txt"
        if source.is_file():
            text = _licence_lines(source.read_text(encoding="utf-8", errors="replace"))
            if text:
                return text, source
    for name in _LICENCE_FILES:
        path = folder / name
        if path.is_file():
            first = next(
                (
                    line.strip()
                    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                    if line.strip()
                ),
                "",
            )
            if first:
                return first[:300], path
    return None


def _licence_lines(text: str) -> str:
    """The ``Licence ...:`` line of a SOURCE.txt and the indented lines that continue it, as one line."""
    lines, taking = [], False
    for line in text.splitlines():
        if re.match(r"licen[cs]e\b", line.strip(), re.IGNORECASE) and not line.startswith((" ", "\t")):
            lines.append(line.strip())
            taking = True
        elif taking and line.startswith((" ", "\t")) and line.strip():
            lines.append(line.strip())
        else:
            taking = False
    return " ".join(lines)[:600]
