"""The objective interface.

An objective takes the model and a batch and returns a dict with ``loss`` (what is back-propagated),
``logits`` (for metrics) and any named parts (``task_loss``, ``mlm_loss``, ...) that are logged to
TensorBoard. A joint objective is then a weighted sum of such modules that keeps each part visible
(the pattern of timm's ``TrainingTask``), and the training loop never changes when one is added.

A regulariser that wraps the task objective (R-Drop, adversarial training) registers itself in
:data:`WRAPPERS` with the part of the ``regularization`` section it reads (a dataclass of the config layer)
and its factory; :func:`domainfit.objectives.compose.build_objective` composes the enabled ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

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


class ObjectiveWrapper(NamedTuple):
    """A registered regulariser that wraps an objective.

    Attributes:
        config: its part of ``regularization`` (a dataclass whose fields ``RegularizationConfig`` inherits);
            ``enabled`` and ``create`` receive an instance holding only these fields.
        enabled: whether the settings switch it on (e.g. ``rdrop_alpha > 0``).
        create: ``create(base, settings)`` wraps the objective ``base``.
    """

    config: type
    enabled: Callable[[Any], bool]
    create: Callable[[nn.Module, Any], nn.Module]


WRAPPERS: Registry[ObjectiveWrapper] = Registry("objective wrapper")
