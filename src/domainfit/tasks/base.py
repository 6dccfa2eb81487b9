"""The task interface: everything the training loop needs to know about *what* is being learned.

A task reads and checks its data, builds the model and tokenizer, turns examples into features, pads
features into batches, names its objective, scores predictions, and writes the shippable model folder.
The loop (``domainfit.training.loop``) is task-agnostic; a new task is one module plus ``TASKS.register``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from domainfit.config import RunConfig
from domainfit.registry import Registry


@dataclass
class TaskData:
    """Checked, split data plus what must travel with the model (label names)."""

    splits: dict[str, list[Any]]  # "train", "validation", maybe "test"
    labels: list[str]
    info: dict[str, Any] = field(default_factory=dict)  # provenance for the report: files, dedup counts


@dataclass
class Features:
    """Encoded examples of one split, ready to batch."""

    items: list[dict[str, Any]]
    lengths: list[int]
    # Long documents cut into windows: the document index of every item, and how the loop turns window
    # logits into document logits before scoring ("mean" or "max"; see domainfit.data.windows).
    groups: list[int] | None = None
    aggregation: str = "mean"
    balance_labels: list[int] | None = None  # class ids, when the training sampler should oversample rare classes

    def __len__(self) -> int:
        return len(self.items)


class Task(Protocol):
    name: str

    def load_data(self, cfg: RunConfig) -> TaskData:
        """Read, validate and split the data. Must fail here, before any model is loaded."""

    def build(self, cfg: RunConfig, data: TaskData) -> tuple[nn.Module, Any]:
        """Return (model, tokenizer) ready to train."""

    def encode(self, examples: list[Any], tokenizer: Any, cfg: RunConfig, data: TaskData) -> Features:
        """Tokenise once; the loop batches the result every epoch."""

    def collate(self, items: list[dict[str, Any]], tokenizer: Any, *, train: bool = False) -> dict[str, torch.Tensor]:
        """Pad a list of feature dicts into a batch of tensors (``train``: training batch, may augment)."""

    def create_objective(self, cfg: RunConfig, data: TaskData) -> nn.Module:
        """The training objective (returns ``{"loss", "logits", ...}``)."""

    def compute_metrics(self, logits: torch.Tensor, labels: torch.Tensor, data: TaskData) -> dict[str, Any]:
        """Score predictions against labels for one split."""

    def save(self, model: nn.Module, tokenizer: Any, cfg: RunConfig, data: TaskData, out_dir: Path) -> None:
        """Write a standard, shippable model folder."""

    # Optional: ``compute_feature_metrics(features, logits, labels, data)``, called instead of compute_metrics
    # with the split's Features, for tasks whose items are pieces of examples (token classification's windows).
    # Optional: ``on_run_start(out_dir, features)``, called once the run folder exists, to write what shows
    # how inputs are prepared (e.g. augment_samples.txt).
    # Optional: ``write_report(out_dir, metrics, **kw)`` with the signature of
    # ``domainfit.evaluation.report.write_report``, for tasks whose metrics are not a confusion matrix.
    # Optional: ``calibrate(logits, labels, data)``, called once with the best weights' validation
    # predictions before the final validation and test scores and ``save`` (multi-label thresholds).
    # Optional: ``write_model_card(model_dir, *, cfg, results, labels)`` and ``format_metrics(metrics) -> str``
    # likewise replace the classification model card and terminal table.
    # Optional: ``final_metrics(model, tokenizer, data, features, cfg, *, objective, device) -> {split: {...}}``,
    # called once after the best weights are loaded and scored; its dicts are merged into metrics.json (the
    # generation task adds the base model's perplexity and ROUGE-L of greedy generations here).


TASKS: Registry = Registry("task")


def create_task(name: str) -> Task:
    """Instantiate a registered task by name."""
    return TASKS.get(name, key="task")()
