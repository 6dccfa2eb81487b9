"""Scoring predictions and reporting them: metrics a config can select on, and a readable report."""

from domainfit.evaluation.metrics import (
    METRIC_NAMES,
    classification_metrics,
    is_better,
    list_selection_metrics,
    metric_direction,
    register_selection_metric,
)
from domainfit.evaluation.report import format_metrics_table, write_report

__all__ = [
    "METRIC_NAMES",
    "classification_metrics",
    "format_metrics_table",
    "is_better",
    "list_selection_metrics",
    "metric_direction",
    "register_selection_metric",
    "write_report",
]
