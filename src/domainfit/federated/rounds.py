"""The server's rounds, with a checkpoint after each, so ``domainfit federate --resume`` continues a stopped
federation from the round after the last one that finished.

Flower's ``Strategy.start`` runs rounds 1..N from the initial weights and cannot begin at round k, so
:func:`run_rounds` runs the same steps with the strategy's own methods, from any round: ``configure_train``,
the grid, ``aggregate_train``, ``configure_evaluate``, the grid, ``aggregate_evaluate``, the server's
``evaluate_fn``; then ``end_round`` (where the simulation writes the round's checkpoint).

A round's checkpoint is one file, ``checkpoints/round-0003.safetensors`` (``io/state_files``: tensors and JSON,
never a pickle), written under a temporary name and renamed, so a kill at any moment leaves the last complete
round; older rounds' files are deleted after. It holds what the rounds after it depend on:

- the global trained weights after the round, and those of the round kept so far (``federated/selection.py``);
- what the rounds recorded (``RoundLog``: per-site and global scores, traffic) and the validation scores;
- each site's rounds trained (its batch order) and DP accountant history (epsilon goes on adding up);
- the server optimiser's state (FedAvgM's momentum, FedAdam's and FedYogi's moments: ``strategies.SERVER_STATE``);
- the random generators (Flower samples each round's sites with ``random``; dropout draws from torch's).

So a resumed federation is the run it would have been: on the same machine its rounds score exactly as an
uninterrupted run's do (``tests/test_federated.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from domainfit.errors import DomainfitError
from domainfit.federated.apps import RoundLog
from domainfit.federated.selection import RoundSelection
from domainfit.federated.site import Site
from domainfit.federated.strategies import restore_server_state, server_state
from domainfit.io.atomic import write_atomic
from domainfit.io.run_folder import contained
from domainfit.io.state_files import load_state, save_state
from domainfit.training.checkpoint import rng_state, set_rng_state

log = logging.getLogger(__name__)

ROUND_FILE = re.compile(r"round-(\d{4,})\.safetensors")


def run_rounds(
    strategy: Any,
    grid: Any,
    arrays: Any,
    *,
    first_round: int,
    num_rounds: int,
    train_config: Any,
    evaluate_fn: Callable[[int, Any], Any],
    end_round: Callable[[int, Any], None] | None = None,
    timeout: float = 3600.0,
) -> Any:
    """Rounds ``first_round``..``num_rounds`` of ``strategy`` over ``grid`` from the global ``arrays`` (a
    Flower ``ArrayRecord``), as ``Strategy.start`` runs them; ``evaluate_fn(0, arrays)`` scores the initial
    weights when starting at round 1. Returns the global arrays after the last round."""
    from flwr.app import ConfigRecord

    if first_round <= 1:
        evaluate_fn(0, arrays)
    for server_round in range(max(first_round, 1), num_rounds + 1):
        messages = strategy.configure_train(server_round, arrays, train_config, grid)
        replies = grid.send_and_receive(messages=messages, timeout=timeout)
        aggregated, _ = strategy.aggregate_train(server_round, replies)
        if aggregated is not None:
            arrays = aggregated
        messages = strategy.configure_evaluate(server_round, arrays, ConfigRecord(), grid)
        strategy.aggregate_evaluate(server_round, grid.send_and_receive(messages=messages, timeout=timeout))
        evaluate_fn(server_round, arrays)
        if end_round is not None:
            end_round(server_round, arrays)
    return arrays


def _numpy(arrays: Any) -> dict[str, Any] | None:
    return None if arrays is None else {k: a.numpy() for k, a in arrays.items()}


def _record(arrays: dict[str, Any] | None) -> Any:
    from flwr.app import Array, ArrayRecord

    return None if arrays is None else ArrayRecord({k: Array(v) for k, v in arrays.items()})


@dataclasses.dataclass
class Resumed:
    """Where a resumed federation starts: the round after ``last_round``, from ``arrays``."""

    last_round: int
    arrays: Any


class RoundCheckpoints:
    """The round checkpoints under ``<run folder>/checkpoints`` (module docstring); the newest is kept."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.dir = self.out / "checkpoints"

    def save(
        self,
        server_round: int,
        arrays: Any,
        *,
        strategy: Any,
        round_log: RoundLog,
        selection: RoundSelection,
        sites: list[Site],
    ) -> Path:
        """Write round ``server_round``'s checkpoint, then delete the older ones."""
        kept = {f.name: getattr(selection, f.name) for f in dataclasses.fields(selection) if f.name != "arrays"}
        kept["arrays"] = None if selection.round == server_round else _numpy(selection.arrays)  # else `arrays`
        state = {
            "round": server_round,
            "arrays": _numpy(arrays),
            "round_log": dataclasses.asdict(round_log),
            "selection": kept,
            "sites": {
                site.name: {
                    "rounds_trained": site.rounds_trained,
                    "dp_history": list(site.privacy.accountant.history) if site.privacy is not None else None,
                }
                for site in sites
            },
            "server": server_state(strategy),
            "rng": rng_state(),
        }
        path = self.dir / f"round-{server_round:04d}.safetensors"
        write_atomic(path, lambda tmp: save_state(tmp, state))
        for old in self.dir.glob("round-*.safetensors"):
            if old.name != path.name and ROUND_FILE.fullmatch(old.name):
                old.unlink(missing_ok=True)  # a link is removed, never followed
        for tmp in self.dir.glob(".round-*.tmp"):  # half-written by a killed run (the folder is locked: ours)
            tmp.unlink(missing_ok=True)
        return path

    def latest(self) -> Path | None:
        """The newest round's checkpoint (a file renamed into place whole), or None."""
        if not self.dir.is_dir():
            return None
        rounds = sorted((int(m.group(1)), p.name) for p in self.dir.iterdir() if (m := ROUND_FILE.fullmatch(p.name)))
        return contained(self.dir, rounds[-1][1]) if rounds else None

    def load(
        self,
        *,
        strategy: Any,
        round_log: RoundLog,
        selection: RoundSelection,
        sites: list[Site],
    ) -> Resumed | None:
        """Restore the newest round's state into the given objects; None when no round finished."""
        path = self.latest()
        if path is None:
            return None
        state = load_state(path)
        try:
            return self._restore(state, path, strategy=strategy, round_log=round_log, selection=selection, sites=sites)
        except (KeyError, TypeError, ValueError) as e:
            raise DomainfitError(
                f"this round checkpoint lacks part of a federation's state ({type(e).__name__}: {str(e)[:120]}); "
                "it was written by another domainfit version or damaged",
                path=path,
                fix="start the federation afresh with overwrite: true (or resume it with the version that wrote it).",
            ) from e

    def _restore(
        self,
        state: dict[str, Any],
        path: Path,
        *,
        strategy: Any,
        round_log: RoundLog,
        selection: RoundSelection,
        sites: list[Site],
    ) -> Resumed:
        saved_sites = state["sites"]
        missing = sorted(set(s.name for s in sites) ^ set(saved_sites))
        if missing:
            raise DomainfitError(
                f"this checkpoint's sites are not the federation's (differing: {', '.join(missing)})",
                path=path,
                fix="resume with the federate config the run started with, or start afresh with overwrite: true.",
            )
        for field in dataclasses.fields(RoundLog):
            setattr(round_log, field.name, state["round_log"][field.name])
        kept = state["selection"]
        for field in dataclasses.fields(RoundSelection):
            if field.name not in ("metric", "arrays"):
                setattr(selection, field.name, kept[field.name])
        arrays = _record(state["arrays"])
        selection.arrays = arrays if selection.round == state["round"] else _record(kept["arrays"])
        for site in sites:
            saved = saved_sites[site.name]
            site.rounds_trained = int(saved["rounds_trained"])
            if site.privacy is not None and saved["dp_history"] is not None:
                site.privacy.accountant.history = [tuple(h) for h in saved["dp_history"]]
        restore_server_state(strategy, state["server"])
        set_rng_state(state["rng"])
        log.info("%s: resuming after round %d", self.out, state["round"])
        return Resumed(last_round=int(state["round"]), arrays=arrays)
