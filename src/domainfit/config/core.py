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
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from domainfit.config.fields import INT_MAX, SEED_MAX, _f
from domainfit.config.sections import (
    MOVED_KEYS,
    TASK_DEFAULTS,
    AugmentConfig,
    EvaluationConfig,
    GenerationConfig,
    ImageConfig,
    JointConfig,
    MultiLabelConfig,
    NerConfig,
    PeftConfig,
    RegularizationConfig,
    _validate_image,
    _validate_joint,
    _validate_long_text_and_augment,
    _validate_robust,
    _validate_token_classification,
)
from domainfit.config.yaml_files import parse_yaml, read_yaml_file
from domainfit.errors import ConfigError, short_repr


@dataclass
class ModelConfig:
    name: str = _f("minilm", "Hugging Face model id, local folder, or a built-in short name (see `domainfit models`).")
    max_length: int = _f(128, "Longest input in tokens; longer texts are truncated.", min=8)
    text_prefix: str = _f("", "Text prepended to every input (e5 models expect 'query: ').")
    dropout: float | None = _f(
        None, "Override the model's hidden dropout probability (None keeps the model's).", min=0.0, max=0.9
    )
    attn_implementation: str = _f(
        "auto",
        "Attention kernel: 'auto' (SDPA on GPU or without attention dropout, eager "
        "on CPU with it: measured faster there), 'sdpa' (PyTorch fused attention) or 'eager'.",
        choices=("auto", "sdpa", "eager"),
    )
    freeze_embeddings: bool = _f(
        False,
        "Keep the input word embeddings fixed (position and type embeddings still train). "
        "For large-vocabulary models (multilingual-e5-small: 96M of its 118M weights are the "
        "250k-word embedding) this removes most of the optimizer's memory and work per step.",
    )
    long_text: str = _f(
        "truncate",
        "Texts longer than max_length: 'truncate' (keep the start) or 'windows' (overlapping windows, logits "
        "aggregated per document; see docs/long_documents.md).",
        choices=("truncate", "windows"),
    )
    window_stride: int | None = _f(
        None, "With long_text=windows: tokens from one window's start to the next (null: half a window).", min=1
    )
    window_aggregation: str = _f(
        "mean",
        "With long_text=windows: document logits = 'mean' or 'max' of its windows' logits.",
        choices=("mean", "max"),
    )


@dataclass
class DataConfig:
    train: str = _f("", "Training file (CSV, TSV, JSONL, JSON array, Parquet or delimited text).")
    validation: str | None = _f(None, "Validation file; if absent it is split off the training file.")
    test: str | None = _f(None, "Test file; if absent (and validation absent) it is split off the training file.")
    format: str = _f(
        "auto",
        "File format: auto (by extension), csv, tsv, jsonl, json, parquet, delimited.",
        choices=("auto", "csv", "tsv", "jsonl", "json", "parquet", "delimited"),
    )
    # int before str: YAML's `text_column: 0` stays the column number 0, not the column name '0'.
    text_column: int | str = _f("text", "Column (or JSON key) of the text; a 0-based number without header.")
    label_column: int | str = _f("label", "Column or JSON key of the label; a 0-based number without header.")
    separator: str | None = _f(
        None, "Field separator: overrides the CSV/TSV delimiter; required for delimited text ('@' for PhraseBank)."
    )
    encoding: str = _f("utf-8", "Text encoding of the files (PhraseBank is latin-1).")
    header: bool = _f(True, "Whether CSV/TSV files start with a header row.")
    validation_fraction: float = _f(
        0.1,
        "Share of the deduplicated data split off for validation when no validation file is given.",
        min=0.0,
        max=0.5,
    )
    test_fraction: float = _f(
        0.1, "Share split off for test when neither validation nor test file is given.", min=0.0, max=0.5
    )
    stratify: bool = _f(True, "Keep class proportions equal across split-off sets.")
    split_seed: int = _f(
        42, "Seed for splitting (kept apart from the training seed so seeds share one split).", max=SEED_MAX
    )
    max_train_samples: int | None = _f(
        None, "Use only the first N training examples (after dedup and split): for smoke tests.", min=1
    )
    max_train_per_class: int | None = _f(
        None,
        "Low-resource setting: keep at most N training examples per label, drawn with data.sample_seed "
        "(validation/test untouched).",
        min=1,
    )
    train_fraction: float | None = _f(
        None,
        "Low-resource setting that keeps the class imbalance: keep this fraction of every label's training examples "
        "(at least one each), drawn with data.sample_seed (validation/test untouched).",
        min_exclusive=0.0,
        max=1.0,
    )
    sample_seed: int = _f(
        0, "Seed for drawing the data.max_train_per_class or data.train_fraction examples.", max=SEED_MAX
    )
    skip_empty: bool = _f(
        False,
        "Leave out empty or whitespace-only texts (counted in the log and run.json) "
        "instead of stopping with an error; text and multi-label classification.",
    )
    conflicting_labels: str = _f(
        "first",
        "A text repeated with different labels: keep the 'first' copy, the "
        "'majority' label (ties: first), 'drop' all copies, or 'error'. Counted in "
        "run.json.",
        choices=("first", "majority", "drop", "error"),
    )


@dataclass
class TrainConfig:
    epochs: int = _f(3, "Passes over the training data.", min=1)
    batch_size: int = _f(32, "Examples per optimizer step per device (before accumulation).", min=1)
    eval_batch_size: int = _f(128, "Examples per batch during evaluation.", min=1)
    eval_batch_tokens: int | None = _f(
        4096,
        "Evaluation batches also stop at this many padded tokens (rows x longest length): long texts are evaluated in "
        "fewer rows, which bounds evaluation memory (null: eval_batch_size rows whatever their length).",
        min=1,
    )
    learning_rate: float = _f(5e-5, "Peak AdamW learning rate.", min_exclusive=0.0, max=1.0)
    weight_decay: float = _f(
        0.01, "AdamW decoupled weight decay (not applied to biases and LayerNorm).", min=0.0, max=1.0
    )
    warmup_ratio: float = _f(0.06, "Fraction of all steps with linear learning-rate warmup.", min=0.0, max=0.5)
    max_grad_norm: float | None = _f(1.0, "Clip the gradient norm to this value (null to disable).", min_exclusive=0.0)
    grad_accum_steps: int = _f(1, "Accumulate gradients over this many batches per optimizer step.", min=1)
    seed: int = _f(42, "Seed for weights of the new head, shuffling and dropout.", max=SEED_MAX)
    eval_every: int | Literal["epoch"] = _f("epoch", "Evaluate every N optimizer steps, or 'epoch'.", min=1)
    best_metric: str = _f(
        "f1_macro", "Validation metric that picks the best checkpoint (loss is minimised, others maximised)."
    )
    early_stopping_patience: int | None = _f(
        None, "Stop after this many evaluations without improvement (null: never).", min=1
    )
    pad_to_multiple_of: int | None = _f(
        8,
        "Round each batch's padded length up to a multiple of this: fewer distinct batch shapes, so CPU kernels and "
        "the allocator reuse what they built (with balance_batch_tokens: about 30 shapes an epoch on PhraseBank "
        "instead of about 140; faster and less memory, BENCHMARKS.md). null: no rounding.",
        min=1,
    )
    micro_batch_tokens: int | None = _f(
        None,
        "Split a batch whose padded size (rows x length) exceeds this many tokens into micro-batches, one "
        "forward/backward each, with the whole batch's gradient: bounds activation memory on long batches (null: "
        "never split).",
        min=16,
    )
    mmap_threshold_mb: int | None = _f(
        1,
        "Linux, glibc malloc only (DOMAINFIT_ALLOCATOR=system; the default mimalloc ignores it): blocks of at least "
        "this many MB (activations, gradients) are mapped from the OS and handed back when freed, not kept in the "
        "heap after their batch shape has passed, which lowers peak memory (measured in BENCHMARKS.md). null: glibc's "
        "own, rising threshold.",
        min=1,
    )
    recompute_min_length: int | Literal["auto"] | None = _f(
        "auto",
        "Activation checkpointing for batches padded to at least this many tokens: their activations are recomputed "
        "in backward instead of kept (the same values), which lowers the peak that the longest batches set, for one "
        "more forward pass on those batches only (measured in BENCHMARKS.md). 'auto': 64 on CPUs, never on GPUs. "
        "null: never.",
        min=8,
    )
    release_memory_every: int | None = _f(
        None,
        "Every N optimizer steps, return memory freed by training to the OS (mimalloc mi_collect, or glibc "
        "malloc_trim; Linux CPU): bounds the resident size as batch shapes change, but each trim makes the next steps "
        "fault pages back in, which slows them (measured in BENCHMARKS.md). null: never.",
        min=1,
    )
    group_by_length: bool = _f(True, "Batch texts of similar length together (shuffled in chunks) to cut padding.")
    balance_batch_tokens: bool = _f(
        True,
        "With group_by_length: size batches by padded tokens, not rows. Same batches per epoch and mean batch size, "
        "but short texts go in larger batches and long ones in smaller, so no batch is much over the mean token "
        "count: lower peak memory. Each example's loss keeps the weight 1/batch_size, so the expected gradient is "
        "that of fixed-size batches. false: batch_size rows each.",
    )
    precision: str = _f(
        "auto",
        "Compute precision: auto (bf16/fp16 autocast on GPUs; on CPUs bf16 only where a quick matmul test shows it "
        "faster), fp32, bf16, fp16.",
        choices=("auto", "fp32", "bf16", "fp16"),
    )
    num_threads: int | None = _f(None, "CPU threads for torch (null: one per physical core).", min=1)
    log_every: int = _f(10, "Write training loss to TensorBoard and the progress bar every N optimizer steps.", min=1)
    save_last: bool = _f(True, "Keep a resumable checkpoint at the end of each epoch (needed for --resume).")
    save_every: int | None = _f(
        None, "Also keep a resumable checkpoint every N optimizer steps (null: only at evaluations).", min=1
    )
    embedding_rows: str = _f(
        "seen",
        "Word-embedding rows to train: 'seen' trains only the rows of token ids in the training data (every other row "
        "gets a zero gradient anyway, so the result is dense training's to rounding, with less memory and a shorter "
        "step, measured in BENCHMARKS.md; skipped with augmentation, the joint MLM objective and tied output "
        "embeddings); 'all' builds the dense gradient of the whole matrix.",
        choices=("seen", "all"),
    )
    layer_decay: float = _f(
        1.0,
        "Layer-wise learning-rate decay: layer at depth d from the top trains at lr * layer_decay^d, embeddings "
        "lowest, head at full lr (1.0: off).",
        min_exclusive=0.0,
        max=1.0,
    )


@dataclass
class OutputConfig:
    dir: str = _f("runs/domainfit", "Output folder: model/, checkpoints/, tensorboard/, metrics.json, report.md.")
    overwrite: bool = _f(False, "Allow writing into an output folder that already holds a finished run.")


@dataclass
class RunConfig:
    task: str = _f("text-classification", "Task to train (see `domainfit tasks`).")
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The pretrained model to start from."})
    data: DataConfig = field(
        default_factory=DataConfig, metadata={"help": "Where the labelled data is and how to read it."}
    )
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Optimisation and selection."})
    output: OutputConfig = field(default_factory=OutputConfig, metadata={"help": "Where results go."})
    multi_label: MultiLabelConfig = field(
        default_factory=MultiLabelConfig,
        metadata={"help": "Multi-label classification (task: multi-label-classification)."},
    )
    generation: GenerationConfig = field(
        default_factory=GenerationConfig,
        metadata={"help": "Generation task: prompts, decoding, saving (LoRA: the peft section)."},
    )
    ner: NerConfig = field(
        default_factory=NerConfig,
        metadata={"help": "Token classification (task: token-classification): file format, windows."},
    )
    image: ImageConfig = field(
        default_factory=ImageConfig, metadata={"help": "Image tasks: class layout, size, augmentation."}
    )
    joint: JointConfig = field(
        default_factory=JointConfig,
        metadata={"help": "Optional masked-LM loss on domain text alongside the task (joint objective)."},
    )
    augment: AugmentConfig = field(
        default_factory=AugmentConfig, metadata={"help": "On-the-fly data augmentation of training batches."}
    )
    peft: PeftConfig = field(
        default_factory=PeftConfig, metadata={"help": "Parameter-efficient fine-tuning (LoRA, IA3, Houlsby adapters)."}
    )
    regularization: RegularizationConfig = field(
        default_factory=RegularizationConfig,
        metadata={"help": "Losses and remedies for small, imbalanced, noisy data."},
    )
    evaluation: EvaluationConfig = field(
        default_factory=EvaluationConfig,
        metadata={"help": "Single-label classification: calibration (temperature), abstention, group slices."},
    )


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
    raw = _with_task_defaults(_read_raw(path, overrides))
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
            raise ConfigError(
                "config file not found",
                path=path,
                fix="check the path; the shipped examples are in src/domainfit/configs/.",
            )
        loaded = read_yaml_file(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"expected a mapping of sections at the top level, found {type(loaded).__name__}", path=path
            )
        raw = loaded
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"override {item!r} is not of the form dotted.key=value", fix="e.g. train.learning_rate=3e-5"
            )
        _set_dotted(raw, key.strip(), parse_yaml(value, key=key.strip()) if value.strip() else None)
    return raw


