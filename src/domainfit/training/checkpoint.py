"""Resumable training checkpoints and the best-model weights, all written atomically.

Layout inside ``<output>/checkpoints/``::

    step-000240/         model.safetensors, optimizer.safetensors, scheduler.safetensors, rng.safetensors,
                         state.json (position, history)
    latest               text file naming the newest complete step folder
    best.safetensors     weights of the best evaluation so far
    best.json            which step/epoch that was (also stored inside best.safetensors' metadata)

A step folder is filled under a temporary name and renamed when complete; ``latest`` is replaced
atomically afterwards; older step folders are deleted last. So a kill -9 at any moment leaves ``latest``
pointing at a complete folder, and resume restores model, optimizer, scheduler, RNG and data position.

Nothing is unpickled on resume (``io/state_files``: tensors + JSON), and every path read is resolved inside the
run folder (``io/run_folder``): a checkpoint from an untrusted copy can neither run code nor point elsewhere.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model

from domainfit.errors import DomainfitError
from domainfit.io.atomic import atomic_dir, write_atomic, write_text_atomic
from domainfit.io.disk import disk_full
from domainfit.io.run_folder import contained
from domainfit.io.state_files import load_state, save_state

STEP_NAME = re.compile(r"step-\d{7,}")
# written by domainfit before 0.2: pickles, which are never loaded (a pickle can run code)
LEGACY_PICKLES = ("optimizer.pt", "scheduler.pt", "rng.pt")


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


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's random generators' states (CUDA's too when there is a GPU)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
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
    def save(
        self, state: TrainState, model: torch.nn.Module, optimizer, scheduler, objective: torch.nn.Module | None = None
    ) -> Path:
        name = f"step-{state.step:07d}"
        target = self.dir / name
        try:
            with atomic_dir(target) as tmp:
                save_model(model, str(tmp / "model.safetensors"))
                save_state(tmp / "optimizer.safetensors", optimizer.state_dict())
                save_state(tmp / "scheduler.safetensors", scheduler.state_dict())
                save_state(tmp / "rng.safetensors", rng_state())
                if objective is not None and any(True for _ in objective.parameters()):
                    save_model(objective, str(tmp / "objective.safetensors"))
                (tmp / "state.json").write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")
        except OSError as e:  # the step folder is written whole or not at all: the previous one is untouched
            full = disk_full(e, self.dir)
            if not full:
                raise
            previous = self.latest()
            kept = f"the previous checkpoint {previous.name} is intact" if previous else "no earlier checkpoint exists"
            raise DomainfitError(
                f"{full} while writing checkpoint {name}; {kept}",
                path=self.dir,
                fix="free some space on that disk, then continue with --resume.",
            ) from e
        write_text_atomic(self.dir / "latest", name)
        for old in sorted(self.dir.glob("step-*"))[: -self.keep]:
            if old.name == name:
                continue
            if old.is_symlink():
                old.unlink()  # never follow a link out of the run folder to delete what it points at
            elif old.is_dir():
                shutil.rmtree(old)
        self.remove_leftovers()
        return target

    def remove_leftovers(self) -> None:
        """Delete half-written step folders (``.step-*.tmp``) that a killed process left behind.

        The run folder is locked for the life of a run (``run_dir.RunLock``), so no other writer owns them."""
        for tmp in self.dir.glob(".step-*.tmp"):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)

    def latest(self) -> Path | None:
        """The newest complete step folder, resolved inside the run folder (a pointer leading out is refused)."""
        if not self.dir.is_dir():
            return None
        pointer = self.dir / "latest"
        if pointer.is_file():
            name = contained(self.dir, "latest").read_text(encoding="utf-8").strip()
            if not STEP_NAME.fullmatch(name):
                raise DomainfitError(
                    f"checkpoints/latest should name a step folder (step-0000240), found {name[:80]!r}",
                    path=pointer,
                    fix="delete checkpoints/latest (resume then takes the newest complete step "
                    "folder), or start afresh with output.overwrite=true.",
                )
            target = contained(self.dir, name)
            if (target / "state.json").is_file():
                return target
        complete = [contained(self.dir, p.name) for p in sorted(self.dir.glob("step-*")) if STEP_NAME.fullmatch(p.name)]
        complete = [p for p in complete if (p / "state.json").is_file()]
        return complete[-1] if complete else None

    def load(
        self, model: torch.nn.Module, optimizer, scheduler, objective: torch.nn.Module | None = None
    ) -> TrainState:
        path = self.latest()
        if path is None:
            raise DomainfitError(
                "nothing to resume: this output folder has no complete checkpoint",
                path=self.dir,
                fix="run without --resume to start afresh (checkpoints are written at each evaluation).",
            )
        if any((path / name).exists() for name in LEGACY_PICKLES) and not (path / "optimizer.safetensors").exists():
            raise DomainfitError(
                "this checkpoint was written by an older domainfit as pickle files (optimizer.pt), "
                "which are never loaded: unpickling a file can run code planted in it",
                path=path,
                fix="start the run afresh (output.overwrite=true); checkpoints are now written as safetensors + JSON.",
            )
        file = lambda name: contained(path, name)  # noqa: E731  every file read stays in the run folder
        state = _read_train_state(file("state.json"))
        try:
            load_model(model, str(file("model.safetensors")))
            if objective is not None and file("objective.safetensors").is_file():
                # weights must all be there; a state buffer added by a later version keeps its start value
                missing, unexpected = load_model(objective, str(file("objective.safetensors")), strict=False)
                weights = {name for name, _ in objective.named_parameters()}
                missing_weights = [k for k in missing if k in weights]
                if missing_weights or unexpected:
                    raise DomainfitError(
                        f"the checkpoint's objective does not match this run's (missing "
                        f"{missing_weights}, unexpected {sorted(unexpected)})",
                        path=path,
                        fix="resume with the config the run started with, or start afresh.",
                    )
            optimizer.load_state_dict(load_state(file("optimizer.safetensors")))
            scheduler.load_state_dict(load_state(file("scheduler.safetensors")))
            set_rng_state(load_state(file("rng.safetensors")))
        except DomainfitError:
            raise
        except (OSError, RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise DomainfitError(
                f"the checkpoint is damaged or belongs to another model ({type(e).__name__}: {str(e)[:300]})",
                path=path,
                fix="delete this step folder to resume from an earlier one if there is one, or start "
                "afresh with output.overwrite=true.",
            ) from e
        return state

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
        path = contained(self.dir, "best.safetensors")
        try:
            load_model(model, str(path))
            with safe_open(str(path), framework="pt") as f:
                return json.loads(f.metadata()["domainfit_best"])
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as e:
            raise DomainfitError(
                f"the best weights are damaged ({type(e).__name__}: {str(e)[:300]})",
                path=path,
                fix="start the run afresh with output.overwrite=true.",
            ) from e


def _read_train_state(path: Path) -> TrainState:
    """state.json -> TrainState; a tampered or foreign file is a clear error, not a TypeError."""
    known = {f.name: f for f in fields(TrainState)}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DomainfitError(
            f"cannot read the checkpoint's state: {e}",
            path=path,
            fix="delete this step folder to resume from an earlier one, or start afresh.",
        ) from e
    if not isinstance(raw, dict) or set(raw) - set(known):
        extra = sorted(set(raw) - set(known)) if isinstance(raw, dict) else type(raw).__name__
        raise DomainfitError(
            f"the checkpoint's state is not domainfit's (unexpected: {str(extra)[:200]})",
            path=path,
            fix="delete this step folder to resume from an earlier one, or start afresh.",
        )
    for name in ("epoch", "batch_in_epoch", "step", "samples_seen"):
        value = raw.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DomainfitError(
                f"the checkpoint's state has {name}={str(value)[:40]}, expected a whole number >= 0",
                path=path,
                fix="delete this step folder to resume from an earlier one, or start afresh.",
            )
    return TrainState(**raw)
