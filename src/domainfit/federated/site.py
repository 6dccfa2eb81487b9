"""One site of a federation: its own data, read, split and encoded as ``domainfit train`` would, and a
round of local training on it.

A site trains with the pieces of the training loop (the task's batches and objective, AdamW, gradient
clipping) for ``local_epochs`` passes per round, from the weights the server sent; the optimizer starts afresh
each round, as in FedAvg (McMahan et al. 2017). The learning rate follows one linear warm-up/decay schedule
over all rounds (``training/optim.py``): round ``r`` of ``R`` runs its ``r``-th share, so warm-up happens once
and the rate decays across the federation as it would over the same epochs of centralised training (a
schedule restarted every round warms up again and decays to zero within each round). Evaluation is
the loop's own (``training.loop.evaluate``). Both compute in the run config's ``train.precision`` as
``domainfit train`` does (``training/precision.py``: ``auto`` takes bf16 autocast where the chip runs it faster;
fp16 with a gradient scaler), so a federation and the centralised run it is compared with compute alike. With
``dp.enabled`` a round runs DP-SGD through Opacus instead (``federated/privacy.py``), in fp32.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domainfit.config import RunConfig
from domainfit.data.batching import EpochBatchSampler
from domainfit.errors import DataError, short_repr
from domainfit.tasks import Features, Task, TaskData
from domainfit.training.loop import evaluate
from domainfit.training.optim import create_optimizer, create_scheduler

log = logging.getLogger(__name__)


@dataclass
class Site:
    """A site's data and training settings (everything but the model, which the caller owns).

    Attributes:
        name: the site's name in the federate config.
        cfg: the run config with ``data.train`` set to this site's file.
        data: the site's splits; ``labels`` are the federation's (one list everywhere), so class ids agree.
        features: encoded splits.
        objective: the training objective (with FedProx's proximal term under strategy fedprox).
        privacy: the site's DP-SGD state when ``dp.enabled`` (its accountant lives across rounds).
        mixed_precision: Accelerate's name of the compute precision ("no": fp32, "bf16", "fp16"), as
            ``training.precision.resolve_precision`` chose it for this site's machine.
    """

    name: str
    cfg: RunConfig
    task: Task
    tokenizer: Any
    data: TaskData
    features: dict[str, Features]
    objective: nn.Module
    privacy: Any = None
    mixed_precision: str = "no"
    rounds_trained: int = field(default=0)

    @property
    def num_train(self) -> int:
        return len(self.features["train"])

    @property
    def held_out(self) -> str:
        """The split the global model is scored on at this site: test when there is one, else validation."""
        return "test" if "test" in self.features else "validation"

    def fit(
        self, model: nn.Module, epochs: int, device: torch.device, *, round_index: int = 0, num_rounds: int = 1
    ) -> dict[str, float]:
        """Train ``model`` in place for ``epochs`` passes over this site's training split.

        Args:
            model: the model, holding the global weights.
            epochs: local epochs this round.
            device: where to train.
            round_index: this round's index (0 for the first), for the learning-rate schedule.
            num_rounds: the federation's rounds: the schedule spans ``num_rounds * epochs`` epochs.

        Returns:
            ``train_loss`` (mean over the round's batches) and, under DP, ``epsilon`` spent so far.
        """
        train = self.features["train"]
        cfg = self.cfg.train
        sampler = EpochBatchSampler(
            train.lengths,
            cfg.batch_size,
            seed=cfg.seed,
            group_by_length=cfg.group_by_length,
            balance_labels=train.balance_labels,
            balance_tokens=cfg.balance_batch_tokens,
            length_multiple=cfg.pad_to_multiple_of,
        )
        if hasattr(self.objective, "anchor"):
            self.objective.anchor(model)  # FedProx: this round's global weights
        steps = len(sampler) * epochs
        round_index = min(max(round_index, 0), max(num_rounds - 1, 0))

        def schedule(optimizer: torch.optim.Optimizer) -> Any:
            return create_scheduler(optimizer, cfg, steps * max(num_rounds, 1), start_step=steps * round_index)

        if self.privacy is not None:
            return self.privacy.fit(self, model, sampler, epochs, device, schedule)
        optimizer = create_optimizer(model, cfg, extra=self.objective)
        scheduler = schedule(optimizer)
        scaler = torch.amp.GradScaler(device.type) if self.mixed_precision == "fp16" else None
        trained = [p for p in model.parameters() if p.requires_grad]
        losses: list[torch.Tensor] = []
        model.train()
        for epoch in range(epochs):
            sampler.set_epoch(self.rounds_trained * epochs + epoch)  # a new order every round
            for indices in sampler:
                batch = self.task.collate([train.items[i] for i in indices], self.tokenizer, train=True)
                batch = {k: v.to(device) for k, v in batch.items()}
                with autocast(device, self.mixed_precision):
                    out = self.objective(model, batch)
                # token-balanced batches vary in rows: weigh each example 1/batch_size, as the loop does
                loss = out["loss"] * (len(indices) / cfg.batch_size if sampler.balance_tokens else 1.0)
                (scaler.scale(loss) if scaler else loss).backward()
                if scaler:
                    scaler.unscale_(optimizer)  # clip the true gradients
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(trained, cfg.max_grad_norm)
                if scaler:
                    scaler.step(optimizer)  # skipped when fp16 overflowed; the scale shrinks
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(out["loss"].detach())
        self.rounds_trained += 1
        return {"train_loss": float(torch.stack(losses).mean()) if losses else float("nan")}

    def evaluate(self, model: nn.Module, device: torch.device, split: str | None = None) -> dict[str, Any]:
        """The task's metrics of ``model`` on one of this site's splits (default: :attr:`held_out`)."""
        cfg = self.cfg.train
        with autocast(device, self.mixed_precision):
            return evaluate(
                model,
                self.objective,
                self.features[split or self.held_out],
                self.task,
                self.tokenizer,
                self.data,
                cfg.eval_batch_size,
                device,
                max_tokens=cfg.eval_batch_tokens,
            )


def autocast(device: torch.device, mixed_precision: str) -> contextlib.AbstractContextManager[Any]:
    """torch's autocast for Accelerate's ``mixed_precision`` name ("no": none), as the training loop's
    prepared model runs its forward."""
    if mixed_precision not in ("bf16", "fp16"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if mixed_precision == "bf16" else torch.float16)


def site_config(cfg: RunConfig, data_file: str) -> RunConfig:
    """The run config of one site: ``cfg`` with ``data.train`` set to the site's file."""
    site_cfg = copy.deepcopy(cfg)
    site_cfg.data.train = data_file
    return site_cfg


def use_federation_labels(data: TaskData, labels: list[str], data_file: str) -> None:
    """Give a site's data the federation's label list, so class ids agree at every site and the server.

    Raises:
        DataError: the site's file holds a label the list lacks (naming the file and the labels).
    """
    unknown = sorted(set(data.labels) - set(labels))
    if unknown:
        raise DataError(
            f"label(s) {short_repr(unknown, 200)} are not among the federation's labels "
            f"{short_repr(list(labels), 300)}",
            path=data_file,
            fix="add them to labels: in the federate config (the server and every site use that one list), "
            "or correct the file.",
        )
    data.labels = list(labels)


def held_out_file(site: Site) -> str | None:
    """The file the site's held-out split was read from, or None when it was split off the site's own data."""
    path = getattr(site.cfg.data, site.held_out, None)
    return str(Path(path).resolve()) if path else None


def pooled_features(sites: list[Site]) -> Features:
    """The sites' held-out splits as one split (for the global score); window groups are renumbered.

    Sites whose held-out split is the same file (a shared test set, as in a benchmark) count it once: the
    scores are those of the file, and the server does not score the same examples once per site.
    """
    items: list[dict[str, Any]] = []
    lengths: list[int] = []
    groups: list[int] | None = []
    seen: set[str] = set()
    for site in sites:
        shared = held_out_file(site)
        if shared is not None and shared in seen:
            continue
        if shared is not None:
            seen.add(shared)
        part = site.features[site.held_out]
        if part.groups is None or groups is None:
            groups = None
        else:
            offset = max(groups, default=-1) + 1
            groups += [g + offset for g in part.groups]
        items += part.items
        lengths += part.lengths
    aggregation = sites[0].features[sites[0].held_out].aggregation
    return Features(items=items, lengths=lengths, groups=groups, aggregation=aggregation)
