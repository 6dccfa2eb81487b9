"""Houlsby bottleneck adapters (Houlsby et al. 2019, *Parameter-Efficient Transfer Learning for NLP*).

    domainfit train my.yaml peft.method=houlsby peft.adapter_size=64

Two small bottleneck modules per transformer layer (down-projection, GELU, up-projection, residual): one
after the attention output projection, one after the feed-forward output, each before the layer's
residual add and LayerNorm. Only the adapters, the LayerNorms and the classification head train; the
rest of the encoder is frozen. The up-projection starts at zero, so at initialisation the model computes
exactly what the base model does.

peft 0.21 has no bottleneck-adapter method (its tuners are LoRA-style weight deltas, prompts and
scalings), so this module inserts them itself: each output block's dropout is replaced by "dropout, then
adapter" (:class:`AdapterAfterDropout`), which is exactly where Houlsby et al. put it, keeps every base
weight name, and puts the adapters in ``state_dict`` and checkpoints. BERT-family encoders (BERT, RoBERTa, XLM-R,
ELECTRA, MiniLM): their layer outputs are ``...layer.N.attention.output`` and ``...layer.N.output``, each with
``dense``, ``dropout`` and ``LayerNorm``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from domainfit.errors import ModelError

_OUTPUT_BLOCK = re.compile(r"layer\.\d+\.(attention\.output|output)$")
ADAPTER_ATTR = "adapter"


class BottleneckAdapter(nn.Module):
    """``x + up(gelu(down(x)))``; ``up`` is zero-initialised so the adapter starts as the identity.

    Args:
        hidden_size: width of the transformer.
        adapter_size: bottleneck width.
    """

    def __init__(self, hidden_size: int, adapter_size: int) -> None:
        super().__init__()
        self.down = nn.Linear(hidden_size, adapter_size)
        self.up = nn.Linear(adapter_size, hidden_size)
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(nn.functional.gelu(self.down(x)))  # (batch, seq, hidden)


class AdapterAfterDropout(nn.Module):
    """Replaces an output block's ``dropout``: dropout, then the adapter. Dropout has no weights, so every
    base weight keeps its name (checkpoints of the base model load unchanged), and unlike a forward hook
    this survives ``copy.deepcopy`` and ``.to(dtype)`` and traces into ONNX."""

    def __init__(self, dropout: nn.Module, adapter: BottleneckAdapter) -> None:
        super().__init__()
        self.dropout = dropout
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.dropout(x))


def _output_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    blocks = [
        (name, m)
        for name, m in model.named_modules()
        if _OUTPUT_BLOCK.search(name) and all(hasattr(m, a) for a in ("dense", "dropout", "LayerNorm"))
    ]
    if not blocks:
        raise ModelError(
            f"Houlsby adapters need a BERT-family encoder; {type(model).__name__} has no "
            "'layer.N.attention.output' / 'layer.N.output' blocks",
            key="peft.method",
            fix="use peft.method: lora (any architecture) with this model.",
        )
    return blocks


def add_houlsby_adapters(model: nn.Module, adapter_size: int) -> nn.Module:
    """Insert adapters into every layer of ``model`` (in place). Returns ``model``."""
    for _, block in _output_blocks(model):
        adapter = BottleneckAdapter(block.dense.out_features, adapter_size)
        adapter.to(device=block.dense.weight.device, dtype=block.dense.weight.dtype)
        # the block computes LayerNorm(dropout(dense(h)) + input): the adapter goes right before the residual add
        block.dropout = AdapterAfterDropout(block.dropout, adapter)
    return model


def freeze_for_adapters(model: nn.Module) -> None:
    """Train only adapters, LayerNorms and the task head (everything outside the base encoder)."""
    prefix = getattr(model, "base_model_prefix", "")
    encoder = getattr(model, prefix, None) if prefix else None
    for name, p in model.named_parameters():
        in_encoder = encoder is not None and name.startswith(f"{prefix}.")
        p.requires_grad = not in_encoder or f".{ADAPTER_ATTR}." in name or "LayerNorm" in name or "layer_norm" in name


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained weights only (adapters, LayerNorms, head): what adapter mode saves."""
    return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}
