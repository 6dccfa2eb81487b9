"""Cross-entropy on a classification head: the supervised task loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from domainfit.objectives.base import OBJECTIVES


@OBJECTIVES.register("cross-entropy")
class CrossEntropyObjective(nn.Module):
    """Mean cross-entropy of the model's logits against ``batch["labels"]``.

    Args:
        label_smoothing: spread this much probability mass over the other classes (Szegedy et al. 2016).
        class_weights: optional per-class weights, shape (num_labels,).
    """

    def __init__(self, label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits  # (batch, num_labels)
        loss = F.cross_entropy(logits.float(), labels, weight=self.class_weights, label_smoothing=self.label_smoothing)
        return {"loss": loss, "task_loss": loss.detach(), "logits": logits.detach()}
