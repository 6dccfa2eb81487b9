"""Config sections of the tasks and methods beyond plain text classification, with their cross-field checks.

One dataclass per concern (``evaluation``, ``multi_label``, ``generation``, ``ner``, ``image``,
``joint``/``masking``, ``augment``, ``peft``, ``regularization`` and its parts); :mod:`domainfit.config.core`
puts them on :class:`RunConfig` and calls the ``_validate_*`` functions from ``validate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from domainfit.config.fields import _f
from domainfit.errors import ConfigError

if TYPE_CHECKING:
    from domainfit.config.core import RunConfig


@dataclass
class MultiLabelConfig:
    label_separator: str = _f(
        ";",
        "Separator between labels in a string label cell (CSV/TSV/delimited): 'cancer;tumor'. JSON lists need none.",
    )
    pos_weight: bool = _f(
        False,
        "Weight each label's positive term in the BCE loss by its negatives/positives ratio in the training data "
        "(helps rare labels).",
    )
    max_pos_weight: float = _f(10.0, "Upper bound on a label's positive weight when pos_weight is on.", min=1.0)
    threshold: float = _f(
        0.5,
        "Default decision threshold on each label's probability (always reported, for comparison).",
        min_exclusive=0.0,
        max=1.0,
    )
    tune_thresholds: bool = _f(
        True,
        "Pick each label's threshold to maximise its F1 on the validation set; stored with the model and used on test "
        "and by predict.",
    )
    min_tune_positives: int = _f(
        5,
        "Tune a label's threshold only if the validation set has at least this many positives for it; rarer labels "
        "keep `threshold` (a cut fitted to one or two examples overfits).",
        min=1,
    )
    threshold_step: float = _f(
        0.05, "Spacing of the threshold grid searched when tuning (0.05: 0.05, 0.10 ... 0.95).", min=0.005, max=0.25
    )
    unseen_labels: str = _f(
        "error",
        "A validation/test label that never occurs in training: 'error', or 'drop' (warn and ignore it).",
        choices=("error", "drop"),
    )


@dataclass
class EvaluationConfig:
    """Trust in a single-label classifier's outputs (text and image classification): calibration, abstention,
    group slices (docs/trust.md)."""

    temperature_scaling: bool = _f(
        True,
        "Fit one temperature T on the best weights' validation logits (Guo et al. 2017); saved in "
        "model/domainfit.json, predict and serve report softmax(logits / T). Labels never change.",
    )
    target_accuracy: float | None = _f(
        None,
        "Pick min_confidence on validation: the lowest confidence at which the answered predictions "
        "reach this accuracy. predict and serve then answer 'abstain' below it (route to a person); "
        "--min-confidence overrides.",
        min_exclusive=0.0,
        max=1.0,
    )
    group_column: str | None = _f(
        None,
        "Column (JSON key) of the data files naming each record's group (hospital, region, sex, age "
        "band): every score per group, and the gaps between groups, in metrics.json and report.md.",
    )
    max_gap: float = _f(
        0.1,
        "Flag a score whose largest difference between two groups exceeds this (0.1: ten points of accuracy).",
        min=0.0,
        max=1.0,
    )


@dataclass
class GenerationConfig:
    """Settings of the ``generation`` task (instruction -> response fine-tuning of a causal LM); its LoRA
    settings are the ``peft`` section's (see :data:`TASK_DEFAULTS`)."""

    instruction_key: str = _f("instruction", "JSONL key holding the instruction (the question or task).")
    input_key: str = _f("input", "JSONL key holding optional extra input (e.g. a clinical note); may be absent.")
    response_key: str = _f("response", "JSONL key holding the reference response the model learns to write.")
    use_chat_template: bool = _f(
        True, "Format prompts with the tokenizer's chat template when it has one (else prompt_template)."
    )
    system_prompt: str | None = _f(None, "System message for chat templates (null: the template's own default).")
    prompt_template: str = _f(
        "### Instruction:\n{instruction}\n\n{input_block}### Response:\n",
        "Plain prompt when no chat template is used; {input_block} is '### Input:\\n<input>\\n\\n' or empty.",
    )
    save_merged: bool = _f(
        True, "With LoRA, also write the merged plain model into model/ (the adapter goes to model/adapter/)."
    )
    max_new_tokens: int = _f(64, "Longest generated response, in tokens (final ROUGE-L and predict).", min=1)
    rouge_max_examples: int = _f(
        50, "Generate for at most this many validation/test examples at the end for ROUGE-L (0: skip).", min=0
    )
    report_examples: int = _f(5, "Example generations shown in report.md next to their reference.", min=0)


