"""The run scaffold that fine-tuning (``training/loop.py``) and pretraining (``training/pretrain.py``) share.

Everything around the two loops lives here once, so the loops cannot drift apart: the process setup (threads,
seed), the precision choice and the Accelerate object, the optimizer and schedule with their checkpoint
restore, one optimizer step (clipping, the step, the schedule; gradient accumulation by Accelerate's
``accumulate``, which the loop wraps around each batch), the log/evaluate/save cadence, the TensorBoard writer
and its training scalars, a running-loss meter summed on the device, checkpoints, and the end of the run
(metrics.json, run.json). The loops themselves stay written out, top to bottom, in their own files (the
torchtune recipe / LitGPT ``fit()`` style).

Launched as several processes (``training/distributed.py``), every process calls the same methods at the same
points; the scaffold makes only the main one write (checkpoints, TensorBoard, metrics.json, run.json), sums the
token counts over the processes, and averages the gradients of weights outside the DDP-wrapped model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domainfit.io.atomic import write_text_atomic
from domainfit.training.checkpoint import CheckpointManager, TrainState
from domainfit.training.distributed import on_main_process
from domainfit.training.optim import create_optimizer, create_scheduler
from domainfit.training.precision import create_accelerator, resolve_precision
from domainfit.training.run_dir import finish_run
from domainfit.training.threads import warn_if_oversubscribed


def set_up_process(train: Any) -> None:
    """Threads (``train.num_threads``, with a warning when the machine is busier than that) and the seed.

    Call before the model is built: the seed decides the new head's weights.
    """
    from accelerate.utils import set_seed

    if train.num_threads:
        torch.set_num_threads(train.num_threads)
    warn_if_oversubscribed(torch.get_num_threads())
    set_seed(train.seed)


def choose_precision(train: Any, out: Path, *, resume: bool) -> str:
    """Accelerate's ``mixed_precision`` for this run; a resumed run keeps its first choice (run.json). Made by
    the main process for all: on a CPU ``auto`` is a timing, which two processes could read differently."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return on_main_process(resolve_precision, train.precision, device, run_dir=out if resume else None)


@dataclass(frozen=True)
class Cadence:
    """When a loop logs, evaluates and saves, counted in optimizer steps (None: never by count)."""

    log_every: int
    eval_every: int | None
    save_every: int | None

    def log_due(self, step: int) -> bool:
        return step % self.log_every == 0

    def eval_due(self, step: int) -> bool:
        return bool(self.eval_every) and step % self.eval_every == 0

    def save_due(self, step: int) -> bool:
        return bool(self.save_every) and step % self.save_every == 0


class RunningLoss:
    """The training loss summed on the device, so a step never waits for it; read (one sync) when logged."""

    def __init__(self, device: torch.device) -> None:
        self.sum = torch.zeros((), device=device)
        self.count = 0
        self.last: float | None = None  # the mean last read, for the progress bar and the history

    def add(self, loss: torch.Tensor) -> None:
        """Add one batch's (detached) loss."""
        self.sum += loss
        self.count += 1

    def read(self, *, reset: bool = False) -> float | None:
        """The mean since the last reset (kept as :attr:`last`; unchanged when no batch was added)."""
        if self.count:
            self.last = round(self.sum.item() / self.count, 4)  # the only host/device sync of the meter
        if reset:
            self.sum.zero_()
            self.count = 0
        return self.last


class Stopwatch:
    """Training seconds into ``state.train_seconds``, paused while the loop evaluates."""

    def __init__(self, state: TrainState) -> None:
        self.state = state
        self.start()

    def start(self) -> None:
        self._tick = time.perf_counter()

    def stop(self) -> None:
        self.state.train_seconds += time.perf_counter() - self._tick


