"""AdamW with decoupled weight decay (none on biases and norms) and a linear warmup/decay schedule."""

from __future__ import annotations

import torch
from torch import nn

from domainfit.config import TrainConfig


def create_optimizer(model: nn.Module, cfg: TrainConfig, extra: nn.Module | None = None) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019) over trainable parameters; fused kernel where torch has one.

    ``extra`` holds further trainable weights outside the model (an objective's MLM head).
    """
    decay, no_decay = [], []
    named = list(model.named_parameters()) + (list(extra.named_parameters()) if extra is not None else [])
    for name, p in named:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=True)
    except (RuntimeError, TypeError):  # older torch or a device without a fused kernel
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, foreach=True)


def create_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Linear warmup over ``warmup_ratio`` of the steps, then linear decay to zero."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