@dataclass
class NerConfig:
    format: str = _f(
        "auto",
        "Token-classification file format: conll (token<TAB>tag lines, blank line between sentences) or spans "
        "(JSON/JSONL with character offsets); auto: spans for .json/.jsonl, conll otherwise.",
        choices=("auto", "conll", "spans"),
    )
    tag_scheme: str = _f(
        "iob2",
        "CoNLL tags: iob2 (every entity starts with B-) or iob1 (converted to IOB2 on reading).",
        choices=("iob2", "iob1"),
    )
    text_key: str = _f("text", "Span files: key of the text.")
    entities_key: str = _f("auto", "Span files: key of the list of spans (auto: 'entities', else 'spans').")
    start_key: str = _f("auto", "Span files: key of a span's first character (auto: 'start_idx', else 'start').")
    end_key: str = _f("auto", "Span files: key of a span's end (auto: 'end_idx', else 'end').")
    label_key: str = _f("auto", "Span files: key of a span's entity type (auto: 'type', else 'label').")
    end_inclusive: bool | None = _f(
        None,
        "Span files: whether the end offset is the last character (null: true for CMeEE's end_idx, false otherwise).",
    )
    overlapping_spans: str = _f(
        "error",
        "Span files: overlapping (nested) spans are an error, or keep_longer keeps the longer one.",
        choices=("error", "keep_longer"),
    )
    stride: int = _f(
        32, "Tokens shared by neighbouring windows when a sentence is longer than model.max_length.", min=0
    )
    label_all_subwords: bool = _f(
        False, "Train on every subword of a word (continuations get its I- tag), not only the first."
    )


@dataclass
class ImageConfig:
    """Image tasks only (task: image-classification): where the class of each image is, size, augmentation."""

    layout: str = _f(
        "auto",
        "How data.train names each image's class: folders (one sub-folder per class), csv (path,label "
        "rows, paths relative to the CSV), filename (a regex on the file name); auto picks csv for a .csv "
        "file, filename when filename_pattern is set, else folders.",
        choices=("auto", "folders", "csv", "filename"),
    )
    filename_pattern: str | None = _f(
        None,
        "Regex searched in each file name; its group 'label' (or group 1) is the class, "
        "e.g. '^(.+)_\\d+\\.\\w+$' for NEU's rolled-in_scale_12.jpg.",
    )
    path_column: str = _f("path", "CSV layout: the column holding image paths (the label is data.label_column).")
    image_size: int | None = _f(
        None, "Side of the square model input in pixels (null: the model's own, 224 for EfficientNet-Lite0).", min=16
    )
    augment: bool = _f(True, "Augment training batches (evaluation and test batches never are).")
    crop_scale_min: float = _f(
        0.7, "Random resized crop: smallest share of the image area kept (1.0: no cropping).", min=0.05, max=1.0
    )
    hflip: bool = _f(True, "Random horizontal flips in training.")
    vflip: bool = _f(False, "Random vertical flips in training (fine for textures and defects, not for street scenes).")
    rotation_degrees: float = _f(
        10.0, "Random rotation in training, up to this many degrees either way.", min=0.0, max=180.0
    )
    brightness: float = _f(0.2, "Random brightness change in training, up to this share either way.", min=0.0, max=1.0)
    contrast: float = _f(0.2, "Random contrast change in training, up to this share either way.", min=0.0, max=1.0)
    channels_last: bool = _f(
        True,
        "Feed the model NHWC tensors (channels_last): 2x faster EfficientNet-Lite0 training on CPU "
        "(benchmarks/bench_image_cpu.py).",
    )


