"""What a site and the server exchange: the trained weights only, as Flower ``ArrayRecord`` messages.

With ``peft.method: lora`` the trained weights are the LoRA matrices and the new classification head, a few
percent of the model: that is all that travels each round, and :func:`full_weights_bytes` says what sending
the whole model would have cost instead. Without PEFT every weight trains, so every weight travels. Frozen
weights never move: every site starts from the same pretrained model.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from domainfit.errors import ConfigError, DomainfitError, MissingExtraError

LORA_A = ".lora_A."  # peft's name for LoRA's down-projection matrices


def import_flower() -> Any:
    """``import flwr``, or a MissingExtraError that names the extra to install."""
    try:
        import flwr.app
        import flwr.clientapp
        import flwr.serverapp
        import flwr.serverapp.strategy
    except ImportError as e:
        raise MissingExtraError(
            f"domainfit federate needs Flower ({e})", fix='pip install "domainfit[federated]"'
        ) from e
    return flwr


def trained_state(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """The weights that train (``requires_grad``), by name, detached: what a site sends back."""
    return OrderedDict((name, p.detach()) for name, p in model.named_parameters() if p.requires_grad)


def load_trained_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` (from :func:`trained_state` of a model built the same way) into ``model``'s weights.

    Raises:
        ValueError: the names differ (a site built another model): a bug or a mismatched deployment.
    """
    params = dict(model.named_parameters())
    expected = [name for name, p in params.items() if p.requires_grad]
    if sorted(expected) != sorted(state):
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise ValueError(f"exchanged weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(torch.as_tensor(value, dtype=params[name].dtype))


def to_record(state: dict[str, torch.Tensor]) -> Any:
    """A Flower ``ArrayRecord`` of ``state`` (what goes on the wire)."""
    from flwr.app import ArrayRecord

    return ArrayRecord(
        {
            name: tensor.float().cpu() if tensor.dtype == torch.bfloat16 else tensor.cpu()
            for name, tensor in state.items()
        }
    )


def from_record(record: Any) -> OrderedDict[str, torch.Tensor]:
    """The tensors of an ``ArrayRecord``, by name."""
    return record.to_torch_state_dict()


def full_weights_bytes(model: nn.Module) -> int:
    """Bytes of every weight and buffer of the model's state dict: what exchanging full weights would send
    per message (each tensor counted once, in its own dtype)."""
    seen, total = set(), 0
    for tensor in model.state_dict(keep_vars=True).values():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += tensor.numel() * tensor.element_size()
    return total


def freeze_lora_a(model: nn.Module) -> int:
    """FFA-LoRA (Sun et al. 2024): LoRA's A matrices keep their random start; only B (and the head) train.

    Every party builds the model from the same seed, so A is the same everywhere, and the average of the
    sites' B matrices times that A is exactly the average of their updates ``B A``; averaging A and B
    separately (plain LoRA under FedAvg) is not, and drifts apart the more the sites' data differ. Half the
    LoRA bytes stop travelling too. Returns the number of weights frozen.

    Raises:
        ConfigError: the model has no LoRA matrices (the run config's ``peft.method`` is not lora).
    """
    frozen = 0
    for name, p in model.named_parameters():
        if LORA_A in name and p.requires_grad:
            p.requires_grad_(False)
            frozen += p.numel()
    if not frozen:
        raise ConfigError(
            "freeze_lora_a needs LoRA matrices, and the model has none",
            key="freeze_lora_a",  # load_federated_run_config refuses this earlier, naming the file
            fix="set peft.method: lora in the run config, or remove freeze_lora_a.",
        )
    return frozen


def frozen_digest(model: nn.Module) -> str:
    """A short SHA-256 of the frozen LoRA A matrices: equal at the server and every site, or the average is wrong."""
    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if LORA_A in name and not p.requires_grad:
            digest.update(name.encode())
            digest.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_frozen_digest(model: nn.Module, expected: str | None, site: str) -> None:
    """Refuse to train when the server's frozen A matrices (``expected``) are not this site's.

    Raises:
        DomainfitError: they differ (another train.seed, model or peft setting at this site).
    """
    if expected is None:
        return
    mine = frozen_digest(model)
    if mine != expected:
        raise DomainfitError(
            f"site {site}: its frozen LoRA A matrices (digest {mine}) are not the server's ({expected}), so "
            "averaging the B matrices would mix updates of different models",
            fix="give every site and the server the same run config (train.seed, model.name, peft settings) "
            "and domainfit version.",
        )
