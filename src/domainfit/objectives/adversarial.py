"""Adversarial training on the word embeddings: FGM, PGD and FreeLB, each a wrapper around the task objective.

    domainfit train my.yaml regularization.adversarial=fgm regularization.adv_epsilon=1.0

A forward hook on the word-embedding layer adds a perturbation ``delta`` (batch, seq, hidden) to its output,
so no weights are saved and restored. One training step is: a clean forward; the gradient of the clean loss
with respect to the embedding output (``torch.autograd.grad``, graph kept); one or more adversarial
forwards with ``delta`` added; and ``loss = clean + adversarial``, so the loop's single backward covers both.
The adversarial part is logged as ``adv_loss``. In eval mode only the clean loss is computed.

- FGM (Miyato et al. 2017, *Adversarial Training Methods for Semi-Supervised Text Classification*):
  ``delta = epsilon * g / ||g||`` per example.
- PGD (Madry et al. 2018, *Towards Deep Learning Models Resistant to Adversarial Attacks*): ``adv_steps``
  ascent steps of size ``adv_alpha`` along the normalised gradient, each projected onto the L2 ball of
  radius ``adv_epsilon``; the loss at the last ``delta`` is trained on.
- FreeLB (Zhu et al. 2020, *FreeLB: Enhanced Adversarial Training for Natural Language Understanding*): the
  same ascent, but the losses of all ``adv_steps`` perturbations are averaged, so the parameters see the
  gradient of every step ("free" large-batch training).

Norms are L2 per example over (seq, hidden). Padding positions get no gradient through the attention mask,
so ``delta`` is zero there (every ``delta`` starts at zero and moves only along gradients).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from domainfit.config import AdversarialConfig
from domainfit.errors import ModelError
from domainfit.objectives.base import WRAPPERS, ObjectiveWrapper
from domainfit.registry import Registry

ADVERSARIAL: Registry = Registry("adversarial method")


class _EmbeddingPerturbation:
    """Adds ``delta`` to the word-embedding output; with ``delta`` None it adds a zero leaf (kept as ``leaf``)
    whose gradient is the gradient with respect to the embedding output."""

    def __init__(self) -> None:
        self.delta: torch.Tensor | None = None
        self.leaf: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.delta is None:
            self.leaf = torch.zeros_like(output, requires_grad=True)  # (batch, seq, hidden)
            return output + self.leaf
        return output + self.delta.to(output.dtype)


@contextmanager
def perturbed_embeddings(model: nn.Module) -> Iterator[_EmbeddingPerturbation]:
    """Hook the model's word embeddings for the duration of the block."""
    get = getattr(model, "get_input_embeddings", None)
    embeddings = get() if get is not None else None
    if embeddings is None:
        raise ModelError(
            f"{type(model).__name__} has no input embeddings to perturb",
            key="regularization.adversarial",
            fix="use a Hugging Face transformer model, or set regularization.adversarial: none.",
        )
    perturbation = _EmbeddingPerturbation()
    handle = embeddings.register_forward_hook(perturbation)
    try:
        yield perturbation
    finally:
        handle.remove()


def _normalize(g: torch.Tensor) -> torch.Tensor:
    """Scale every example of (batch, seq, hidden) to unit L2 norm."""
    norm = g.flatten(1).norm(dim=1).clamp(min=1e-12)  # (batch,)
    return g / norm[:, None, None]


def project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Project every example of (batch, seq, hidden) onto the L2 ball of radius ``epsilon``."""
    norm = delta.flatten(1).norm(dim=1)  # (batch,)
    scale = (epsilon / norm.clamp(min=1e-12)).clamp(max=1.0)
    return delta * scale[:, None, None]


class _AdversarialObjective(nn.Module):
    """Shared wrapper: clean pass, then ``_adversarial`` adds the adversarial loss.

    Args:
        base: the wrapped objective (task loss, maybe R-Drop).
        epsilon: L2 radius of the perturbation per example.
        alpha: ascent step size (PGD, FreeLB).
        steps: ascent steps (PGD, FreeLB).
    """

    def __init__(self, base: nn.Module, epsilon: float = 1.0, alpha: float = 0.3, steps: int = 3) -> None:
        super().__init__()
        self.base = base
        self.epsilon = epsilon
        self.alpha = alpha
        self.steps = steps
        self.last_delta: torch.Tensor | None = None  # the last perturbation trained on (for inspection)

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not model.training:
            return self.base(model, batch)
        with perturbed_embeddings(model) as hook:
            clean = self.base(model, batch)
            (grad,) = torch.autograd.grad(clean["loss"], hook.leaf, retain_graph=True)  # (batch, seq, hidden)
            adv_loss, delta = self._adversarial(model, batch, hook, grad.detach())
        self.last_delta = delta.detach()
        result = dict(clean)
        result["loss"] = clean["loss"] + adv_loss
        result["adv_loss"] = adv_loss.detach()
        return result

    def _adversarial(self, model, batch, hook, grad) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _ascend(self, delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return project(delta + self.alpha * _normalize(grad), self.epsilon)


@ADVERSARIAL.register("fgm")
class FGM(_AdversarialObjective):
    """Fast gradient method: one step of size epsilon along the normalised clean-loss gradient."""

    def _adversarial(self, model, batch, hook, grad):
        hook.delta = self.epsilon * _normalize(grad)
        return self.base(model, batch)["loss"], hook.delta


@ADVERSARIAL.register("pgd")
class PGD(_AdversarialObjective):
    """Projected gradient descent: ``steps`` projected ascent steps, train on the last perturbation."""

    def _adversarial(self, model, batch, hook, grad):
        delta = self._ascend(torch.zeros_like(grad), grad)
        for _ in range(self.steps - 1):
            hook.delta = delta.clone().requires_grad_()
            (g,) = torch.autograd.grad(self.base(model, batch)["loss"], hook.delta)  # graph freed here
            delta = self._ascend(delta, g)
        hook.delta = delta
        return self.base(model, batch)["loss"], delta


@ADVERSARIAL.register("freelb")
class FreeLB(_AdversarialObjective):
    """FreeLB: average the losses of ``steps`` ascending perturbations (each keeps its graph for the backward)."""

    def _adversarial(self, model, batch, hook, grad):
        delta = self._ascend(torch.zeros_like(grad), grad)
        losses = []
        for step in range(self.steps):
            hook.delta = delta.clone().requires_grad_()
            loss = self.base(model, batch)["loss"]
            losses.append(loss)
            if step < self.steps - 1:
                (g,) = torch.autograd.grad(loss, hook.delta, retain_graph=True)
                delta = self._ascend(delta, g)
        return torch.stack(losses).mean(), delta


def wrap_adversarial(base: nn.Module, settings: AdversarialConfig) -> nn.Module:
    """Wrap ``base`` in the adversarial method ``settings.adversarial`` names (fgm, pgd, freelb)."""
    method = ADVERSARIAL.get(settings.adversarial, key="regularization.adversarial")
    return method(base, epsilon=settings.adv_epsilon, alpha=settings.adv_alpha, steps=settings.adv_steps)


WRAPPERS.register(
    "adversarial",
    ObjectiveWrapper(
        config=AdversarialConfig,
        enabled=lambda settings: settings.adversarial != "none",
        create=wrap_adversarial,
    ),
)
