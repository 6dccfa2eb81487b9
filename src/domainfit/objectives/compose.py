"""Build the training objective from the config: task loss -> optional R-Drop -> optional adversarial.

    domainfit train my.yaml regularization.objective=focal regularization.rdrop_alpha=1 regularization.adversarial=fgm

Each remedy is one config switch and they compose: the task loss (``regularization.objective``, with class
weights and label smoothing) is wrapped by every enabled regulariser of :data:`WRAPPER_ORDER`, innermost
first: R-Drop when ``rdrop_alpha > 0``, then an adversarial method when ``adversarial`` is not ``none``. Each
regulariser is a module that registers itself in :data:`~domainfit.objectives.base.WRAPPERS` with the part
of the ``regularization`` section it reads. A further wrapper (a joint MLM objective) wraps the result.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections import Counter
from typing import Any

import torch
from torch import nn

from domainfit.config import RunConfig, TaskLossConfig
from domainfit.errors import ConfigError
from domainfit.objectives import adversarial as _adversarial  # noqa: F401  (registers its wrapper)
from domainfit.objectives import rdrop as _rdrop  # noqa: F401  (registers its wrapper)
from domainfit.objectives.base import OBJECTIVES, WRAPPERS

log = logging.getLogger(__name__)

# The registered wrappers in the order they wrap, innermost first (a documented order, not registration order).
# R-Drop sits inside the adversarial method: every adversarial forward perturbs the embeddings of a whole R-Drop
# pass, so the consistency term is learned on perturbed inputs too.
WRAPPER_ORDER = ("rdrop", "adversarial")


def class_weights(reg: TaskLossConfig, train_labels: list[str], labels: list[str]) -> torch.Tensor | None:
    """Per-class weights in ``labels`` order, or None.

    "balanced" gives ``n / (k * count_c)`` (scikit-learn's ``compute_class_weight``): n training examples,
    k classes; a mapping gives each named label its weight and the others 1.
    """
    if reg.class_weights == "none":
        return None
    if reg.class_weights == "balanced":
        counts = Counter(train_labels)
        n, k = len(train_labels), len(labels)
        return torch.tensor([n / (k * counts[label]) if counts[label] else 1.0 for label in labels])
    unknown = sorted(set(reg.class_weights) - set(labels))
    if unknown:
        raise ConfigError(
            f"class weight for unknown label(s) {', '.join(map(repr, unknown))}",
            key=f"regularization.class_weights.{unknown[0]}",
            fix=f"use the training labels: {', '.join(labels)}.",
        )
    return torch.tensor([float(reg.class_weights.get(label, 1.0)) for label in labels])


def build_objective(cfg: RunConfig, train_labels: list[str], labels: list[str]) -> nn.Module:
    """The composed training objective for a classification task: task loss -> R-Drop -> adversarial.

    Args:
        cfg: the run config (``regularization`` section).
        train_labels: the label of every training example (for balanced class weights).
        labels: label names in model output order.
    """
    reg = cfg.regularization
    factory = OBJECTIVES.get(reg.objective, key="regularization.objective")
    options = {
        "class_weights": class_weights(reg, train_labels, labels),
        "label_smoothing": reg.label_smoothing,
        "gamma": reg.focal_gamma,
    }
    accepted = inspect.signature(factory).parameters
    objective = factory(**{k: v for k, v in options.items() if k in accepted})
    if options["class_weights"] is not None:
        log.info("class weights: %s", dict(zip(labels, [round(float(w), 3) for w in options["class_weights"]])))
    for name in WRAPPER_ORDER:
        wrapper = WRAPPERS.get(name)
        settings = settings_part(reg, wrapper.config)
        if wrapper.enabled(settings):
            objective = wrapper.create(objective, settings)
    return objective


def settings_part(section: Any, part: type) -> Any:
    """The fields of ``part`` (a dataclass that ``section``'s class inherits) copied out of ``section``: a
    wrapper sees only its own settings."""
    return part(**{f.name: getattr(section, f.name) for f in dataclasses.fields(part)})
