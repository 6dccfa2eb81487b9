"""Every score per group of the data (hospital, region, sex, age band), and the gaps between groups.

Built on fairlearn's ``MetricFrame`` (Weerts et al. 2023, "Fairlearn: Assessing and Improving Fairness of AI
Systems", JMLR), which computes each metric on each group's rows and the between-group differences and ratios.
A metric whose largest gap exceeds ``max_gap`` is flagged, so a model that is good on average but poor for one
hospital does not ship unnoticed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from domainfit.errors import MissingExtraError


def import_metric_frame() -> Any:
    """``fairlearn.metrics.MetricFrame``, or a MissingExtraError that names the extra to install."""
    try:
        from fairlearn.metrics import MetricFrame
    except ImportError as e:
        raise MissingExtraError(
            "group slices (evaluation.group_column, --group-column) need fairlearn, which is not installed",
            fix='pip install "domainfit[trust]"',
        ) from e
    return MetricFrame


def _metrics(num_labels: int) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    every = list(range(num_labels))

    def macro(score: Any) -> Any:
        return lambda y, p: score(y, p, labels=every, average="macro", zero_division=0)

    return {
        "accuracy": accuracy_score,
        "f1_macro": macro(f1_score),
        "precision_macro": macro(precision_score),
        "recall_macro": macro(recall_score),
        "count": lambda y, p: len(y),
    }


def group_metrics(
    gold: Sequence[int], predicted: Sequence[int], groups: Sequence[str], num_labels: int, *, max_gap: float
) -> dict[str, Any]:
    """Scores per group, and per score the largest gap and ratio between groups.

    Args:
        gold: gold class ids.
        predicted: predicted class ids.
        groups: each example's group value (same order).
        num_labels: number of classes (macro averages run over all of them).
        max_gap: a score whose largest between-group difference exceeds this is flagged.

    Returns:
        ``{"groups": {group: {score: value, "count": n}}, "gaps": {score: {"difference", "ratio", "lowest",
        "highest", "flagged"}}, "max_gap": max_gap, "flagged": [score, ...]}``.
    """
    metric_frame = import_metric_frame()
    y_true, y_pred = np.asarray(gold), np.asarray(predicted)
    frame = metric_frame(
        metrics=_metrics(num_labels),
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=np.asarray([str(g) for g in groups], dtype=object),
    )
    by_group = frame.by_group
    per_group = {
        str(g): {name: (int(v) if name == "count" else float(v)) for name, v in row.items()}
        for g, row in by_group.iterrows()
    }
    differences, ratios = frame.difference(method="between_groups"), frame.ratio(method="between_groups")
    gaps, flagged = {}, []
    for name in by_group.columns:
        if name == "count":
            continue
        column = by_group[name]
        difference = float(differences[name])
        gaps[name] = {
            "difference": difference,
            "ratio": float(ratios[name]),
            "lowest": str(column.idxmin()),
            "highest": str(column.idxmax()),
            "flagged": difference > max_gap,
        }
        if difference > max_gap:
            flagged.append(name)
    return {"groups": per_group, "gaps": gaps, "max_gap": max_gap, "flagged": flagged}
