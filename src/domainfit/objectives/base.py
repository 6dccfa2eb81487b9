"""The objective interface.

An objective takes the model and a batch and returns a dict with ``loss`` (what is back-propagated),
``logits`` (for metrics) and any named parts (``task_loss``, ``mlm_loss``, ...) that are logged to
TensorBoard. A joint objective is then a weighted sum of such modules that keeps each part visible
(the pattern of timm's ``TrainingTask``), and the training loop never changes when one is added.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from domainfit.registry import Registry


class Objective(Protocol):
    """What the training loop calls once per batch."""

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


OBJECTIVES: Registry = Registry("objective")


def create_objective(name: str, **kwargs) -> nn.Module:
    """Build a registered objective by name."""
    return OBJECTIVES.get(name, key="objective")(**kwargs)
