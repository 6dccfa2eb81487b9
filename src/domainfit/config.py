"""Typed run configuration: YAML file < ``dotted.key=value`` overrides, validated at load time.

    domainfit train my.yaml train.learning_rate=3e-5 output.dir=runs/try2

One dataclass per concern (:class:`ModelConfig`, :class:`DataConfig`, :class:`TrainConfig`,
:class:`OutputConfig`) under :class:`RunConfig`. Every field carries a one-line ``help`` that doubles as
documentation (``domainfit config --help-fields``). Unknown keys are errors that name the key and suggest the
near miss; values are coerced to the field's type and range-checked; cross-field checks name the key to change.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from domainfit.errors import ConfigError


def _f(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a help string (and a default factory for mutable defaults)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ModelConfig:
    name: str = _f("minilm", "Hugging Face model id, local folder, or a built-in short name (see `domainfit models`).")
    max_length: int = _f(128, "Longest input in tokens; longer texts are truncated.", min=8)
    text_prefix: str = _f("", "Text prepended to every input (e5 models expect 'query: ').")
    dropout: float | None = _f(None, "Override the model's hidden dropout probability (None keeps the model's).", min=0.0, max=0.9)
    attn_implementation: str = _f("sdpa", "Attention kernel: 'sdpa' (PyTorch fused attention) or 'eager'.", choices=("sdpa", "eager"))
    long_text: str = _f("truncate", "Texts longer than max_length: 'truncate' (keep the start) or 'windows' (overlapping windows, logits aggregated per document; see docs/long_documents.md).",
                        choices=("truncate", "windows"))
    window_stride: int | None = _f(None, "With long_text=windows: tokens from one window's start to the next (null: half a window).", min=1)
    window_aggregation: str = _f("mean", "With long_text=windows: document logits = 'mean' or 'max' of its windows' logits.", choices=("mean", "max"))


@dataclass
class DataConfig:
    train: str = _f("", "Training file (CSV, TSV, JSONL, JSON array, Parquet or delimited text).")
    validation: str | None = _f(None, "Validation file; if absent it is split off the training file.")
    test: str | None = _f(None, "Test file; if absent (and validation absent) it is split off the training file.")
    format: str = _f("auto", "File format: auto (by extension), csv, tsv, jsonl, json, parquet, delimited.",
                     choices=("auto", "csv", "tsv", "jsonl", "json", "parquet", "delimited"))
    text_column: str | int = _f("text", "Column (or JSON key) holding the text; an integer index if header is false.")
    label_column: str | int = _f("label", "Column (or JSON key) holding the label; an integer index if header is false.")
    separator: str | None = _f(None, "Field separator: overrides the CSV/TSV delimiter; required for delimited text ('@' for PhraseBank).")
    encoding: str = _f("utf-8", "Text encoding of the files (PhraseBank is latin-1).")
    header: bool = _f(True, "Whether CSV/TSV files start with a header row.")
    validation_fraction: float = _f(0.1, "Share of the deduplicated data split off for validation when no validation file is given.", min=0.0, max=0.5)
    test_fraction: float = _f(0.1, "Share split off for test when neither validation nor test file is given.", min=0.0, max=0.5)
    stratify: bool = _f(True, "Keep class proportions equal across split-off sets.")
    split_seed: int = _f(42, "Seed for splitting (kept apart from the training seed so seeds share one split).")
    max_train_samples: int | None = _f(None, "Use only the first N training examples (after dedup and split): for smoke tests.", min=1)
    max_train_per_class: int | None = _f(None, "Low-resource setting: keep at most N training examples per label, drawn with data.sample_seed (validation/test untouched).", min=1)
    sample_seed: int = _f(0, "Seed for drawing the data.max_train_per_class examples.")


@dataclass
class TrainConfig:
    epochs: int = _f(3, "Passes over the training data.", min=1)
    batch_size: int = _f(32, "Examples per optimizer step per device (before accumulation).", min=1)
    eval_batch_size: int = _f(128, "Examples per batch during evaluation.", min=1)
    learning_rate: float = _f(5e-5, "Peak AdamW learning rate.", min_exclusive=0.0, max=1.0)
    weight_decay: float = _f(0.01, "AdamW decoupled weight decay (not applied to biases and LayerNorm).", min=0.0, max=1.0)
    warmup_ratio: float = _f(0.06, "Fraction of all steps with linear learning-rate warmup.", min=0.0, max=0.5)
    max_grad_norm: float | None = _f(1.0, "Clip the gradient norm to this value (null to disable).", min_exclusive=0.0)
    grad_accum_steps: int = _f(1, "Accumulate gradients over this many batches per optimizer step.", min=1)
    seed: int = _f(42, "Seed for weights of the new head, shuffling and dropout.")
    eval_every: int | Literal["epoch"] = _f("epoch", "Evaluate every N optimizer steps, or 'epoch'.", min=1)
    best_metric: str = _f("f1_macro", "Validation metric that picks the best checkpoint (loss is minimised, others maximised).")
    early_stopping_patience: int | None = _f(None, "Stop after this many evaluations without improvement (null: never).", min=1)
    pad_to_multiple_of: int | None = _f(None, "Round each batch's padded length up to a multiple of this (fewer distinct shapes: less memory held by CPU kernels; null: no rounding).", min=1)
    group_by_length: bool = _f(True, "Batch texts of similar length together (shuffled in chunks) to cut padding.")
    precision: str = _f("auto", "Compute precision: auto (bf16/fp16 autocast on GPUs; on CPUs bf16 only where a quick matmul test shows it faster), fp32, bf16, fp16.",
                        choices=("auto", "fp32", "bf16", "fp16"))
    num_threads: int | None = _f(None, "CPU threads for torch (null: one per physical core).", min=1)
    log_every: int = _f(10, "Write training loss to TensorBoard and the progress bar every N optimizer steps.", min=1)
    save_last: bool = _f(True, "Keep a resumable checkpoint at the end of each epoch (needed for --resume).")
    save_every: int | None = _f(None, "Also keep a resumable checkpoint every N optimizer steps (null: only at evaluations).", min=1)
    layer_decay: float = _f(1.0, "Layer-wise learning-rate decay: layer at depth d from the top trains at lr * layer_decay^d, embeddings lowest, head at full lr (1.0: off).", min_exclusive=0.0, max=1.0)


@dataclass
class OutputConfig:
    dir: str = _f("runs/domainfit", "Output folder: model/, checkpoints/, tensorboard/, metrics.json, report.md.")
    overwrite: bool = _f(False, "Allow writing into an output folder that already holds a finished run.")


@dataclass
class MultiLabelConfig:
    label_separator: str = _f(";", "Separator between labels in a string label cell (CSV/TSV/delimited): 'cancer;tumor'. JSON lists need none.")
    pos_weight: bool = _f(False, "Weight each label's positive term in the BCE loss by its negatives/positives ratio in the training data (helps rare labels).")
    max_pos_weight: float = _f(10.0, "Upper bound on a label's positive weight when pos_weight is on.", min=1.0)
    threshold: float = _f(0.5, "Default decision threshold on each label's probability (always reported, for comparison).", min_exclusive=0.0, max=1.0)
    tune_thresholds: bool = _f(True, "Pick each label's threshold to maximise its F1 on the validation set; stored with the model and used on test and by predict.")
    threshold_step: float = _f(0.05, "Spacing of the threshold grid searched when tuning (0.05: 0.05, 0.10 ... 0.95).", min=0.005, max=0.25)
    unseen_labels: str = _f("error", "A validation/test label that never occurs in training: 'error', or 'drop' (warn and ignore it).", choices=("error", "drop"))


@dataclass
class GenerationConfig:
    """Settings of the ``generation`` task (instruction -> response fine-tuning of a causal LM)."""

    instruction_key: str = _f("instruction", "JSONL key holding the instruction (the question or task).")
    input_key: str = _f("input", "JSONL key holding optional extra input (e.g. a clinical note); may be absent.")
    response_key: str = _f("response", "JSONL key holding the reference response the model learns to write.")
    use_chat_template: bool = _f(True, "Format prompts with the tokenizer's chat template when it has one (else prompt_template).")
    system_prompt: str | None = _f(None, "System message for chat templates (null: the template's own default).")
    prompt_template: str = _f("### Instruction:\n{instruction}\n\n{input_block}### Response:\n",
                              "Plain prompt when no chat template is used; {input_block} is '### Input:\\n<input>\\n\\n' or empty.")
    method: str = _f("lora", "Fine-tuning method: 'lora' (PEFT low-rank adapters, Hu et al. 2021) or 'full'.", choices=("lora", "full"))
    lora_r: int = _f(8, "LoRA rank.", min=1)
    lora_alpha: int = _f(16, "LoRA scaling numerator (scale = alpha / r).", min=1)
    lora_dropout: float = _f(0.05, "Dropout on the LoRA input.", min=0.0, max=0.9)
    lora_target_modules: str = _f("all-linear", "Modules to adapt: 'all-linear' or comma-separated names, e.g. 'q_proj,v_proj'.")
    save_merged: bool = _f(True, "With LoRA, also write the merged plain model into model/ (the adapter goes to model/adapter/).")
    max_new_tokens: int = _f(64, "Longest generated response, in tokens (final ROUGE-L and predict).", min=1)
    rouge_max_examples: int = _f(50, "Generate for at most this many validation/test examples at the end for ROUGE-L (0: skip).", min=0)
    report_examples: int = _f(5, "Example generations shown in report.md next to their reference.", min=0)


@dataclass
class NerConfig:
    format: str = _f("auto", "Token-classification file format: conll (token<TAB>tag lines, blank line between sentences) or spans (JSON/JSONL with character offsets); auto: spans for .json/.jsonl, conll otherwise.",
                     choices=("auto", "conll", "spans"))
    tag_scheme: str = _f("iob2", "CoNLL tags: iob2 (every entity starts with B-) or iob1 (converted to IOB2 on reading).", choices=("iob2", "iob1"))
    text_key: str = _f("text", "Span files: key of the text.")
    entities_key: str = _f("auto", "Span files: key of the list of spans (auto: 'entities', else 'spans').")
    start_key: str = _f("auto", "Span files: key of a span's first character (auto: 'start_idx', else 'start').")
    end_key: str = _f("auto", "Span files: key of a span's end (auto: 'end_idx', else 'end').")
    label_key: str = _f("auto", "Span files: key of a span's entity type (auto: 'type', else 'label').")
    end_inclusive: bool | None = _f(None, "Span files: whether the end offset is the last character (null: true for CMeEE's end_idx, false otherwise).")
    overlapping_spans: str = _f("error", "Span files: overlapping (nested) spans are an error, or keep_longer keeps the longer one.", choices=("error", "keep_longer"))
    stride: int = _f(32, "Tokens shared by neighbouring windows when a sentence is longer than model.max_length.", min=0)
    label_all_subwords: bool = _f(False, "Train on every subword of a word (continuations get its I- tag), not only the first.")


@dataclass
class ImageConfig:
    """Image tasks only (task: image-classification): where the class of each image is, size, augmentation."""

    layout: str = _f("auto", "How data.train names each image's class: folders (one sub-folder per class), csv (path,label "
                     "rows, paths relative to the CSV), filename (a regex on the file name); auto picks csv for a .csv "
                     "file, filename when filename_pattern is set, else folders.", choices=("auto", "folders", "csv", "filename"))
    filename_pattern: str | None = _f(None, "Regex searched in each file name; its group 'label' (or group 1) is the class, "
                                      "e.g. '^(.+)_\\d+\\.\\w+$' for NEU's rolled-in_scale_12.jpg.")
    path_column: str = _f("path", "CSV layout: the column holding image paths (the label is data.label_column).")
    image_size: int | None = _f(None, "Side of the square model input in pixels (null: the model's own, 224 for EfficientNet-Lite0).", min=16)
    augment: bool = _f(True, "Augment training batches (evaluation and test batches never are).")
    crop_scale_min: float = _f(0.7, "Random resized crop: smallest share of the image area kept (1.0: no cropping).", min=0.05, max=1.0)
    hflip: bool = _f(True, "Random horizontal flips in training.")
    vflip: bool = _f(False, "Random vertical flips in training (fine for textures and defects, not for street scenes).")
    rotation_degrees: float = _f(10.0, "Random rotation in training, up to this many degrees either way.", min=0.0, max=180.0)
    brightness: float = _f(0.2, "Random brightness change in training, up to this share either way.", min=0.0, max=1.0)
    contrast: float = _f(0.2, "Random contrast change in training, up to this share either way.", min=0.0, max=1.0)
    channels_last: bool = _f(True, "Feed the model NHWC tensors (channels_last): 2x faster EfficientNet-Lite0 training on CPU "
                             "(benchmarks/bench_image_cpu.py).")


@dataclass
class MaskingConfig:
    strategy: str = _f("whole-word", "Which tokens an MLM masks: 'token' (BERT), 'whole-word' (all pieces of a word; Chinese words from jieba), 'knowledge' (whole lexicon terms first, ERNIE-style, then whole words).",
                       choices=("token", "whole-word", "knowledge"))
    probability: float = _f(0.15, "Share of (non-special) tokens chosen for prediction; of those 80% become [MASK], 10% a random token, 10% stay.", min_exclusive=0.0, max=0.8)
    lexicon: str | None = _f(None, "Domain lexicon for 'knowledge' masking: a term list (one per line) or knowledge-graph triples 'head<TAB>relation<TAB>tail' (.tsv) whose entities become terms.")
    term_fraction: float = _f(0.5, "Share of the masking budget spent on whole lexicon terms ('knowledge'); whole words fill the rest.", min=0.0, max=1.0)
    language: str = _f("auto", "Word segmentation: 'zh' (jieba), 'en' (the tokenizer's words), or 'auto' (jieba for texts with CJK characters).",
                       choices=("auto", "en", "zh"))


@dataclass
class JointConfig:
    enabled: bool = _f(False, "Add a masked-LM loss on unlabelled domain text to the task loss: L = L_task + mlm_weight * L_mlm.")
    corpus: str | None = _f(None, "Unlabelled text for the MLM loss: a file or folder (text lines, JSONL, CSV/TSV, JSON array).")
    corpus_format: str = _f("auto", "Corpus file format: auto (by extension), text, jsonl, csv, tsv, json.", choices=("auto", "text", "jsonl", "csv", "tsv", "json"))
    corpus_column: str = _f("text", "Column or JSON key holding the text (CSV/TSV/JSONL/JSON corpora).")
    use_task_texts: bool = _f(True, "Also use the task's own training texts (labels ignored) as MLM text.")
    mlm_weight: float = _f(0.1, "Weight lambda of the MLM loss (its peak value under a schedule).", min=0.0)
    schedule: str = _f("constant", "How lambda moves over training: constant, linear-decay (to 0 at the end), warmup (0 to mlm_weight over warmup_fraction).",
                       choices=("constant", "linear-decay", "warmup"))
    warmup_fraction: float = _f(0.1, "Share of training over which the 'warmup' schedule raises lambda.", min=0.0, max=1.0)
    batch_size: int | None = _f(None, "Unlabelled texts per MLM batch (null: train.batch_size).", min=1)
    masking: MaskingConfig = field(default_factory=MaskingConfig, metadata={"help": "How MLM inputs are masked."})


@dataclass
class AugmentConfig:
    ops: list[str] = _f([], "On-the-fly augmentation of training batches, one op picked at random per augmented text: swap, delete, insert, synonym, mlm (empty: off; see docs/augmentation.md).")
    rate: float = _f(0.3, "Probability that a training text is augmented each time it is drawn.", min=0.0, max=1.0)
    alpha: float = _f(0.1, "Share of a text's words one op changes (at least one word), as in EDA (Wei & Zou 2019).", min_exclusive=0.0, max=1.0)
    lexicon: str | None = _f(None, "Synonym file: one group per line, words separated by spaces (e.g. '心肌梗死 心梗 MI'); needed by synonym.")
    language: str = _f("auto", "How texts are cut into words: 'en' whitespace, 'zh' jieba, 'auto' jieba when the text holds CJK characters.",
                       choices=("auto", "en", "zh"))
    mlm_model: str | None = _f(None, "Masked LM for the mlm op: hub id or folder of a model WITH its MLM head (the packaged minilm has none).")
    mlm_top_k: int = _f(10, "The mlm op picks a replacement at random among the masked LM's top-k predictions.", min=1)
    samples: int = _f(8, "Original -> augmented pairs written to augment_samples.txt (and the log) when training starts.", min=0)


@dataclass
class PeftConfig:
    method: str = _f("none", "Parameter-efficient fine-tuning: none (all weights), lora, ia3, houlsby (see docs/robust.md).")
    r: int = _f(8, "LoRA rank.", min=1)
    alpha: float = _f(16.0, "LoRA scaling numerator (the update is scaled by alpha / r).", min_exclusive=0.0)
    dropout: float = _f(0.1, "Dropout on the LoRA input.", min=0.0, max=0.9)
    target_modules: str = _f("", "Comma-separated module names to adapt (LoRA/IA3), e.g. 'query,value'; empty: peft's default for the architecture.")
    adapter_size: int = _f(64, "Houlsby adapters: bottleneck width.", min=1)
    save: str = _f("merged", "Saved model: merged (plain Hugging Face folder; LoRA/IA3 merged into the weights) or adapter (adapter weights + a reference to the base model).",
                   choices=("merged", "adapter"))


@dataclass
class RegularizationConfig:
    objective: str = _f("cross-entropy", "Task loss: cross-entropy or focal (Lin et al. 2017).")
    class_weights: str | dict[str, float] = _f("none", "Per-class loss weights: none, balanced (n / (k * count) from training label counts), or a mapping {label: weight}.")
    focal_gamma: float = _f(2.0, "Focal loss focusing parameter gamma (0 gives cross-entropy).", min=0.0)
    label_smoothing: float = _f(0.0, "Label smoothing (Szegedy et al. 2016).", min=0.0, max=0.5)
    rdrop_alpha: float = _f(0.0, "R-Drop (Liang et al. 2021): weight of the symmetric KL between two dropout passes (0: off).", min=0.0)
    oversample: bool = _f(False, "Oversample rare classes so every class is seen equally often per epoch.")
    adversarial: str = _f("none", "Adversarial training on the word embeddings: none, fgm, pgd, freelb.")
    adv_epsilon: float = _f(1.0, "Adversarial perturbation radius (L2 per example).", min_exclusive=0.0)
    adv_alpha: float = _f(0.3, "PGD/FreeLB ascent step size.", min_exclusive=0.0)
    adv_steps: int = _f(3, "PGD/FreeLB ascent steps K.", min=1)


@dataclass
class RunConfig:
    task: str = _f("text-classification", "Task to train (see `domainfit tasks`).")
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The pretrained model to start from."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Where the labelled data is and how to read it."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Optimisation and selection."})
    output: OutputConfig = field(default_factory=OutputConfig, metadata={"help": "Where results go."})
    multi_label: MultiLabelConfig = field(default_factory=MultiLabelConfig, metadata={"help": "Multi-label classification (task: multi-label-classification)."})
    generation: GenerationConfig = field(default_factory=GenerationConfig, metadata={"help": "Generation task: prompts, LoRA, decoding."})
    ner: NerConfig = field(default_factory=NerConfig, metadata={"help": "Token classification (task: token-classification): file format, windows."})
    image: ImageConfig = field(default_factory=ImageConfig, metadata={"help": "Image tasks: class layout, size, augmentation."})
    joint: JointConfig = field(default_factory=JointConfig, metadata={"help": "Optional masked-LM loss on domain text alongside the task (joint objective)."})
    augment: AugmentConfig = field(default_factory=AugmentConfig, metadata={"help": "On-the-fly data augmentation of training batches."})
    peft: PeftConfig = field(default_factory=PeftConfig, metadata={"help": "Parameter-efficient fine-tuning (LoRA, IA3, Houlsby adapters)."})
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig, metadata={"help": "Losses and remedies for small, imbalanced, noisy data."})


# --------------------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config, apply ``dotted.key=value`` overrides, validate, and resolve relative paths.

    Args:
        path: YAML file, or None for the defaults.
        overrides: strings like ``train.learning_rate=3e-5``; values are parsed as YAML scalars.

    Returns:
        A validated :class:`RunConfig`. Data paths relative to the config file are resolved against the
        current directory first, then the config file's folder.
    """
    raw = _read_raw(path, overrides)
    cfg = _build(RunConfig, raw, prefix="", source=path)
    validate(cfg, source=path)
    if path is not None:
        _resolve_paths(cfg.data, Path(path).parent)
        for section, name in ((cfg.augment, "lexicon"), (cfg.joint, "corpus"), (cfg.joint.masking, "lexicon")):
            _resolve_path(section, name, Path(path).parent)
    return cfg


