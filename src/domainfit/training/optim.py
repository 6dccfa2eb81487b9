"""AdamW with decoupled weight decay (none on biases and norms) and a linear warmup/decay schedule."""

from __future__ import annotations

import re

import torch
from torch import nn

from domainfit.config import TrainConfig


def create_optimizer(
    model: nn.Module, cfg: TrainConfig, extra: nn.Module | None = None, extra_named: list[tuple[str, nn.Parameter]] = ()
) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter 2019) over trainable parameters; fused kernel where torch has one.

    ``extra`` holds further trainable weights outside the model (an objective's MLM head); ``extra_named``
    more, already named (the compact embedding rows of ``training/embedding_rows.py``).
    """
    decay, no_decay = [], []
    named = list(model.named_parameters()) + (list(extra.named_parameters()) if extra is not None else [])
    named += list(extra_named)
    for name, p in named:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.layer_decay < 1.0:
        groups = layer_decay_groups(named, cfg)
    try:
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, fused=True)
    except (RuntimeError, TypeError):  # older torch or a device without a fused kernel
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, foreach=True)


_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


def layer_depths(names: list[str]) -> dict[str, int]:
    """Depth from the top of every parameter: 0 for the head (and anything above the layers), ``L - i`` for
    transformer layer ``i`` of ``L``, ``L + 1`` for the embeddings (Clark et al. 2020, ELECTRA, appendix)."""
    indices = {name: int(m.group(1)) for name in names if (m := _LAYER_INDEX.search(name))}
    num_layers = max(indices.values(), default=-1) + 1
    depths = {}
    for name in names:
        if name in indices:
            depths[name] = num_layers - indices[name]
        elif "embeddings" in name:
            depths[name] = num_layers + 1
        else:
            depths[name] = 0
    return depths


def layer_decay_groups(named: list[tuple[str, nn.Parameter]], cfg: TrainConfig) -> list[dict]:
    """Parameter groups with ``lr = learning_rate * layer_decay ** depth`` (layer-wise learning-rate decay),
    split by weight decay; ordered from the full-lr head down, so the first group carries the peak lr."""
    trainable = [(name, p) for name, p in named if p.requires_grad]
    depths = layer_depths([name for name, _ in trainable])
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in trainable:
        no_decay = p.ndim < 2 or "norm" in name.lower()
        key = (depths[name], no_decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "weight_decay": 0.0 if no_decay else cfg.weight_decay,
                "lr": cfg.learning_rate * cfg.layer_decay ** depths[name],
                "depth": depths[name],
            }
        groups[key]["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def create_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int, start_step: int = 0):
    """Linear warmup over ``warmup_ratio`` of the steps, then linear decay to zero.

    ``start_step`` starts the schedule part-way through (a federated site's round ``r`` of ``R`` runs steps
    ``r * n`` to ``(r + 1) * n`` of one schedule over ``R * n`` steps, as centralised training would).
    """
    from transformers import get_linear_schedule_with_warmup

    if start_step:  # the scheduler resumes at start_step; it reads each group's base rate from initial_lr
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    warmup = int(cfg.warmup_ratio * total_steps)
    return get_linear_schedule_with_warmup(optimizer, warmup, total_steps, last_epoch=start_step - 1)