class RunScaffold:
    """The Accelerate object, optimizer, schedule, checkpoints and TensorBoard writer of one run.

    Built once the model exists (the accelerator's device is where the objective and the compact embedding
    rows are created); :meth:`prepare` then creates the optimizer and schedule, places everything and restores
    a checkpoint on resume.

    Args:
        out: the run folder (locked by ``open_run_folder``).
        train: the ``train`` config section (fine-tuning's or pretraining's).
        mixed_precision: from :func:`choose_precision`.
    """

    def __init__(self, out: Path, train: Any, mixed_precision: str) -> None:
        self.out = Path(out)
        self.train = train
        self.mixed_precision = mixed_precision
        self.accelerator = create_accelerator(mixed_precision, train.grad_accum_steps)
        self.device = self.accelerator.device
        self.checkpoints = CheckpointManager(out)
        self.is_main = self.accelerator.is_main_process
        self.num_processes = self.accelerator.num_processes
        self._outside: list[nn.Parameter] = []  # trained weights that DDP does not see
        self._summed_tokens = (0, 0)  # (real, computed) tokens already summed over the processes

    def prepare(
        self,
        model: nn.Module,
        total_steps: int,
        *,
        resume: bool,
        objective: nn.Module | None = None,
        extra_named: Iterable[tuple[str, nn.Parameter]] = (),
    ) -> tuple[nn.Module, TrainState]:
        """AdamW + schedule over ``model`` (and the objective's weights, and ``extra_named``), placed by
        Accelerate; the checkpoint's state on resume. Returns the prepared model and the training state."""
        from torch.utils.tensorboard import SummaryWriter

        extra_named = list(extra_named)
        optimizer = create_optimizer(model, self.train, extra=objective, extra_named=extra_named)
        scheduler = create_scheduler(optimizer, self.train, total_steps)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.objective = objective
        self._outside = [p for _, p in extra_named if p.requires_grad]
        if objective is not None:
            self._outside += [p for p in objective.parameters() if p.requires_grad]
        state = TrainState()
        if resume:  # every process loads the main process's checkpoint
            state = self.checkpoints.load(self.unwrapped_model, self.optimizer, self.scheduler, objective=objective)
        self._summed_tokens = (state.real_tokens, state.computed_tokens)
        self.tb = (
            SummaryWriter(str(self.out / "tensorboard"), purge_step=state.step if resume else None)
            if self.is_main
            else _NoWriter()
        )
        return self.model, state

    @property
    def unwrapped_model(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def optimizer_step(
        self, clipped: Iterable[torch.Tensor], after_update: Callable[[torch.optim.Optimizer], None] | None = None
    ) -> None:
        """Clip, step and schedule, inside the loop's ``accelerator.accumulate``: between accumulation
        boundaries Accelerate's optimizer and schedule skip, so every batch calls this.

        Args:
            clipped: the weights whose gradient norm ``train.max_grad_norm`` bounds.
            after_update: called after a step that updated the weights, before the schedule moves
                (the compact embedding rows decay the other rows with this step's learning rate).
        """
        accelerator = self.accelerator
        if accelerator.sync_gradients and self.num_processes > 1:
            self._average_outside_gradients()
        if accelerator.sync_gradients and self.train.max_grad_norm:
            accelerator.clip_grad_norm_(clipped, self.train.max_grad_norm)
        self.optimizer.step()
        updated = accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped
        if after_update is not None and updated:
            after_update(self.optimizer)
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _average_outside_gradients(self) -> None:
        """DDP averages the gradients of the wrapped model only; the compact embedding rows and an objective's
        own weights (a joint MLM head) are averaged here, or each process would train them apart."""
        for p in self._outside:
            if p.grad is None:  # all processes must join each exchange, with or without a gradient
                p.grad = torch.zeros_like(p)
            p.grad.copy_(self.accelerator.reduce(p.grad, reduction="mean"))

    def sum_tokens(self, state: TrainState) -> None:
        """Sum the token counts each process added since the last call into ``state`` on every process.

        Each process counts the tokens of its own rows; the sum is taken where the state is saved or
        reported (every process calls this at the same points), not at every step, which would add a wait."""
        if self.num_processes == 1:
            return
        real, computed = self._summed_tokens
        new = torch.tensor([state.real_tokens - real, state.computed_tokens - computed], device=self.device)
        total = self.accelerator.reduce(new, reduction="sum").tolist()
        state.real_tokens, state.computed_tokens = real + int(total[0]), computed + int(total[1])
        self._summed_tokens = (state.real_tokens, state.computed_tokens)

    def log_training(self, step: int, loss: float | None, parts: dict[str, Any]) -> None:
        """TensorBoard: the training loss, the named parts of ``parts`` (``*_loss``, and ``*_weight``: a joint
        objective's weights), and the learning rate (the lowest too under layer-wise decay)."""
        self.tb.add_scalar("train/loss", loss, step)
        for name, part in parts.items():
            if name.endswith(("_loss", "_weight")):  # an objective's output also holds logits
                self.tb.add_scalar(f"train/{name}", float(part), step)
        lrs = self.scheduler.get_last_lr()
        self.tb.add_scalar("train/learning_rate", lrs[0], step)
        if min(lrs) < lrs[0]:  # layer-wise decay: the embeddings' lr too
            self.tb.add_scalar("train/learning_rate_lowest", min(lrs), step)

    def log_validation(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.tb.add_scalar(f"validation/{name}", value, step)

    def save(self, state: TrainState) -> None:
        """A resumable checkpoint: model, objective, optimizer, schedule, RNG and ``state``. Every process
        calls it; the main one writes (the weights, optimizer and schedule are the same on all under DDP)."""
        self.sum_tokens(state)
        if self.is_main:
            self.checkpoints.save(state, self.unwrapped_model, self.optimizer, self.scheduler, objective=self.objective)

    def save_best(self, info: dict[str, Any]) -> None:
        """Keep the current weights as the best so far (the main process writes them)."""
        if self.is_main:
            self.checkpoints.save_best(self.unwrapped_model, info)

    def load_best(self) -> dict[str, Any] | None:
        """Load the best weights into the model on every process, once the main process has written them."""
        self.accelerator.wait_for_everyone()
        return self.checkpoints.load_best(self.unwrapped_model)

    def write_metrics(self, results: dict[str, Any]) -> None:
        if self.is_main:
            write_text_atomic(self.out / "metrics.json", json.dumps(results, indent=1, ensure_ascii=False))

    def finish(self, **extra: Any) -> None:
        """Close the TensorBoard writer and mark the run finished in run.json (with ``extra``); the other
        processes wait, so none exits while the main one still writes."""
        self.tb.close()
        if self.is_main:
            finish_run(self.out, **extra)
        self.accelerator.wait_for_everyone()


class _NoWriter:
    """TensorBoard's writer on the processes that do not write."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass
