"""What a site and the server exchange: the trained weights only, as Flower ``ArrayRecord`` messages.

With ``peft.method: lora`` the trained weights are the LoRA matrices and the new classification head, a few
percent of the model: that is all that travels each round, and :func:`full_weights_bytes` says what sending
the whole model would have cost instead. Without PEFT every weight trains, so every weight travels. Frozen
weights never move: every site starts from the same pretrained model.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from domainfit.errors import MissingExtraError


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