def _with_task_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with the task's own defaults (:data:`TASK_DEFAULTS`) under what the file and overrides set."""
    task = raw.get("task")
    if not isinstance(task, str):  # absent (the default task has none), or a bad value that _build reports
        return raw
    for section, defaults in TASK_DEFAULTS.get(task, {}).items():
        given = raw.get(section)
        if given is None:
            raw[section] = dict(defaults)
        elif isinstance(given, dict):  # anything else is refused by _build, naming the section
            raw[section] = {**defaults, **given}
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
        raise ConfigError(
            f"expected a section (mapping), found {short_repr(raw)}", path=source, key=prefix.rstrip(".") or None
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields and dotted in MOVED_KEYS:
            new_key, fix = MOVED_KEYS[dotted]
            raise ConfigError(f"this key has moved to {new_key!r}", path=source, key=dotted, fix=fix)
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
        except (TypeError, ValueError, OverflowError) as e:  # OverflowError: int(.inf), float(10**400)
            errors.append(str(e))
            continue
        _check_range(coerced, f, key, source)
        return coerced
    raise ConfigError(f"invalid value {short_repr(value)}", path=source, key=key, fix=_expect(options, f))


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
            f"invalid value {short_repr(value)}.{f' Did you mean {near[0]!r}?' if near else ''}",
            path=source,
            key=key,
            fix=f"use one of: {', '.join(m['choices'])}.",
        )
    _check_finite(value, f, key, source)
    if isinstance(value, int) and not isinstance(value, bool):
        # every count, size, step, index and seed here is >= 0 and fits a C int (what torch and the
        # tokenizers take), unless the field says otherwise (seeds: numpy's 0..2**32-1)
        low, high = m.get("min", 0), m.get("max", INT_MAX)
        fix = f"give a whole number from {low} to {high}. ({m['help']})"
        if "min" not in m and "min_exclusive" not in m and value < 0:
            raise ConfigError(f"{value} is too small: must be >= 0", path=source, key=key, fix=fix)
        if "max" not in m and value > INT_MAX:
            raise ConfigError(f"{value} is too large: must be <= {INT_MAX}", path=source, key=key, fix=fix)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "min" in m and value < m["min"]:
            raise ConfigError(
                f"{value} is too small: must be >= {m['min']}", path=source, key=key, fix=f.metadata["help"]
            )
        if "min_exclusive" in m and value <= m["min_exclusive"]:
            raise ConfigError(
                f"{value} is too small: must be > {m['min_exclusive']}", path=source, key=key, fix=f.metadata["help"]
            )
        if "max" in m and value > m["max"]:
            raise ConfigError(
                f"{value} is too large: must be <= {m['max']}", path=source, key=key, fix=f.metadata["help"]
            )