@dataclass
class MaskingConfig:
    strategy: str = _f(
        "whole-word",
        "Which tokens an MLM masks: 'token' (BERT), 'whole-word' (all pieces of a word; Chinese words from jieba), "
        "'knowledge' (whole lexicon terms first, ERNIE-style, then whole words).",
        choices=("token", "whole-word", "knowledge"),
    )
    probability: float = _f(
        0.15,
        "Share of (non-special) tokens chosen for prediction; of those 80% become [MASK], 10% a random token, 10% "
        "stay.",
        min_exclusive=0.0,
        max=0.8,
    )
    lexicon: str | None = _f(
        None,
        "Domain lexicon for 'knowledge' masking: a term list (one per line) or knowledge-graph triples "
        "'head<TAB>relation<TAB>tail' (.tsv) whose entities become terms.",
    )
    term_fraction: float = _f(
        0.5,
        "Share of the masking budget spent on whole lexicon terms ('knowledge'); whole words fill the rest.",
        min=0.0,
        max=1.0,
    )
    language: str = _f(
        "auto",
        "Word segmentation: 'zh' (jieba), 'en' (the tokenizer's words), or 'auto' (jieba for texts with CJK "
        "characters).",
        choices=("auto", "en", "zh"),
    )


@dataclass
class JointConfig:
    enabled: bool = _f(
        False, "Add a masked-LM loss on unlabelled domain text to the task loss: L = L_task + mlm_weight * L_mlm."
    )
    corpus: str | None = _f(
        None, "Unlabelled text for the MLM loss: a file or folder (text lines, JSONL, CSV/TSV, JSON array)."
    )
    corpus_format: str = _f(
        "auto",
        "Corpus file format: auto (by extension), text, jsonl, csv, tsv, json.",
        choices=("auto", "text", "jsonl", "csv", "tsv", "json"),
    )
    corpus_column: str = _f("text", "Column or JSON key holding the text (CSV/TSV/JSONL/JSON corpora).")
    use_task_texts: bool = _f(True, "Also use the task's own training texts (labels ignored) as MLM text.")
    mlm_weight: float = _f(0.1, "Weight lambda of the MLM loss (its peak value under a schedule).", min=0.0)
    schedule: str = _f(
        "constant",
        "How lambda moves over training: constant, linear-decay (to 0 at the end), warmup (0 to mlm_weight over "
        "warmup_fraction).",
        choices=("constant", "linear-decay", "warmup"),
    )
    warmup_fraction: float = _f(
        0.1, "Share of training over which the 'warmup' schedule raises lambda.", min=0.0, max=1.0
    )
    batch_size: int | None = _f(None, "Unlabelled texts per MLM batch (null: train.batch_size).", min=1)
    head_warmup_steps: int = _f(
        0,
        "Before the first training step, train only the MLM head for N batches of the unlabelled stream (encoder "
        "untouched). A new head (MiniLM and e5 ship without one) otherwise sends large random gradients into the "
        "encoder.",
        min=0,
    )
    masking: MaskingConfig = field(default_factory=MaskingConfig, metadata={"help": "How MLM inputs are masked."})


@dataclass
class AugmentConfig:
    ops: list[str] = _f(
        [],
        "On-the-fly augmentation of training batches, one op picked at random per augmented text: swap, delete, "
        "insert, synonym, mlm (empty: off; see docs/augmentation.md).",
    )
    rate: float = _f(0.3, "Probability that a training text is augmented each time it is drawn.", min=0.0, max=1.0)
    alpha: float = _f(
        0.1,
        "Share of a text's words one op changes (at least one word), as in EDA (Wei & Zou 2019).",
        min_exclusive=0.0,
        max=1.0,
    )
    lexicon: str | None = _f(
        None,
        "Synonym file: one group per line, words separated by spaces (e.g. '心肌梗死 心梗 MI'); needed by synonym.",
    )
    language: str = _f(
        "auto",
        "How texts are cut into words: 'en' whitespace, 'zh' jieba, 'auto' jieba when the text holds CJK characters.",
        choices=("auto", "en", "zh"),
    )
    mlm_model: str | None = _f(
        None, "Masked LM for the mlm op: hub id or folder of a model WITH its MLM head (the packaged minilm has none)."
    )
    mlm_top_k: int = _f(10, "The mlm op picks a replacement at random among the masked LM's top-k predictions.", min=1)
    samples: int = _f(
        8, "Original -> augmented pairs written to augment_samples.txt (and the log) when training starts.", min=0
    )


