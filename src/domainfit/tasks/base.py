"""The task interface: everything the training loop needs to know about *what* is being learned.

A task reads and checks its data, builds the model and tokenizer, turns examples into features, pads
features into batches, names its objective, scores predictions, and writes the shippable model folder.
The loop (``domainfit.training.loop``) is task-agnostic; a new task is one module plus ``TASKS.register``.

A task owns its config contract: it declares which optional sections (``peft``, ``augment``, ...) and which
``regularization.objective`` values it uses, and :meth:`Task.check_config` refuses any other option that a
config sets, naming the key, so nothing a user writes is silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from domainfit.config import RunConfig
from domainfit.errors import ConfigError
from domainfit.metrics.classification import metric_direction
from domainfit.registry import Registry

# Config sections a task may or may not use; a task lists the ones it reads in ``Task.sections``.
OPTIONAL_SECTIONS = (
    "augment",
    "peft",
    "regularization",
    "joint",
    "multi_label",
    "ner",
    "image",
    "generation",
    "evaluation",
)


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
    slices: list[str] | None = None  # each example's group (evaluation.group_column), for per-group scores

    def __len__(self) -> int:
        return len(self.items)


class Task:
    """Base class of every task: the required steps raise NotImplementedError, the optional hooks do nothing.

    Class attributes declare the contract :meth:`check_config` enforces:
        sections: optional config sections the task reads (others must stay at their defaults).
        objectives: the ``regularization.objective`` values it trains with (empty: the setting is not used).
        long_text_windows: whether ``model.long_text: windows`` is implemented.
        word_embeddings: whether the model has word embeddings (``model.freeze_embeddings``).
        calibrates: whether :meth:`calibrate` fits anything (the loop then scores validation once more).
    """

    name: ClassVar[str] = ""
    sections: ClassVar[frozenset[str]] = frozenset()
    objectives: ClassVar[tuple[str, ...]] = ()
    long_text_windows: ClassVar[bool] = False
    word_embeddings: ClassVar[bool] = True
    calibrates: ClassVar[bool] = False  # the loop calls calibrate() with the best weights' validation logits

    # -- the contract ------------------------------------------------------------------------------------
    def check_config(self, cfg: RunConfig, source: Path | None = None) -> None:
        """Refuse options this task would ignore (each message names the key); then :meth:`check_own_config`."""
        for section in OPTIONAL_SECTIONS:
            if section in self.sections:
                continue
            changed = changed_fields(getattr(cfg, section))
            if changed:
                users = [n for n in TASKS.names() if section in TASKS.get(n).sections]
                raise ConfigError(
                    f"task {self.name!r} does not use the {section} section, so this setting would be ignored",
                    path=source,
                    key=f"{section}.{changed[0]}",
                    fix=f"remove the {section} section (it works with task: {', '.join(users) or '-'}).",
                )
        if cfg.model.long_text == "windows" and not self.long_text_windows:
            raise ConfigError(
                f"task {self.name!r} does not window long texts",
                path=source,
                key="model.long_text",
                fix="set model.long_text: truncate.",
            )
        if cfg.model.freeze_embeddings and not self.word_embeddings:
            raise ConfigError(
                f"a {self.name} model has no word embeddings to freeze",
                path=source,
                key="model.freeze_embeddings",
                fix="remove model.freeze_embeddings (it is for text models).",
            )
        try:
            metric_direction(cfg.train.best_metric, key="train.best_metric")
        except ConfigError as e:
            raise ConfigError(e.what, path=source, key="train.best_metric", fix=e.fix) from e
        self.check_own_config(cfg, source)

    def check_own_config(self, cfg: RunConfig, source: Path | None = None) -> None:
        """Task-specific cross-field checks (override)."""

    # -- required steps ----------------------------------------------------------------------------------
    def load_data(self, cfg: RunConfig) -> TaskData:
        """Read, validate and split the data. Must fail here, before any model is loaded."""
        raise NotImplementedError

    def build(self, cfg: RunConfig, data: TaskData) -> tuple[nn.Module, Any]:
        """Return (model, tokenizer) ready to train."""
        raise NotImplementedError

    def encode(self, examples: list[Any], tokenizer: Any, cfg: RunConfig, data: TaskData) -> Features:
        """Tokenise once; the loop batches the result every epoch."""
        raise NotImplementedError

    def collate(self, items: list[dict[str, Any]], tokenizer: Any, *, train: bool = False) -> dict[str, torch.Tensor]:
        """Pad a list of feature dicts into a batch of tensors (``train``: training batch, may augment)."""
        raise NotImplementedError

    def create_objective(self, cfg: RunConfig, data: TaskData) -> nn.Module:
        """The training objective (returns ``{"loss", "logits", ...}``)."""
        raise NotImplementedError

    def compute_metrics(self, logits: torch.Tensor, labels: torch.Tensor, data: TaskData) -> dict[str, Any]:
        """Score predictions against labels for one split."""
        raise NotImplementedError

    def save(self, model: nn.Module, tokenizer: Any, cfg: RunConfig, data: TaskData, out_dir: Path) -> None:
        """Write a standard, shippable model folder."""
        raise NotImplementedError

    # -- optional hooks (defaults do nothing) -----------------------------------------------------------
    def compute_feature_metrics(
        self, features: Features, logits: torch.Tensor, labels: torch.Tensor, data: TaskData
    ) -> dict[str, Any]:
        """Metrics from the split's Features; tasks whose items are pieces of examples (windows) override."""
        return self.compute_metrics(logits, labels, data)

    def on_run_start(self, out_dir: Path, features: dict[str, Features]) -> None:
        """Called once the run folder exists, to write what shows how inputs are prepared."""

    def calibrate(self, logits: torch.Tensor, labels: torch.Tensor, data: TaskData) -> None:
        """Fit decision settings (multi-label thresholds) on the best weights' validation predictions."""

    def final_metrics(
        self,
        model: nn.Module,
        tokenizer: Any,
        data: TaskData,
        features: dict[str, Features],
        cfg: RunConfig,
        *,
        objective: nn.Module,
        device: torch.device,
        evaluate: Any,
        map_over_processes: Any,
    ) -> dict[str, dict[str, Any]]:
        """Scores that need the trained model, merged into metrics.json per split (``evaluate`` scores a
        split as the loop does: ``evaluate(model, objective, features)``; ``map_over_processes(function,
        items, block=n)`` is ``function(items)`` with the items shared between the training processes, for
        per-item work such as generation: ``domainfit.training.distributed.map_over_processes``)."""
        return {}


def changed_fields(section: Any) -> list[str]:
    """Dotted names of the fields of a config section that differ from the section's defaults."""
    default = type(section)()
    changed = []
    for f in dataclasses.fields(section):
        value, base = getattr(section, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            changed += [f"{f.name}.{name}" for name in changed_fields(value)]
        elif value != base:
            changed.append(f.name)
    return changed


TASKS: Registry = Registry("task")


def create_task(name: str) -> Task:
    """Instantiate a registered task by name."""
    return TASKS.get(name, key="task")()
