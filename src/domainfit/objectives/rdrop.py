"""R-Drop (Liang et al. 2021, *R-Drop: Regularized Dropout for Neural Networks*): two forward passes with
different dropout masks, plus a symmetric KL between their predictions.

    domainfit train my.yaml regularization.rdrop_alpha=1.0

The batch is duplicated and run once (the authors' implementation), so the two passes differ only in
their dropout masks. The task loss is the base objective's mean over both copies; the wrapper adds
``alpha * (KL(p1 || p2) + KL(p2 || p1)) / 2`` and logs it as ``rdrop_loss``. In eval mode it is the base.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from domainfit.config import RDropConfig
from domainfit.objectives.base import OBJECTIVES, WRAPPERS, ObjectiveWrapper


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of (KL(a || b) + KL(b || a)) / 2 between softmax distributions; (batch, C) each."""
    log_a, log_b = F.log_softmax(logits_a.float(), -1), F.log_softmax(logits_b.float(), -1)
    kl_ab = F.kl_div(log_b, log_a, log_target=True, reduction="batchmean")  # KL(a || b)
    kl_ba = F.kl_div(log_a, log_b, log_target=True, reduction="batchmean")
    return (kl_ab + kl_ba) / 2


@OBJECTIVES.register("rdrop")
class RDropObjective(nn.Module):
    """Wraps a task objective with the R-Drop consistency term.

    Args:
        base: the task objective (cross-entropy, focal...); its model must return ``.logits``.
        alpha: weight of the symmetric KL term.
    """

    def __init__(self, base: nn.Module, alpha: float = 1.0) -> None:
        super().__init__()
        self.base = base
        self.alpha = alpha

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not model.training:
            return self.base(model, batch)
        captured: list[torch.Tensor] = []
        # the base detaches the logits it returns; a hook keeps the ones with a graph
        handle = model.register_forward_hook(lambda module, args, output: captured.append(output.logits))
        try:
            doubled = {k: torch.cat([v, v]) for k, v in batch.items()}  # (2 * batch, ...)
            out = self.base(model, doubled)
        finally:
            handle.remove()
        first, second = captured[-1].chunk(2)  # (batch, C) each
        kl = symmetric_kl(first, second)
        result = dict(out)
        result["loss"] = out["loss"] + self.alpha * kl
        result["rdrop_loss"] = kl.detach()
        result["logits"] = out["logits"][: first.shape[0]]
        return result


WRAPPERS.register(
    "rdrop",
    ObjectiveWrapper(
        config=RDropConfig,
        enabled=lambda settings: settings.rdrop_alpha > 0,
        create=lambda base, settings: RDropObjective(base, alpha=settings.rdrop_alpha),
    ),
)