@dataclass
class PeftConfig:
    method: str = _f(
        "none",
        "Parameter-efficient fine-tuning: none (all weights), lora, ia3, houlsby "
        "(see docs/robust.md). The generation task takes lora (its default there, with "
        "dropout 0.05 and target_modules all-linear) or none.",
    )
    r: int = _f(8, "LoRA rank.", min=1)
    alpha: float = _f(16.0, "LoRA scaling numerator (the update is scaled by alpha / r).", min_exclusive=0.0)
    dropout: float = _f(0.1, "Dropout on the LoRA input.", min=0.0, max=0.9)
    target_modules: str = _f(
        "",
        "Comma-separated module names to adapt (LoRA/IA3), e.g. 'query,value'; "
        "empty: peft's default for the architecture; the generation task also takes "
        "'all-linear' (its default there).",
    )
    adapter_size: int = _f(64, "Houlsby adapters: bottleneck width.", min=1)
    save: str = _f(
        "merged",
        "Saved model: merged (plain Hugging Face folder; LoRA/IA3 merged into the weights) or adapter (adapter "
        "weights + a reference to the base model).",
        choices=("merged", "adapter"),
    )


# Defaults a task gives a shared section, applied under the YAML file and the overrides (class defaults <
# these < YAML < overrides). A causal LM trains LoRA adapters on every linear layer by default: fully
# fine-tuning even a 135M-parameter decoder on a CPU costs far more time and memory (docs/generation.md).
TASK_DEFAULTS: dict[str, dict[str, dict[str, object]]] = {
    "generation": {"peft": {"method": "lora", "dropout": 0.05, "target_modules": "all-linear"}},
}

# Keys that moved to another section: the old key is refused with its new name, never silently ignored.
# old dotted key -> (new dotted key, how to rewrite the old value)
MOVED_KEYS: dict[str, tuple[str, str]] = {
    "generation.method": (
        "peft.method",
        "write peft.method: lora, or peft.method: none to train every weight (what 'full' was).",
    ),
    "generation.lora_r": ("peft.r", "rename it to peft.r (same value)."),
    "generation.lora_alpha": ("peft.alpha", "rename it to peft.alpha (same value)."),
    "generation.lora_dropout": ("peft.dropout", "rename it to peft.dropout (same value)."),
    "generation.lora_target_modules": ("peft.target_modules", "rename it to peft.target_modules (same value)."),
}

# The `regularization:` section is one flat mapping in YAML (regularization.rdrop_alpha, .adversarial, ...), but
# each remedy reads only its own part: one dataclass per part, and RegularizationConfig inherits them all, so the
# YAML keys, their order and `domainfit config` stay as they were. The objective wrappers register the part they
# read (domainfit.objectives.base.WRAPPERS); this layer stays pure data and imports none of them.


@dataclass
class TaskLossConfig:
    """The task loss and its weighting (``domainfit.objectives.compose``)."""

    objective: str = _f("cross-entropy", "Task loss: cross-entropy or focal (Lin et al. 2017).")
    class_weights: str | dict[str, float] = _f(
        "none",
        "Per-class loss weights: none, balanced (n / (k * count) from training label counts), or a mapping {label: "
        "weight}.",
    )
    focal_gamma: float = _f(2.0, "Focal loss focusing parameter gamma (0 gives cross-entropy).", min=0.0)
    label_smoothing: float = _f(0.0, "Label smoothing (Szegedy et al. 2016).", min=0.0, max=0.5)


@dataclass
class RDropConfig:
    """R-Drop's part of ``regularization`` (``domainfit.objectives.rdrop``)."""

    rdrop_alpha: float = _f(
        0.0, "R-Drop (Liang et al. 2021): weight of the symmetric KL between two dropout passes (0: off).", min=0.0
    )


@dataclass
class SamplingConfig:
    """Oversampling: read by the task when it builds the training sampler, not by the objective."""

    oversample: bool = _f(False, "Oversample rare classes so every class is seen equally often per epoch.")


@dataclass
class AdversarialConfig:
    """Adversarial training's part of ``regularization`` (``domainfit.objectives.adversarial``)."""

    adversarial: str = _f("none", "Adversarial training on the word embeddings: none, fgm, pgd, freelb.")
    adv_epsilon: float = _f(1.0, "Adversarial perturbation radius (L2 per example).", min_exclusive=0.0)
    adv_alpha: float = _f(0.3, "PGD/FreeLB ascent step size.", min_exclusive=0.0)
    adv_steps: int = _f(3, "PGD/FreeLB ascent steps K.", min=1)


