"""How a finished run is presented, per task: report.md and report.html, the model card, the terminal table.

Tasks sit below this layer and know nothing of reports; each report module registers a :class:`RunReport`
under the task names it presents (``REPORTS.register("token-classification", RunReport(...))``), and the
training loop asks :func:`report_for`. A task without a registration gets the single-label classification
report (scores, per-class table, confusion matrix).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainfit.evaluation.html_report import write_html_report
from domainfit.evaluation.model_card import write_model_card
from domainfit.evaluation.report import format_metrics_table, write_report
from domainfit.registry import Registry


def _classification_report(task: Any, out_dir: Path, metrics: dict, **kwargs: Any) -> Path:  # noqa: ARG001
    path = write_report(out_dir, metrics, **kwargs)
    write_html_report(out_dir, metrics, **kwargs)  # report.html beside it, from the same data
    return path


@dataclass(frozen=True)
class RunReport:
    """The three ways a task's results are shown.

    Attributes:
        write_report: ``(task, out_dir, metrics, **kwargs) -> report path``; kwargs as
            :func:`domainfit.evaluation.report.write_report` takes them (title, split_name, context, history, ...).
        write_model_card: ``(model_dir, *, cfg, results, labels)``: README.md inside the shipped folder.
        format_metrics: ``metrics -> str``: the table printed at the end of a run.
    """

    write_report: Callable[..., Path] = _classification_report
    write_model_card: Callable[..., None] = write_model_card
    format_metrics: Callable[[dict], str] = format_metrics_table


REPORTS: Registry = Registry("report")


def run_report_arguments(cfg: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments a training run's report is written with (:attr:`RunReport.write_report`).

    One builder for both writers of a run's report.md and report.html: the training loop, as it finishes the
    run, and ``domainfit stress``, which writes them again from the run's config.yaml and metrics.json (with a
    robustness section); so the two cannot drift apart.

    Args:
        cfg: the resolved run config as plain dicts (``domainfit.config.to_dict``: what config.yaml holds).
        results: the run's results (what metrics.json holds): ``best``, ``history``, ``train``, ``warnings``,
            and ``test`` or ``validation``.

    Returns:
        ``title``, ``split_name``, ``context``, ``history``, ``best_metric`` and ``warnings``.
    """
    best = results.get("best")
    return {
        "title": f"domainfit {cfg['task']}: {Path(cfg['output']['dir']).name}",
        "split_name": "test" if "test" in results else "validation",
        "context": {
            "model": cfg["model"]["name"],
            "train data": cfg["data"]["train"],
            "best checkpoint": f"step {best['step']} (epoch {best['epoch']})" if best else "final",
            "selected by": f"validation {cfg['train']['best_metric']}",
            "train samples/s": results["train"]["samples_per_second"],
        },
        "history": results["history"],
        "best_metric": cfg["train"]["best_metric"],
        "warnings": results["warnings"],
    }
