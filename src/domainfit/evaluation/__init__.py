"""Scoring predictions and reporting them: metrics a config can select on, and a readable report."""

# each imported for its REPORTS (or report.html section) registration
from domainfit.evaluation import (  # noqa: E402,F401,I001
    calibration_report,
    comparison_report,
    generation_report,
    image_report,
    multilabel_report,
    ner_report,
)
from domainfit.evaluation.report import format_metrics_table, write_report
from domainfit.evaluation.reports import REPORTS, RunReport, run_report_arguments
from domainfit.metrics.classification import (
    METRIC_NAMES,
    classification_metrics,
    is_better,
    list_selection_metrics,
    metric_direction,
    register_selection_metric,
)


def report_for(task_name: str) -> RunReport:
    """The registered presentation of ``task_name``'s runs (report.md, model card, terminal table);
    single-label classification's by default."""
    return REPORTS.get(task_name) if task_name in REPORTS else RunReport()


__all__ = [
    "METRIC_NAMES",
    "classification_metrics",
    "format_metrics_table",
    "is_better",
    "list_selection_metrics",
    "metric_direction",
    "register_selection_metric",
    "report_for",
    "run_report_arguments",
    "write_report",
]
