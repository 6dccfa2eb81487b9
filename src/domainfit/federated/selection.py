"""Which round's global model a federation keeps: the best on the sites' validation splits, as ``domainfit
train`` keeps its best epoch.

Each site scores the global model on its validation split after every round (``federated/apps.py``: the
evaluate reply carries ``val_<metric>`` and ``val-examples`` beside the held-out scores); the server weighs the
sites' ``val_<train.best_metric>`` by their validation examples and keeps the round that improves on the best so
far (``metrics.classification.improves_on_best``: a tie goes to the lower validation loss). The held-out
(test) scores never choose. When some site has no validation split apart from its held-out one, nothing is
chosen and the last round's model is kept, as before.

This is server-side state only, the same in the simulation and in a deployment: the server holds the chosen
round's exchanged arrays (the trained weights: LoRA and head under ``peft.method: lora``), not the sites' data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domainfit.errors import ConfigError, short_repr
from domainfit.metrics.classification import improves_on_best

VAL_PREFIX = "val_"
VAL_WEIGHT_KEY = "val-examples"


def validation_metrics(metrics: dict[str, float], num_examples: int) -> dict[str, float]:
    """A site's validation scores as its evaluate reply carries them: ``val_<name>`` and ``val-examples``."""
    return {VAL_WEIGHT_KEY: float(num_examples), **{VAL_PREFIX + k: v for k, v in metrics.items()}}


@dataclass
class RoundSelection:
    """The best round so far on the sites' weighted validation score of ``metric``.

    Attributes:
        metric: the metric that chooses (``train.best_metric``; ``loss`` is minimised, others maximised).
        round: the chosen round (None until a round with every site's validation scores was seen).
        arrays: the chosen round's exchanged arrays (a Flower ``ArrayRecord``).
        validation: per round, the sites' validation metrics weighted by their validation examples.
        unavailable: why nothing can be chosen (a site reported no validation scores), else None.
    """

    metric: str
    round: int | None = None
    arrays: Any = None
    value: float | None = None
    loss: float | None = None
    validation: dict[int, dict[str, float]] = field(default_factory=dict)
    unavailable: str | None = None

    def observe(self, server_round: int, per_site: dict[str, dict[str, float]], arrays: Any) -> bool:
        """Weigh round ``server_round``'s validation scores (``per_site``: each site's evaluate metrics) and keep
        ``arrays`` when they improve on the best. Returns whether they did.

        Raises:
            ConfigError: ``metric`` is not among the scores the sites report.
        """
        if server_round < 1 or not per_site or self.unavailable:
            return False
        missing = sorted(name for name, m in per_site.items() if VAL_WEIGHT_KEY not in m)
        if missing:
            self.unavailable = f"site(s) {', '.join(missing)} have no validation split apart from the held-out one"
            return False
        total = sum(m[VAL_WEIGHT_KEY] for m in per_site.values())
        names = set.intersection(*(set(k for k in m if k.startswith(VAL_PREFIX)) for m in per_site.values()))
        weighted = {
            k[len(VAL_PREFIX) :]: sum(m[k] * m[VAL_WEIGHT_KEY] for m in per_site.values()) / max(total, 1.0)
            for k in sorted(names)
        }
        self.validation[server_round] = weighted
        if self.metric not in weighted:
            raise ConfigError(
                f"train.best_metric {self.metric!r} is not among the validation metrics the sites report "
                f"({short_repr(sorted(weighted), 200)})",
                key="train.best_metric",
                fix="set train.best_metric in the run config to one of them.",
            )
        value, loss = weighted[self.metric], weighted.get("loss")
        if not improves_on_best(self.metric, value, loss, self.value, self.loss):
            return False
        self.round, self.arrays, self.value, self.loss = server_round, arrays, value, loss
        return True

    def summary(self, last_round: int) -> dict[str, Any]:
        """metrics.json's ``selection`` entry: the kept round and why."""
        if self.round is None:
            return {
                "kept_round": last_round,
                "by": "last round",
                "why": self.unavailable or "no round was scored on validation",
            }
        return {
            "kept_round": self.round,
            "by": f"validation {self.metric} (the sites' scores, weighted by their validation examples)",
            "metric": self.metric,
            "value": self.value,
        }
