"""Differential privacy at a site: DP-SGD (Abadi et al. 2016, *Deep Learning with Differential Privacy*)
through Opacus, with the epsilon spent tracked across rounds by Opacus's RDP accountant.

    domainfit federate federate.yaml dp.enabled=true dp.noise_multiplier=1.0 dp.max_grad_norm=1.0

Each step draws a Poisson batch (every training example joins with probability ``batch_size / examples``, the
sampling the accountant's bound assumes), computes each example's gradient (Opacus's ``GradSampleModule``
hooks), clips each to ``dp.max_grad_norm``, adds Gaussian noise of ``noise_multiplier * max_grad_norm`` and
takes the AdamW step (Opacus's ``DPOptimizer`` around the training code's optimizer). The guarantee is per
example of the site's own data; the epsilon reported is what the site has spent over all its rounds so far.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from domainfit.config.federate import PrivacyConfig
from domainfit.errors import MissingExtraError
from domainfit.training.optim import create_optimizer


def import_opacus() -> Any:
    """``import opacus``, or a MissingExtraError that names the extra to install."""
    try:
        import opacus
        import opacus.accountants
        import opacus.optimizers
    except ImportError as e:
        raise MissingExtraError(
            f"dp.enabled needs Opacus ({e})", key="dp.enabled", fix='pip install "domainfit[federated]"'
        ) from e
    return opacus


class SitePrivacy:
    """One site's DP-SGD settings and accountant (which lives across rounds).

    Args:
        dp: the ``dp`` section of the federate config.
        num_examples: the site's training examples.
        batch_size: the expected batch size (``train.batch_size``).
    """

    def __init__(self, dp: PrivacyConfig, *, num_examples: int, batch_size: int) -> None:
        opacus = import_opacus()
        self.dp = dp
        self.batch_size = min(batch_size, num_examples)
        self.sample_rate = self.batch_size / num_examples
        self.accountant = opacus.accountants.RDPAccountant()

    @property
    def epsilon(self) -> float:
        """Epsilon spent so far at ``dp.delta`` (0 before the first step)."""
        return float(self.accountant.get_epsilon(self.dp.delta)) if self.accountant.history else 0.0

    def fit(
        self, site: Any, model: nn.Module, sampler: Any, epochs: int, device: torch.device, schedule: Any
    ) -> dict[str, float]:
        """One round of DP-SGD on ``site`` (module docstring); ``sampler`` gives the steps per epoch,
        ``schedule(optimizer)`` this round's learning-rate scheduler."""
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        train = site.features["train"]
        steps = len(sampler) * epochs
        private = GradSampleModule(model, loss_reduction="mean")  # per-example gradients of the trained weights
        optimizer = DPOptimizer(
            create_optimizer(model, site.cfg.train, extra=site.objective),
            noise_multiplier=self.dp.noise_multiplier,
            max_grad_norm=self.dp.max_grad_norm,
            expected_batch_size=self.batch_size,
            loss_reduction="mean",
        )
        scheduler = schedule(optimizer.original_optimizer)
        generator = torch.Generator().manual_seed(site.cfg.train.seed + site.rounds_trained)
        losses: list[torch.Tensor] = []
        private.train()
        with warnings.catch_warnings():
            # Opacus hooks every module; the embeddings' inputs are token ids, which need no gradient, and PyTorch
            # says so on each backward: harmless (the per-example gradients are the weights'), so not shown
            warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
            try:
                for _ in range(steps):
                    chosen = (
                        (torch.rand(len(train), generator=generator) < self.sample_rate).nonzero().flatten().tolist()
                    )
                    if not chosen:  # an empty Poisson batch: nothing to learn from, nothing released
                        continue
                    batch = site.task.collate([train.items[i] for i in chosen], site.tokenizer, train=True)
                    out = site.objective(private, {k: v.to(device) for k, v in batch.items()})
                    out["loss"].backward()
                    optimizer.step()  # clip each example's gradient, add noise, AdamW step
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    self.accountant.step(noise_multiplier=self.dp.noise_multiplier, sample_rate=self.sample_rate)
                    losses.append(out["loss"].detach())
            finally:
                private._close()  # remove the hooks: the model goes back to the caller unchanged in kind
        site.rounds_trained += 1
        return {
            "train_loss": float(torch.stack(losses).mean()) if losses else float("nan"),
            "epsilon": self.epsilon,
        }
