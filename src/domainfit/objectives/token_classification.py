"""Token-level cross-entropy: one label per token, positions labelled -100 ignored (special tokens,
continuation subwords, padding)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from domainfit.objectives.base import OBJECTIVES

IGNORE_INDEX = -100


@OBJECTIVES.register("token-cross-entropy")
class TokenCrossEntropyObjective(nn.Module):
    """Mean cross-entropy over the labelled tokens of a batch.

    A batch whose tokens are all ignored (possible for a window of continuation subwords) gives a zero loss
    instead of the NaN of an empty mean.
    """

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["labels"]  # (batch, seq)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits  # (batch, seq, num_labels)
        summed = F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        loss = summed / (labels != IGNORE_INDEX).sum().clamp(min=1)
        return {"loss": loss, "task_loss": loss.detach(), "logits": logits.detach()}
