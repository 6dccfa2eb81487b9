"""FedProx's proximal term (Li et al. 2020, *Federated Optimization in Heterogeneous Networks*).

    domainfit federate federate.yaml        # with strategy: fedprox and proximal_mu: 0.01

Each site of a federated round minimises its task loss plus ``mu / 2 * ||w - w_global||^2`` over the weights
it trains, where ``w_global`` are the weights the server sent at the start of the round: local updates on
skewed data cannot drift far from the global model. The wrapper adds the term to the base objective's loss
and logs it as ``proximal_loss``; in eval mode, or before :meth:`ProximalObjective.anchor` is called, it is
the base objective. ``domainfit federate`` wraps each site's objective with it (outermost), so the training
code stays the one that trains without it.
"""

from __future__ import annotations

import torch
from torch import nn

from domainfit.objectives.base import OBJECTIVES


@OBJECTIVES.register("fedprox")
class ProximalObjective(nn.Module):
    """Wraps an objective with FedProx's proximal term.

    Args:
        base: the site's training objective.
        mu: weight of the proximal term (0: FedAvg's local objective).
    """

    def __init__(self, base: nn.Module, mu: float = 0.01) -> None:
        super().__init__()
        self.base = base
        self.mu = mu
        # a plain dict, not buffers: the anchor is neither trained, nor saved, nor exchanged
        self._anchor: dict[str, torch.Tensor] = {}

    def anchor(self, model: nn.Module) -> None:
        """Take the model's trainable weights now (the global model of this round) as ``w_global``."""
        self._anchor = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    def proximal_term(self, model: nn.Module) -> torch.Tensor:
        """``||w - w_global||^2`` over the anchored weights (a scalar with a graph to ``w``)."""
        squares = [
            (p - self._anchor[name]).pow(2).sum() for name, p in model.named_parameters() if name in self._anchor
        ]
        return torch.stack(squares).sum()

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.base(model, batch)
        if not model.training or not self._anchor or self.mu == 0:
            return out
        term = self.proximal_term(model)
        result = dict(out)
        result["loss"] = out["loss"] + self.mu / 2 * term
        result["proximal_loss"] = term.detach()
        return result
