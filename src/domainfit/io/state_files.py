"""Save and load nested training state (optimizer, scheduler, RNG) without pickle.

``torch.save`` / ``torch.load(weights_only=False)`` store state as a pickle, and loading a pickle runs whatever
code its author planted (a ``__reduce__`` that calls ``os.system``). A run folder may come from anywhere: a
colleague's share, a downloaded archive. So domainfit never unpickles anything from disk. A state tree is
written as one safetensors file: every tensor and numpy array as a tensor, and the tree around them (dicts,
lists, tuples, numbers, strings) as JSON in the file's metadata. Loading parses JSON and tensors, nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from domainfit.errors import DomainfitError

_TREE_KEY = "domainfit_tree"
_MARKERS = ("$tensor", "$ndarray", "$tuple", "$dict")


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"$tensor": key}
    if isinstance(value, np.ndarray):
        key = f"t{len(tensors)}"
        # uint32 (numpy's Mersenne Twister state) has no safe torch dtype everywhere: widen, narrow on load
        array = value.astype(np.int64) if value.dtype == np.uint32 else value
        tensors[key] = torch.from_numpy(np.ascontiguousarray(array)).clone()
        return {"$ndarray": key, "dtype": str(value.dtype)}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and k not in _MARKERS for k in value):
            return {k: _encode(v, tensors) for k, v in value.items()}
        return {"$dict": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a state file")  # a bug: a new kind of state


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "$tensor" in value:
        return tensors[value["$tensor"]]
    if "$ndarray" in value:
        return tensors[value["$ndarray"]].numpy().astype(np.dtype(value["dtype"]))
    if "$tuple" in value:
        return tuple(_decode(v, tensors) for v in value["$tuple"])
    if "$dict" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["$dict"]}
    return {k: _decode(v, tensors) for k, v in value.items()}


def save_state(path: Path, tree: Any) -> None:
    """Write ``tree`` (nested dicts/lists/tuples of tensors, arrays, numbers, strings) to a safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(tree, tensors)
    save_file(tensors, str(path), metadata={_TREE_KEY: json.dumps(structure)})


def load_state(path: Path) -> Any:
    """Read a tree written by :func:`save_state`; a damaged or foreign file is a DomainfitError."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        return _decode(json.loads(metadata[_TREE_KEY]), tensors)
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as e:
        raise DomainfitError(
            f"this state file is damaged or was not written by domainfit ({type(e).__name__}: {str(e)[:200]})",
            path=path,
            fix="start the run afresh (output.overwrite=true), or restore the folder from a copy.",
        ) from e
