"""Calibration, abstention and group slices of a single-label classifier, shared by the text and image tasks.

The loop hands the best weights' validation logits to ``Task.calibrate``; a task that owns a
:class:`ClassifierTrust` passes them to :meth:`ClassifierTrust.fit`, which fits the temperature (Guo et al.
2017) and, for ``evaluation.target_accuracy``, the abstention threshold. Every later evaluation (validation
and test in ``metrics.json``) then reports the calibration error before and after scaling, the risk-coverage
curve, the threshold's coverage and accuracy, and, with ``evaluation.group_column``, every score per group.
What predict and serve need (``temperature``, ``min_confidence``) goes into ``domainfit.json`` through
:meth:`ClassifierTrust.model_settings`.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from domainfit.config import EvaluationConfig
from domainfit.data.windows import aggregate_by_group, group_labels
from domainfit.metrics.calibration import (
    ECE_BINS,
    choose_min_confidence,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    risk_coverage,
    selective_scores,
    softmax,
)
from domainfit.metrics.slices import group_metrics

log = logging.getLogger(__name__)


class ClassifierTrust:
    """What a single-label classifier learns on validation about trusting its own outputs.

    Attributes:
        settings: the run's ``evaluation`` section.
        temperature: the fitted temperature; None until :meth:`fit` ran (1.0 with temperature scaling off).
        min_confidence: the abstention threshold chosen for ``target_accuracy`` (None: always answer).
        fitted: the validation figures of the fit, for metrics.json and the report.
    """

    def __init__(self, settings: EvaluationConfig | None = None) -> None:
        self.settings = settings or EvaluationConfig()
        self.temperature: float | None = None
        self.min_confidence: float | None = None
        self.fitted: dict[str, Any] = {}
        self._windows: tuple[list[int], str] | None = None  # validation items that are windows of documents

    def remember_validation(self, features: Any) -> None:
        """Keep how validation items map to documents: ``calibrate`` receives per-item (window) logits."""
        if features is not None and features.groups is not None:
            self._windows = (features.groups, features.aggregation)

    def fit(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Fit the temperature and abstention threshold on validation logits (n, num_labels), labels (n,)."""
        if self._windows is not None and len(logits) == len(self._windows[0]):
            groups, how = self._windows
            logits, labels = aggregate_by_group(logits, groups, how), group_labels(labels, groups)
        z, y = logits.double().numpy(), labels.numpy()
        self.temperature = fit_temperature(z, y) if self.settings.temperature_scaling else 1.0
        probabilities = softmax(z, self.temperature)
        self.fitted = {
            "temperature": self.temperature,
            "fitted_on": "validation",
            "n": len(y),
            "nll_before": negative_log_likelihood(z, y),
            "nll_after": negative_log_likelihood(z, y, self.temperature),
            "ece_before": expected_calibration_error(softmax(z), y),
            "ece_after": expected_calibration_error(probabilities, y),
        }
        target = self.settings.target_accuracy
        if target is not None:
            self.min_confidence = choose_min_confidence(probabilities, y, target)
            chosen = {"target_accuracy": target, "min_confidence": self.min_confidence}
            if self.min_confidence is None:
                log.warning(
                    "evaluation.target_accuracy %.3f is not reached on validation at any confidence: "
                    "predict and serve will answer every input",
                    target,
                )
                chosen["reached"] = False
            else:
                chosen.update(reached=True, **selective_scores(probabilities, y, self.min_confidence))
            self.fitted["abstention"] = chosen
        log.info(
            "calibration on validation: temperature %.3f, ECE %.4f -> %.4f",
            self.temperature,
            self.fitted["ece_before"],
            self.fitted["ece_after"],
        )
        return self.fitted

    def metrics(
        self, logits: torch.Tensor, labels: torch.Tensor, slices: list[str] | None, num_labels: int
    ) -> dict[str, Any]:
        """Calibration (and, once fitted, abstention and the curve) and group scores of one split."""
        z, y = logits.double().numpy(), labels.numpy()
        raw = softmax(z)
        out: dict[str, Any] = {"ece": expected_calibration_error(raw, y)}
        if self.temperature is not None:
            scaled = softmax(z, self.temperature)
            out["ece_calibrated"] = expected_calibration_error(scaled, y)
            out["temperature"] = self.temperature
            out["calibration"] = {
                "bins": ECE_BINS,
                "reliability_before": reliability_bins(raw, y),
                "reliability_after": reliability_bins(scaled, y),
            }
            out["risk_coverage"] = risk_coverage(scaled, y)
            if "abstention" in self.fitted:
                chosen = self.fitted["abstention"]
                out["abstention"] = {
                    "target_accuracy": chosen["target_accuracy"],
                    "min_confidence": self.min_confidence,
                    "validation": chosen,
                }
                if self.min_confidence is not None:
                    out["abstention"].update(selective_scores(scaled, y, self.min_confidence))
        if slices is not None and len(slices) == len(y):
            out["slices"] = group_metrics(
                y.tolist(), z.argmax(axis=1).tolist(), slices, num_labels, max_gap=self.settings.max_gap
            )
            out["slices"]["column"] = self.settings.group_column
        return out

    def model_settings(self) -> dict[str, Any]:
        """The keys predict and serve read from ``domainfit.json``."""
        if self.temperature is None:
            return {}
        fitted = {k: v for k, v in self.fitted.items() if k != "abstention"}
        settings: dict[str, Any] = {"temperature": self.temperature, "calibration": fitted}
        if self.settings.target_accuracy is not None:
            settings["min_confidence"] = self.min_confidence
            settings["target_accuracy"] = self.settings.target_accuracy
        return settings


def check_evaluation_config(cfg: Any, source: Any = None, *, groups_supported: bool = True) -> None:
    """Refuse an ``evaluation`` section the run cannot honour, before any data or model is loaded."""
    from domainfit.errors import ConfigError, MissingExtraError
    from domainfit.metrics.slices import import_metric_frame

    column = cfg.evaluation.group_column
    if column is None:
        return
    if not groups_supported:
        raise ConfigError(
            f"task {cfg.task!r} does not read a group column from its data yet",
            path=source,
            key="evaluation.group_column",
            fix="remove evaluation.group_column (group slices work with task: text-classification).",
        )
    if cfg.data.format == "delimited":
        raise ConfigError(
            "a `text<separator>label` file has no group column",
            path=source,
            key="evaluation.group_column",
            fix="convert the data to CSV/JSON Lines with a group column, or remove evaluation.group_column.",
        )
    if column in (str(cfg.data.text_column), str(cfg.data.label_column)):
        raise ConfigError(
            f"the group column {column!r} is also the text or label column",
            path=source,
            key="evaluation.group_column",
            fix="name the column that holds each record's group (hospital, region, ...).",
        )
    try:
        import_metric_frame()
    except MissingExtraError as e:
        raise MissingExtraError(e.what, path=source, key="evaluation.group_column", fix=e.fix) from e