def _read_raw(path: str | Path | None, overrides: list[str] | None) -> dict[str, Any]:
    """The YAML file's mapping with ``dotted.key=value`` overrides applied (no schema yet)."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError("config file not found", path=path, fix="check the path, or run `domainfit init` to write one.")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise ConfigError(
                f"not valid YAML: {getattr(e, 'problem', e)}",
                path=path,
                line=mark.line + 1 if mark else None,
                column=mark.column + 1 if mark else None,
                fix="check indentation and quoting on that line.",
            ) from e
        except UnicodeDecodeError as e:
            raise ConfigError("config file is not UTF-8 text", path=path, fix="save it as UTF-8.") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"expected a mapping of sections at the top level, found {type(loaded).__name__}", path=path)
        raw = loaded
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value", fix="e.g. train.learning_rate=3e-5")
        _set_dotted(raw, key.strip(), yaml.safe_load(value) if value.strip() else None)
    return raw


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {'.'.join(parts[: i + 1])!r} is not a section", key=key)
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, *, prefix: str, source: Path | None) -> Any:
    """Turn a nested dict into dataclass ``cls``, rejecting unknown keys and coercing types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a section (mapping), found {raw!r}", path=source, key=prefix.rstrip(".") or None)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"Did you mean '{prefix}{near[0]}'? " if near else ""
            raise ConfigError(
                f"unknown key. {hint}Valid keys here: {', '.join(fields)}",
                path=source,
                key=dotted,
                fix=f"rename or remove it{f' (did you mean {prefix}{near[0]}?)' if near else ''}.",
            )
        ftype = hints[key]
        if dataclasses.is_dataclass(ftype):
            kwargs[key] = _build(ftype, value, prefix=f"{dotted}.", source=source)
        else:
            kwargs[key] = _coerce(value, ftype, fields[key], dotted, source)
    return cls(**kwargs)


