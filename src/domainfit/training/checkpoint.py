"""Resumable training checkpoints and the best-model weights, all written atomically.

Layout inside ``<output>/checkpoints/``::

    step-000240/         model.safetensors, optimizer.pt, scheduler.pt, state.json (position, RNG, history)
    latest               text file naming the newest complete step folder
    best.safetensors     weights of the best evaluation so far
    best.json            which step/epoch that was (also stored inside best.safetensors' metadata)

A step folder is filled under a temporary name and renamed when complete; ``latest`` is replaced
atomically afterwards; older step folders are deleted last. So a kill -9 at any moment leaves ``latest``
pointing at a complete folder, and resume restores model, optimizer, scheduler, RNG and data position.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model

from domainfit.errors import DomainfitError
from domainfit.training.atomic import atomic_dir, write_atomic, write_text_atomic


@dataclass
class TrainState:
    """Where training is: enough to continue exactly."""

    epoch: int = 0  # current epoch (0-based)
    batch_in_epoch: int = 0  # batches of this epoch already trained on
    step: int = 0  # optimizer steps so far
    samples_seen: int = 0
    best_value: float | None = None
    best_loss: float | None = None  # validation loss of the best checkpoint: breaks ties on best_value
    best_step: int | None = None
    evals_without_improvement: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    real_tokens: int = 0
    computed_tokens: int = 0
    stream: dict[str, int] = field(default_factory=dict)  # a streamed corpus's position (domainfit pretrain)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """Writes and restores checkpoints under ``<run_dir>/checkpoints``; keeps the newest ``keep``."""

    def __init__(self, run_dir: Path, keep: int = 1) -> None:
        self.dir = Path(run_dir) / "checkpoints"
        self.keep = keep

    # -- resumable state ----------------------------------------------------------------------------
    def save(self, state: TrainState, model: torch.nn.Module, optimizer, scheduler,
             objective: torch.nn.Module | None = None) -> Path:
        name = f"step-{state.step:07d}"
        target = self.dir / name
        with atomic_dir(target) as tmp:
            save_model(model, str(tmp / "model.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            torch.save(_rng_state(), tmp / "rng.pt")
            if objective is not None and any(True for _ in objective.parameters()):
                save_model(objective, str(tmp / "objective.safetensors"))
            (tmp / "state.json").write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")
        write_text_atomic(self.dir / "latest", name)
        for old in sorted(self.dir.glob("step-*"))[: -self.keep]:
            if old.name != name and old.is_dir():
                shutil.rmtree(old)
        return target

    def latest(self) -> Path | None:
        pointer = self.dir / "latest"
        if pointer.is_file():
            target = self.dir / pointer.read_text(encoding="utf-8").strip()
            if (target / "state.json").is_file():
                return target
        complete = [p for p in sorted(self.dir.glob("step-*")) if (p / "state.json").is_file()]
        return complete[-1] if complete else None

    def load(self, model: torch.nn.Module, optimizer, scheduler, objective: torch.nn.Module | None = None) -> TrainState:
        path = self.latest()
        if path is None:
            raise DomainfitError(
                "nothing to resume: this output folder has no complete checkpoint",
                path=self.dir,
                fix="run without --resume to start afresh (checkpoints are written at each evaluation).",
            )
        load_model(model, str(path / "model.safetensors"))
        if objective is not None and (path / "objective.safetensors").is_file():
            # weights must all be there; a state buffer added by a later version (a flag, a counter) keeps its start value
            missing, unexpected = load_model(objective, str(path / "objective.safetensors"), strict=False)
            weights = {name for name, _ in objective.named_parameters()}
            missing_weights = [k for k in missing if k in weights]
            if missing_weights or unexpected:
                raise DomainfitError(f"the checkpoint's objective does not match this run's (missing {missing_weights}, "
                                     f"unexpected {sorted(unexpected)})", path=path,
                                     fix="resume with the config the run started with, or start afresh.")
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        _set_rng_state(torch.load(path / "rng.pt", weights_only=False))
        return TrainState(**json.loads((path / "state.json").read_text(encoding="utf-8")))

    # -- best model ---------------------------------------------------------------------------------
    def save_best(self, model: torch.nn.Module, info: dict[str, Any]) -> None:
        # the info travels inside the weights file, so the two can never disagree after a crash
        meta = {"domainfit_best": json.dumps(info)}
        write_atomic(self.dir / "best.safetensors", lambda p: save_model(model, str(p), metadata=meta))
        write_text_atomic(self.dir / "best.json", json.dumps(info, indent=1))  # human-readable copy

    def load_best(self, model: torch.nn.Module) -> dict[str, Any] | None:
        """Load the best weights into ``model``; None if no evaluation has run."""
        if not (self.dir / "best.safetensors").is_file():
            return None
        path = self.dir / "best.safetensors"
        load_model(model, str(path))
        with safe_open(str(path), framework="pt") as f:
            return json.loads(f.metadata()["domainfit_best"])
