"""The config of ``domainfit pretrain``: model, corpus, masking, optimisation, output (same loading rules as train)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from domainfit.config.core import ModelConfig, OutputConfig, _build, _read_raw, _resolve_path
from domainfit.config.fields import SEED_MAX, _f
from domainfit.config.sections import MaskingConfig, _validate_masking
from domainfit.errors import ConfigError


@dataclass
class CorpusConfig:
    train: str = _f(
        "",
        "Unlabelled text: a file or a folder of files (text: one document or sentence per line; JSONL; CSV/TSV with a "
        "header; JSON array).",
    )
    validation: str | None = _f(
        None, "Held-out text for perplexity; if absent, validation_size texts are held out of the training corpus."
    )
    format: str = _f(
        "auto",
        "File format: auto (by extension: .txt/.jsonl/.ndjson/.csv/.tsv/.json), text, jsonl, csv, tsv, json.",
        choices=("auto", "text", "jsonl", "csv", "tsv", "json"),
    )
    text_column: str = _f("text", "Column or JSON key holding the text (CSV/TSV/JSONL/JSON).")
    encoding: str = _f("utf-8", "Text encoding of the corpus files.")
    validation_size: int = _f(
        500, "Texts held out for perplexity (from the validation file, or taken out of the training corpus).", min=1
    )
    validation_stride: int = _f(
        20,
        "Without a validation file, every N-th text from the start of the corpus is held out (until validation_size).",
        min=1,
    )
    shuffle_buffer: int = _f(
        1000,
        "Texts read ahead and shuffled together (block shuffle, deterministic in seed and epoch); memory stays flat.",
        min=1,
    )
    group_by_length: bool = _f(
        True, "Within the shuffle buffer, batch texts of similar length together to cut padding."
    )


@dataclass
class PretrainTrainConfig:
    objective: str = _f(
        "auto",
        "mlm (encoders, AutoModelForMaskedLM), clm (decoders, AutoModelForCausalLM), or auto (from the model's "
        "config).",
        choices=("auto", "mlm", "clm"),
    )
    max_steps: int | None = _f(None, "Optimizer steps to train (overrides epochs).", min=1)
    epochs: int = _f(1, "Passes over the corpus stream (when max_steps is null).", min=1)
    batch_size: int = _f(32, "Texts per batch (before accumulation).", min=1)
    eval_batch_size: int = _f(64, "Texts per batch when measuring perplexity.", min=1)
    learning_rate: float = _f(5e-5, "Peak AdamW learning rate.", min_exclusive=0.0, max=1.0)
    weight_decay: float = _f(0.01, "AdamW decoupled weight decay (not on biases and LayerNorm).", min=0.0, max=1.0)
    warmup_ratio: float = _f(0.06, "Fraction of steps with linear learning-rate warmup.", min=0.0, max=0.5)
    max_grad_norm: float | None = _f(1.0, "Clip the gradient norm to this value (null to disable).", min_exclusive=0.0)
    layer_decay: float = _f(
        1.0,
        "Layer-wise learning-rate decay (as train.layer_decay; 1.0: every layer at the same rate).",
        min_exclusive=0.0,
        max=1.0,
    )
    grad_accum_steps: int = _f(1, "Accumulate gradients over this many batches per optimizer step.", min=1)
    head_warmup_steps: int = _f(
        0,
        "If the checkpoint has no MLM head (its weights are new), first train only the head for N steps, before "
        "'before' perplexity is measured.",
        min=0,
    )
    seed: int = _f(42, "Seed for masking, shuffling, dropout and any new head weights.", max=SEED_MAX)
    eval_every: int | None = _f(
        None, "Measure held-out perplexity every N optimizer steps (null: only before and after).", min=1
    )
    save_every: int | None = _f(
        200, "Keep a resumable checkpoint every N optimizer steps (null: only at evaluations).", min=1
    )
    log_every: int = _f(10, "Write the training loss to TensorBoard every N optimizer steps.", min=1)
    precision: str = _f(
        "auto",
        "Compute precision: auto, fp32, bf16, fp16 (as in train.precision).",
        choices=("auto", "fp32", "bf16", "fp16"),
    )
    num_threads: int | None = _f(None, "CPU threads for torch (null: torch's default).", min=1)


@dataclass
class PretrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The general model to adapt."})
    corpus: CorpusConfig = field(default_factory=CorpusConfig, metadata={"help": "The domain's unlabelled text."})
    masking: MaskingConfig = field(
        default_factory=MaskingConfig, metadata={"help": "How MLM inputs are masked (mlm only)."}
    )
    train: PretrainTrainConfig = field(default_factory=PretrainTrainConfig, metadata={"help": "Optimisation."})
    output: OutputConfig = field(
        default_factory=OutputConfig, metadata={"help": "Where the adapted model and its report go."}
    )


def load_pretrain_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    """Read the config of ``domainfit pretrain`` (same rules as :func:`load_config`: strict keys, overrides)."""
    cfg = _build(PretrainConfig, _read_raw(path, overrides), prefix="", source=path)
    if not cfg.corpus.train:
        raise ConfigError(
            "no corpus given", path=path, key="corpus.train", fix="set corpus.train: path/to/texts.txt (or a folder)"
        )
    _validate_masking(cfg.masking, path, prefix="masking")
    if path is not None:
        for section, name in ((cfg.corpus, "train"), (cfg.corpus, "validation"), (cfg.masking, "lexicon")):
            _resolve_path(section, name, Path(path).parent)
    return cfg