def _check_finite(value: Any, f: dataclasses.Field, key: str, source: Path | None) -> None:
    """Refuse NaN and infinity in a float field, or in the numbers of a list or mapping field."""
    values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
    for number in values:
        if isinstance(number, float) and not math.isfinite(number):
            raise ConfigError(
                f"{number} is not a finite number",
                path=source,
                key=key,
                fix=f"give a finite number. ({f.metadata['help']})",
            )


def _expect(options: tuple, f: dataclasses.Field) -> str:
    names = []
    for opt in options:
        if typing.get_origin(opt) is Literal:
            names += [repr(a) for a in typing.get_args(opt)]
        elif opt is type(None):
            names.append("null")
        else:
            names.append(
                {
                    int: "an integer",
                    float: "a number",
                    str: "a string",
                    bool: "true or false",
                    list[str]: "a list of strings, e.g. [a, b]",
                }.get(opt, str(opt))
            )
    return f"expected {' or '.join(names)}. ({f.metadata['help']})"


def validate(cfg: RunConfig, source: Path | None = None) -> None:
    """Cross-field checks that need nothing but the config; each message names the key to change.

    What needs the registries above this layer (task names, metric names, objectives, augmenters, PEFT
    methods) is checked by the task's contract: :meth:`domainfit.tasks.Task.check_config`.
    """
    if not cfg.data.train:
        raise ConfigError(
            "no training file given", path=source, key="data.train", fix="set data.train: path/to/train.csv"
        )
    if cfg.data.format == "delimited" and not cfg.data.separator:
        raise ConfigError(
            "delimited text needs a separator",
            path=source,
            key="data.separator",
            fix="set data.separator, e.g. '@' for PhraseBank's sentence@label lines.",
        )
    if cfg.data.validation is None and cfg.data.validation_fraction == 0:
        raise ConfigError(
            "no validation data: give data.validation or a data.validation_fraction > 0",
            path=source,
            key="data.validation_fraction",
            fix="set data.validation_fraction: 0.1",
        )
    if not cfg.multi_label.label_separator:
        raise ConfigError(
            "the label separator is empty",
            path=source,
            key="multi_label.label_separator",
            fix="set it to the character between labels, e.g. ';' or '|'.",
        )
    if (
        cfg.task == "multi-label-classification"
        and cfg.data.format == "delimited"
        and cfg.data.separator == cfg.multi_label.label_separator
    ):
        raise ConfigError(
            f"data.separator and multi_label.label_separator are both {cfg.data.separator!r}, so a "
            "`text<sep>labels` line cannot be split",
            path=source,
            key="multi_label.label_separator",
            fix="use different characters, e.g. data.separator: '\\t' and multi_label.label_separator: ';'.",
        )
    _validate_image(cfg.image, source)
    _validate_joint(cfg.joint, source)
    _validate_long_text_and_augment(cfg, source)
    _validate_robust(cfg, source)
    if cfg.task == "token-classification":
        _validate_token_classification(cfg, source)


def _resolve_paths(data: DataConfig, base: Path) -> None:
    """Paths that don't exist relative to the working directory are tried relative to the config file."""
    for name in ("train", "validation", "test"):
        _resolve_path(data, name, base)


def _resolve_path(section: Any, name: str, base: Path) -> None:
    value = getattr(section, name)
    if value and not Path(value).is_absolute() and not _exists(Path(value)) and _exists(base / value):
        setattr(section, name, str(base / value))


def _exists(path: Path) -> bool:
    """``path.exists()``, False for a name the OS cannot even look up (too long, a NUL byte): the reader
    of the file then says what is wrong with it."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


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