@dataclass
class RegularizationConfig(AdversarialConfig, SamplingConfig, RDropConfig, TaskLossConfig):
    """The flat ``regularization:`` section: every part's fields (dataclasses take a subclass's inherited
    fields from the last base first, so the keys keep their order: task loss, R-Drop, oversample, adversarial)."""


def _validate_token_classification(cfg: RunConfig, source: Path | None) -> None:
    if cfg.data.format != "auto":
        raise ConfigError(
            f"data.format {cfg.data.format!r} is for text classification",
            path=source,
            key="data.format",
            fix="leave data.format at auto and set ner.format (conll or spans).",
        )
    if cfg.model.text_prefix:
        raise ConfigError(
            "token classification does not support a text prefix yet",
            path=source,
            key="model.text_prefix",
            fix="remove model.text_prefix.",
        )
    if cfg.ner.stride > (cfg.model.max_length - 2) // 2:
        raise ConfigError(
            f"ner.stride {cfg.ner.stride} is too large for model.max_length {cfg.model.max_length}: "
            "windows would advance less than half their size",
            path=source,
            key="ner.stride",
            fix=f"set ner.stride to at most {(cfg.model.max_length - 2) // 2}.",
        )


def _validate_image(image: ImageConfig, source: Path | None) -> None:
    import re

    if image.filename_pattern is not None:
        try:
            re.compile(image.filename_pattern)
        except re.error as e:
            raise ConfigError(
                f"not a valid regular expression: {e}",
                path=source,
                key="image.filename_pattern",
                fix="e.g. '^(.+)_\\d+\\.\\w+$' (in YAML, single-quote it so backslashes stay).",
            ) from e
    if image.layout == "filename" and not image.filename_pattern:
        raise ConfigError(
            "layout 'filename' needs a pattern",
            path=source,
            key="image.filename_pattern",
            fix="set image.filename_pattern, e.g. '^(.+)_\\d+\\.\\w+$'.",
        )


def _validate_long_text_and_augment(cfg: RunConfig, source: Path | None) -> None:
    if cfg.model.window_stride is not None and cfg.model.window_stride > cfg.model.max_length - 2:
        raise ConfigError(
            f"a stride of {cfg.model.window_stride} tokens would skip text between windows of "
            f"{cfg.model.max_length} tokens",
            path=source,
            key="model.window_stride",
            fix=f"set it to at most model.max_length - 2 = {cfg.model.max_length - 2}, or null.",
        )


def _validate_robust(cfg: RunConfig, source: Path | None) -> None:
    """Class-weight values (the names of objectives and methods are the task's to check)."""
    reg = cfg.regularization
    if isinstance(reg.class_weights, str) and reg.class_weights not in ("none", "balanced"):
        raise ConfigError(
            f"invalid value {reg.class_weights!r}",
            path=source,
            key="regularization.class_weights",
            fix="use none, balanced, or a mapping {label: weight}.",
        )
    if isinstance(reg.class_weights, dict):
        for label, weight in reg.class_weights.items():
            if weight <= 0:
                raise ConfigError(
                    f"weight {weight} for label {label!r} must be > 0",
                    path=source,
                    key=f"regularization.class_weights.{label}",
                    fix="give a positive weight.",
                )


def _validate_joint(joint: JointConfig, source: Path | None) -> None:
    if not joint.enabled:
        return
    if not joint.corpus and not joint.use_task_texts:
        raise ConfigError(
            "the joint MLM objective has no text: give joint.corpus or set joint.use_task_texts: true",
            path=source,
            key="joint.corpus",
            fix="set joint.corpus: path/to/domain_texts.txt",
        )
    _validate_masking(joint.masking, source, prefix="joint.masking")


def _validate_masking(masking: MaskingConfig, source: Path | None, *, prefix: str) -> None:
    if masking.strategy == "knowledge" and not masking.lexicon:
        raise ConfigError(
            "knowledge-guided masking needs a domain lexicon",
            path=source,
            key=f"{prefix}.lexicon",
            fix="set it to a term list (one per line) or a TSV of head<TAB>relation<TAB>tail triples.",
        )
    if masking.lexicon and masking.strategy != "knowledge":
        raise ConfigError(
            f"a lexicon is only used by strategy 'knowledge' (strategy is {masking.strategy!r})",
            path=source,
            key=f"{prefix}.strategy",
            fix="set strategy: knowledge, or remove the lexicon.",
        )
