"""Focal loss (Lin et al. 2017, *Focal Loss for Dense Object Detection*): cross-entropy that down-weights
examples the model already gets right, so rare and hard classes weigh more.

    domainfit train my.yaml regularization.objective=focal regularization.focal_gamma=2

``FL = -alpha_y * (1 - p_y)^gamma * log p_y``; with ``gamma = 0`` and no weights it is plain cross-entropy.
The per-class ``alpha`` is ``regularization.class_weights`` (none, balanced, or per label).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from domainfit.objectives.base import OBJECTIVES


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    gamma: float,
    alpha: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean focal loss.

    Args:
        logits: (batch, num_labels).
        labels: (batch,) class ids.
        gamma: focusing parameter (0: cross-entropy).
        alpha: optional per-class weights, (num_labels,); the mean is weighted like ``F.cross_entropy``'s.
        label_smoothing: smoothing of the target distribution.
    """
    log_p = F.log_softmax(logits.float(), dim=-1)  # (batch, num_labels)
    num_labels = logits.shape[-1]
    target = F.one_hot(labels, num_labels).float()  # (batch, num_labels)
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / num_labels
    p_true = log_p.gather(1, labels[:, None]).squeeze(1).exp()  # (batch,)
    modulator = (1 - p_true).clamp(min=0) ** gamma  # (batch,)
    per_example = -(target * log_p).sum(-1) * modulator  # (batch,)
    if alpha is None:
        return per_example.mean()
    weight = alpha[labels]  # (batch,)
    return (per_example * weight).sum() / weight.sum()


@OBJECTIVES.register("focal")
class FocalLossObjective(nn.Module):
    """Focal loss of the model's logits against ``batch["labels"]``.

    Args:
        gamma: focusing parameter.
        class_weights: per-class alpha, shape (num_labels,), or None.
        label_smoothing: smoothing of the target distribution.
    """

    def __init__(
        self, gamma: float = 2.0, class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["labels"]
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits  # (batch, num_labels)
        loss = focal_loss(
            logits, labels, gamma=self.gamma, alpha=self.class_weights, label_smoothing=self.label_smoothing
        )
        return {"loss": loss, "task_loss": loss.detach(), "logits": logits.detach()}
