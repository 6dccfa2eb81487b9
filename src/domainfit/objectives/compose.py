"""Build the training objective from the config: task loss -> optional R-Drop -> optional adversarial.

    domainfit train my.yaml regularization.objective=focal regularization.rdrop_alpha=1 regularization.adversarial=fgm

Each remedy is one config switch and they compose: the task loss (``regularization.objective``, with class
weights and label smoothing) is wrapped by R-Drop when ``rdrop_alpha > 0``, and that by an adversarial
method when ``adversarial`` is not ``none``. A further wrapper (a joint MLM objective) wraps the result.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter

import torch
from torch import nn

from domainfit.config import RegularizationConfig, RunConfig
from domainfit.errors import ConfigError
from domainfit.objectives.adversarial import ADVERSARIAL
from domainfit.objectives.base import OBJECTIVES
from domainfit.objectives.rdrop import RDropObjective

log = logging.getLogger(__name__)


def class_weights(reg: RegularizationConfig, train_labels: list[str], labels: list[str]) -> torch.Tensor | None:
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
        raise ConfigError(f"class weight for unknown label(s) {', '.join(map(repr, unknown))}",
                          key=f"regularization.class_weights.{unknown[0]}",
                          fix=f"use the training labels: {', '.join(labels)}.")
    return torch.tensor([float(reg.class_weights.get(label, 1.0)) for label in labels])


def build_objective(cfg: RunConfig, train_labels: list[str], labels: list[str]) -> nn.Module:
    """The composed training objective for a classification task.

    Args:
        cfg: the run config (``regularization`` section).
        train_labels: the label of every training example (for balanced class weights).
        labels: label names in model output order.
    """
    reg = cfg.regularization
    factory = OBJECTIVES.get(reg.objective, key="regularization.objective")
    options = {"class_weights": class_weights(reg, train_labels, labels), "label_smoothing": reg.label_smoothing,
               "gamma": reg.focal_gamma}
    accepted = inspect.signature(factory).parameters
    objective = factory(**{k: v for k, v in options.items() if k in accepted})
    if options["class_weights"] is not None:
        log.info("class weights: %s", dict(zip(labels, [round(float(w), 3) for w in options["class_weights"]])))
    if reg.rdrop_alpha > 0:
        objective = RDropObjective(objective, alpha=reg.rdrop_alpha)
    if reg.adversarial != "none":
        method = ADVERSARIAL.get(reg.adversarial, key="regularization.adversarial")
        objective = method(objective, epsilon=reg.adv_epsilon, alpha=reg.adv_alpha, steps=reg.adv_steps)
    return objective
