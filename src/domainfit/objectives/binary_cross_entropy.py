"""Binary cross-entropy on a sigmoid head: the multi-label task loss (one yes/no decision per label)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from domainfit.objectives.base import OBJECTIVES


def positive_weights(multi_hot: torch.Tensor, *, max_weight: float) -> torch.Tensor:
    """Per-label weight of the positive term: negatives / positives in the training labels, capped.

    A label present in 2% of the training examples gets weight 49 (capped at ``max_weight``), so a missed
    positive costs as much as all the correct negatives it is outnumbered by (``pos_weight`` in
    ``torch.nn.BCEWithLogitsLoss``). A label with no positives gets 1.

    Args:
        multi_hot: (n, num_labels) 0/1 training labels.
        max_weight: upper bound, so a label seen a handful of times does not dominate the loss.

    Returns:
        (num_labels,) float32 weights, each in [1, max_weight] unless the label is in most examples.
    """
    positives = multi_hot.sum(0)  # (num_labels,)
    negatives = multi_hot.shape[0] - positives
    weights = torch.where(positives > 0, negatives / positives.clamp(min=1), torch.ones_like(positives))
    return weights.clamp(max=max_weight).float()


@OBJECTIVES.register("bce")
class BinaryCrossEntropyObjective(nn.Module):
    """Mean binary cross-entropy with logits over every (example, label) pair.

    Args:
        pos_weight: optional (num_labels,) weights of the positive term (see :func:`positive_weights`).
    """

    def __init__(self, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        # a buffer, not a parameter: it moves with .to(device) and is recomputed from the data on resume
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["labels"]  # (batch, num_labels) 0/1 floats
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits  # (batch, num_labels)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=self.pos_weight)
        return {"loss": loss, "task_loss": loss.detach(), "logits": logits.detach()}