def _coerce(value: Any, ftype: Any, f: dataclasses.Field, key: str, source: Path | None) -> Any:
    """Coerce a YAML value to the field's annotated type, or raise a ConfigError naming the key."""
    options = typing.get_args(ftype) if _is_union(ftype) else (ftype,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError("a value is required here (found null)", path=source, key=key, fix=_expect(options, f))
    errors = []
    for opt in options:
        if opt is type(None):
            continue
        if typing.get_origin(opt) is Literal:
            if value in typing.get_args(opt):
                return value
            continue
        try:
            coerced = _coerce_scalar(value, opt)
        except (TypeError, ValueError) as e:
            errors.append(str(e))
            continue
        _check_range(coerced, f, key, source)
        return coerced
    raise ConfigError(f"invalid value {value!r}", path=source, key=key, fix=_expect(options, f))


def _is_union(t: Any) -> bool:
    return typing.get_origin(t) in (typing.Union, types.UnionType)


def _coerce_scalar(value: Any, opt: type) -> Any:
    if opt is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("not a boolean")
    if opt is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise TypeError("not an integer")
        return int(value)
    if opt is float:
        if isinstance(value, bool):
            raise TypeError("not a number")
        if isinstance(value, str):
            return float(value)  # YAML reads "5e-5" (no dot) as a string
        if not isinstance(value, (int, float)):
            raise TypeError("not a number")
        return float(value)
    if typing.get_origin(opt) is list:
        if not isinstance(value, list):
            raise TypeError("not a list")
        return [_coerce_scalar(v, typing.get_args(opt)[0]) for v in value]
    if opt is str:
        if isinstance(value, (dict, list)):
            raise TypeError("not a string")
        return str(value)
    if typing.get_origin(opt) is dict:  # {name: number}, e.g. per-label class weights
        if not isinstance(value, dict):
            raise TypeError("not a mapping")
        return {str(k): _coerce_scalar(v, typing.get_args(opt)[1]) for k, v in value.items()}
    raise TypeError(f"unsupported type {opt}")


def _check_range(value: Any, f: dataclasses.Field, key: str, source: Path | None) -> None:
    m = f.metadata
    if "choices" in m and value not in m["choices"]:
        near = difflib.get_close_matches(str(value), m["choices"], n=1)
        raise ConfigError(
            f"invalid value {value!r}.{f' Did you mean {near[0]!r}?' if near else ''}",
            path=source, key=key, fix=f"use one of: {', '.join(m['choices'])}.",
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "min" in m and value < m["min"]:
            raise ConfigError(f"{value} is too small: must be >= {m['min']}", path=source, key=key, fix=f.metadata["help"])
        if "min_exclusive" in m and value <= m["min_exclusive"]:
            raise ConfigError(f"{value} is too small: must be > {m['min_exclusive']}", path=source, key=key, fix=f.metadata["help"])
        if "max" in m and value > m["max"]:
            raise ConfigError(f"{value} is too large: must be <= {m['max']}", path=source, key=key, fix=f.metadata["help"])


def _expect(options: tuple, f: dataclasses.Field) -> str:
    names = []
    for opt in options:
        if typing.get_origin(opt) is Literal:
            names += [repr(a) for a in typing.get_args(opt)]
        elif opt is type(None):
            names.append("null")
        else:
            names.append({int: "an integer", float: "a number", str: "a string", bool: "true or false",
                          list[str]: "a list of strings, e.g. [a, b]"}.get(opt, str(opt)))
    return f"expected {' or '.join(names)}. ({f.metadata['help']})"


def validate(cfg: RunConfig, source: Path | None = None) -> None:
    """Cross-field checks; each message names the key to change."""
    from domainfit.evaluation.metrics import metric_direction
    from domainfit.tasks import TASKS

    TASKS.get(cfg.task, key="task")
    if not cfg.data.train:
        raise ConfigError("no training file given", path=source, key="data.train", fix="set data.train: path/to/train.csv")
    if cfg.data.format == "delimited" and not cfg.data.separator:
        raise ConfigError("delimited text needs a separator", path=source, key="data.separator",
                          fix="set data.separator, e.g. '@' for PhraseBank's sentence@label lines.")
    metric_direction(cfg.train.best_metric, key="train.best_metric")
    if cfg.data.validation is None and cfg.data.validation_fraction == 0:
        raise ConfigError("no validation data: give data.validation or a data.validation_fraction > 0",
                          path=source, key="data.validation_fraction", fix="set data.validation_fraction: 0.1")
    if not cfg.multi_label.label_separator:
        raise ConfigError("the label separator is empty", path=source, key="multi_label.label_separator",
                          fix="set it to the character between labels, e.g. ';' or '|'.")
    if cfg.task == "multi-label-classification" and cfg.data.format == "delimited" and cfg.data.separator == cfg.multi_label.label_separator:
        raise ConfigError(f"data.separator and multi_label.label_separator are both {cfg.data.separator!r}, so a "
                          "`text<sep>labels` line cannot be split", path=source, key="multi_label.label_separator",
                          fix="use different characters, e.g. data.separator: '\\t' and multi_label.label_separator: ';'.")
    _validate_image(cfg.image, source)
    _validate_joint(cfg.joint, source)
    _validate_long_text_and_augment(cfg, source)
    _validate_robust(cfg, source)
    if cfg.task == "token-classification":
        _validate_token_classification(cfg, source)


def _validate_token_classification(cfg: RunConfig, source: Path | None) -> None:
    if cfg.data.format != "auto":
        raise ConfigError(f"data.format {cfg.data.format!r} is for text classification", path=source,
                          key="data.format", fix="leave data.format at auto and set ner.format (conll or spans).")
    if cfg.model.text_prefix:
        raise ConfigError("token classification does not support a text prefix yet", path=source,
                          key="model.text_prefix", fix="remove model.text_prefix.")
    if cfg.ner.stride > (cfg.model.max_length - 2) // 2:
        raise ConfigError(f"ner.stride {cfg.ner.stride} is too large for model.max_length {cfg.model.max_length}: "
                          "windows would advance less than half their size", path=source, key="ner.stride",
                          fix=f"set ner.stride to at most {(cfg.model.max_length - 2) // 2}.")


def _validate_image(image: ImageConfig, source: Path | None) -> None:
    import re

    if image.filename_pattern is not None:
        try:
            re.compile(image.filename_pattern)
        except re.error as e:
            raise ConfigError(f"not a valid regular expression: {e}", path=source, key="image.filename_pattern",
                              fix="e.g. '^(.+)_\\d+\\.\\w+$' (in YAML, single-quote it so backslashes stay).") from e
    if image.layout == "filename" and not image.filename_pattern:
        raise ConfigError("layout 'filename' needs a pattern", path=source, key="image.filename_pattern",
                          fix="set image.filename_pattern, e.g. '^(.+)_\\d+\\.\\w+$'.")


def _validate_long_text_and_augment(cfg: RunConfig, source: Path | None) -> None:
    from domainfit.data.augment import AUGMENTERS

    supported = ("text-classification",)  # the tasks whose encode/collate implement windows and augmentation
    if cfg.model.long_text == "windows" and cfg.task not in supported:
        raise ConfigError(f"task {cfg.task!r} does not window long texts", path=source, key="model.long_text",
                          fix=f"set model.long_text: truncate (windows work with: {', '.join(supported)}).")
    if cfg.model.window_stride is not None and cfg.model.window_stride > cfg.model.max_length - 2:
        raise ConfigError(f"a stride of {cfg.model.window_stride} tokens would skip text between windows of "
                          f"{cfg.model.max_length} tokens", path=source, key="model.window_stride",
                          fix=f"set it to at most model.max_length - 2 = {cfg.model.max_length - 2}, or null.")
    if not cfg.augment.ops:
        return
    if cfg.task not in supported:
        raise ConfigError(f"task {cfg.task!r} does not augment its data", path=source, key="augment.ops",
                          fix=f"remove augment.ops (augmentation works with: {', '.join(supported)}).")
    for op in cfg.augment.ops:
        AUGMENTERS.get(op, key="augment.ops")
    if "synonym" in cfg.augment.ops and not cfg.augment.lexicon:
        raise ConfigError("the synonym op needs a lexicon of synonym groups", path=source, key="augment.lexicon",
                          fix="set augment.lexicon: path/to/synonyms.txt (one group per line), or drop synonym.")
    if "mlm" in cfg.augment.ops and not cfg.augment.mlm_model:
        raise ConfigError("the mlm op needs a masked language model with its MLM head", path=source,
                          key="augment.mlm_model",
                          fix="set augment.mlm_model to a hub id or folder (e.g. bert-base-uncased, or a "
                              "domain-pretrained model folder), or drop mlm.")


def _validate_robust(cfg: RunConfig, source: Path | None) -> None:
    """Names of PEFT methods, objectives and adversarial methods, and class-weight values."""
    from domainfit.models.peft import PEFT_METHODS
    from domainfit.objectives import OBJECTIVES
    from domainfit.objectives.adversarial import ADVERSARIAL

    reg = cfg.regularization
    for registry, value, key in ((PEFT_METHODS, cfg.peft.method, "peft.method"), (OBJECTIVES, reg.objective, "regularization.objective"),
                                 (ADVERSARIAL, reg.adversarial, "regularization.adversarial")):
        if value != "none" or key == "regularization.objective":
            try:
                component = registry.get(value, key=key)
            except ConfigError as e:
                raise ConfigError(e.what, path=source, key=key, fix=e.fix) from e
            if key == "regularization.objective" and "base" in inspect.signature(component).parameters:
                raise ConfigError(f"{value!r} wraps a task loss and cannot be one", path=source, key=key,
                                  fix="set regularization.objective to cross-entropy or focal (R-Drop: regularization.rdrop_alpha).")
    if isinstance(reg.class_weights, str) and reg.class_weights not in ("none", "balanced"):
        raise ConfigError(f"invalid value {reg.class_weights!r}", path=source, key="regularization.class_weights",
                          fix="use none, balanced, or a mapping {label: weight}.")
    if isinstance(reg.class_weights, dict):
        for label, weight in reg.class_weights.items():
            if weight <= 0:
                raise ConfigError(f"weight {weight} for label {label!r} must be > 0", path=source,
                                  key=f"regularization.class_weights.{label}", fix="give a positive weight.")


def _resolve_paths(data: DataConfig, base: Path) -> None:
    """Paths that don't exist relative to the working directory are tried relative to the config file."""
    for name in ("train", "validation", "test"):
        _resolve_path(data, name, base)


def _resolve_path(section: Any, name: str, base: Path) -> None:
    value = getattr(section, name)
    if value and not Path(value).is_absolute() and not Path(value).exists() and (base / value).exists():
        setattr(section, name, str(base / value))


def to_dict(cfg: Any) -> dict:
    """The config as plain nested dicts (for saving as YAML/JSON)."""
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def describe_fields(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every field: the reference table for docs and `--help`."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            rows += describe_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{prefix}{f.name}", repr(default), f.metadata["help"]))
    return rows


# --------------------------------------------------------------------------------------------------------
# Joint objective checks, and the config of `domainfit pretrain` (its own top-level schema)


def _validate_joint(joint: JointConfig, source: Path | None) -> None:
    if not joint.enabled:
        return
    if not joint.corpus and not joint.use_task_texts:
        raise ConfigError("the joint MLM objective has no text: give joint.corpus or set joint.use_task_texts: true",
                          path=source, key="joint.corpus", fix="set joint.corpus: path/to/domain_texts.txt")
    _validate_masking(joint.masking, source, prefix="joint.masking")


def _validate_masking(masking: MaskingConfig, source: Path | None, *, prefix: str) -> None:
    if masking.strategy == "knowledge" and not masking.lexicon:
        raise ConfigError("knowledge-guided masking needs a domain lexicon", path=source, key=f"{prefix}.lexicon",
                          fix="set it to a term list (one per line) or a TSV of head<TAB>relation<TAB>tail triples.")
    if masking.lexicon and masking.strategy != "knowledge":
        raise ConfigError(f"a lexicon is only used by strategy 'knowledge' (strategy is {masking.strategy!r})",
                          path=source, key=f"{prefix}.strategy", fix="set strategy: knowledge, or remove the lexicon.")


@dataclass
class CorpusConfig:
    train: str = _f("", "Unlabelled text: a file or a folder of files (text: one document or sentence per line; JSONL; CSV/TSV with a header; JSON array).")
    validation: str | None = _f(None, "Held-out text for perplexity; if absent, validation_size texts are held out of the training corpus.")
    format: str = _f("auto", "File format: auto (by extension: .txt/.jsonl/.csv/.tsv/.json), text, jsonl, csv, tsv, json.",
                     choices=("auto", "text", "jsonl", "csv", "tsv", "json"))
    text_column: str = _f("text", "Column or JSON key holding the text (CSV/TSV/JSONL/JSON).")
    encoding: str = _f("utf-8", "Text encoding of the corpus files.")
    validation_size: int = _f(500, "Texts held out for perplexity (from the validation file, or taken out of the training corpus).", min=1)
    validation_stride: int = _f(20, "Without a validation file, every N-th text from the start of the corpus is held out (until validation_size).", min=1)
    shuffle_buffer: int = _f(1000, "Texts read ahead and shuffled together (block shuffle, deterministic in seed and epoch); memory stays flat.", min=1)
    group_by_length: bool = _f(True, "Within the shuffle buffer, batch texts of similar length together to cut padding.")


@dataclass
class PretrainTrainConfig:
    objective: str = _f("auto", "mlm (encoders, AutoModelForMaskedLM), clm (decoders, AutoModelForCausalLM), or auto (from the model's config).",
                        choices=("auto", "mlm", "clm"))
    max_steps: int | None = _f(None, "Optimizer steps to train (overrides epochs).", min=1)
    epochs: int = _f(1, "Passes over the corpus stream (when max_steps is null).", min=1)
    batch_size: int = _f(32, "Texts per batch (before accumulation).", min=1)
    eval_batch_size: int = _f(64, "Texts per batch when measuring perplexity.", min=1)
    learning_rate: float = _f(5e-5, "Peak AdamW learning rate.", min_exclusive=0.0, max=1.0)
    weight_decay: float = _f(0.01, "AdamW decoupled weight decay (not on biases and LayerNorm).", min=0.0, max=1.0)
    warmup_ratio: float = _f(0.06, "Fraction of steps with linear learning-rate warmup.", min=0.0, max=0.5)
    max_grad_norm: float | None = _f(1.0, "Clip the gradient norm to this value (null to disable).", min_exclusive=0.0)
    grad_accum_steps: int = _f(1, "Accumulate gradients over this many batches per optimizer step.", min=1)
    head_warmup_steps: int = _f(0, "If the checkpoint has no MLM head (its weights are new), first train only the head for N steps, before 'before' perplexity is measured.", min=0)
    seed: int = _f(42, "Seed for masking, shuffling, dropout and any new head weights.")
    eval_every: int | None = _f(None, "Measure held-out perplexity every N optimizer steps (null: only before and after).", min=1)
    save_every: int | None = _f(200, "Keep a resumable checkpoint every N optimizer steps (null: only at evaluations).", min=1)
    log_every: int = _f(10, "Write the training loss to TensorBoard every N optimizer steps.", min=1)
    precision: str = _f("auto", "Compute precision: auto, fp32, bf16, fp16 (as in train.precision).", choices=("auto", "fp32", "bf16", "fp16"))
    num_threads: int | None = _f(None, "CPU threads for torch (null: torch's default).", min=1)


@dataclass
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The general model to adapt."})
    corpus: CorpusConfig = field(default_factory=CorpusConfig, metadata={"help": "The domain's unlabelled text."})
    masking: MaskingConfig = field(default_factory=MaskingConfig, metadata={"help": "How MLM inputs are masked (mlm only)."})
    train: PretrainTrainConfig = field(default_factory=PretrainTrainConfig, metadata={"help": "Optimisation."})
    output: OutputConfig = field(default_factory=OutputConfig, metadata={"help": "Where the adapted model and its report go."})


def load_pretrain_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """Read the config of ``domainfit pretrain`` (same rules as :func:`load_config`: strict keys, overrides)."""
    cfg = _build(PretrainConfig, _read_raw(path, overrides), prefix="", source=path)
    if not cfg.corpus.train:
        raise ConfigError("no corpus given", path=path, key="corpus.train", fix="set corpus.train: path/to/texts.txt (or a folder)")
    _validate_masking(cfg.masking, path, prefix="masking")
    if path is not None:
        base = Path(path).parent
        for section, name in ((cfg.corpus, "train"), (cfg.corpus, "validation"), (cfg.masking, "lexicon")):
            value = getattr(section, name)
            if value and not Path(value).is_absolute() and not Path(value).exists() and (base / value).exists():
                setattr(section, name, str(base / value))
    return cfg
