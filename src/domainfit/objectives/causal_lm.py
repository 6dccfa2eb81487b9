"""Causal language-model cross-entropy, masked to the response: the prompt is context, never a target."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from domainfit.objectives.base import OBJECTIVES

IGNORE_INDEX = -100


@OBJECTIVES.register("causal-lm")
class CausalLMObjective(nn.Module):
    """Next-token cross-entropy over the positions whose label is not -100 (the response and its EOS).

    The loss is the mean over all response tokens of the batch. For metrics it returns, instead of the
    (batch, seq, vocab) logits (49k columns for SmolLM2: far too big to collect over a split), each example's
    summed negative log-likelihood and its number of scored tokens as ``logits`` of shape (batch, 2), from
    which :func:`domainfit.metrics.generation.perplexity_metrics` computes the split's perplexity.
    """

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        labels = batch["labels"]  # (batch, seq), -100 on prompt and padding
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits  # (batch, seq, vocab)
        targets = labels[:, 1:]  # token t is predicted from positions < t
        nll = F.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
        )  # (batch, seq - 1), 0 where ignored
        per_example = torch.stack([nll.sum(1), (targets != IGNORE_INDEX).sum(1).float()], dim=1)  # (batch, 2)
        loss = per_example[:, 0].sum() / per_example[:, 1].sum().clamp(min=1)
        return {"loss": loss, "task_loss": loss.detach(), "logits": per_example.detach()}
