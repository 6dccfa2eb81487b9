"""Classification metrics, and the names a config may pick to choose the best checkpoint.

``classification_metrics`` turns gold and predicted class ids into one JSON-serialisable dict
(accuracy, macro/micro/weighted precision-recall-F1, per-class scores, confusion matrix) that the
trainer logs, saves and hands to :func:`domainfit.evaluation.report.write_report`.

``best_metric: f1_macro`` in a config is checked with :func:`metric_direction`, which knows whether
a bigger or a smaller value is better, and :func:`is_better` compares two evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from domainfit.registry import Registry

Direction = Literal["max", "min"]

_AVERAGES = ("macro", "micro", "weighted")

# Every scalar key of classification_metrics(), plus the evaluation loss.
METRIC_NAMES: tuple[str, ...] = (
    "accuracy",
    *(f"{score}_{average}" for average in _AVERAGES for score in ("precision", "recall", "f1")),
    "loss",
)

_SELECTION_METRICS: Registry[str] = Registry("selection metric")
for _name in METRIC_NAMES:
    _SELECTION_METRICS.register(_name, "min" if _name == "loss" else "max")


def register_selection_metric(name: str, direction: Direction) -> None:
    """Let ``best_metric`` name a metric that a task computes itself (e.g. an entity-level F1).

    Args:
        name: the key the task's evaluation dict will hold.
        direction: ``"max"`` if bigger is better, ``"min"`` if smaller is better.
    """
    if direction not in ("max", "min"):
        raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")
    _SELECTION_METRICS.register(name, direction)


def list_selection_metrics() -> list[str]:
    """Every name ``best_metric`` accepts, sorted (the built-in METRIC_NAMES plus registered ones)."""
    return _SELECTION_METRICS.names()


def metric_direction(name: str, *, key: str | None = None) -> Direction:
    """Whether a bigger (``"max"``) or smaller (``"min"``) value of metric ``name`` is better.

    Args:
        name: a selection metric name, e.g. ``"f1_macro"`` or ``"loss"``.
        key: the config key the name came from, quoted in the error.

    Raises:
        ConfigError: ``name`` is not a known metric; the message lists the valid names.
    """
    return _SELECTION_METRICS.get(name, key=key)  # type: ignore[return-value]


def is_better(name: str, new: float, old: float | None) -> bool:
    """Whether ``new`` beats ``old`` on metric ``name``; anything beats ``None`` (no evaluation yet).

    A NaN (e.g. the loss of a diverged run) never beats anything, and anything real beats a NaN.
    Ties are not better (the training loop breaks them on validation loss).
    """
    if math.isnan(new):
        return False
    if old is None or math.isnan(old):
        return True
    return new > old if metric_direction(name) == "max" else new < old


def improves_on_best(
    name: str, value: float, loss: float | None, best_value: float | None, best_loss: float | None
) -> bool:
    """Whether an evaluation (``value`` of metric ``name``, validation ``loss``) replaces the kept checkpoint.

    The first evaluation always does. A tie on the metric goes to the lower validation loss: on a small,
    easy validation set (270 defect images) several epochs reach the same accuracy, and the later, more
    confident one is the better model to ship.
    """
    if best_value is None or is_better(name, value, best_value):
        return True
    return value == best_value and loss is not None and is_better("loss", loss, best_loss)


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: list[str]) -> dict:
    """Score predicted class ids against gold ones.

    Every label is scored and has a confusion-matrix row and column, even one absent from both
    ``y_true`` and ``y_pred``; a score with an empty denominator is 0 (scikit-learn
    ``zero_division=0``).

    Args:
        y_true: gold class ids, each an index into ``labels``.
        y_pred: predicted class ids, same length.
        labels: class names; position ``i`` names class id ``i``.

    Returns:
        A JSON-serialisable dict: ``n``, ``accuracy``, ``{precision,recall,f1}_{macro,micro,weighted}``,
        ``per_class`` ({label: {precision, recall, f1, support}}), ``confusion_matrix`` (rows = true,
        columns = predicted, both in ``labels`` order) and ``labels``.
    """
    y_true = [int(y) for y in y_true]
    y_pred = [int(y) for y in y_pred]
    _check_inputs(y_true, y_pred, labels)
    # Counted with numpy rather than scikit-learn: importing sklearn.metrics (with scipy) costs a training
    # process 150 MB resident, an eighth of the 1.2 GB budget. tests/test_metrics.py checks every number
    # against scikit-learn's precision_recall_fscore_support(zero_division=0) and confusion_matrix.
    k = len(labels)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    scores = confusion_scores(matrix)
    precision, recall, f1, support = (scores[name] for name in ("precision", "recall", "f1", "support"))
    accuracy = float(scores["accuracy"])

    result: dict = {"n": len(y_true), "accuracy": accuracy}
    weights = support / support.sum()
    for name, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
        result[f"{name}_macro"] = float(per_class.mean())
        result[f"{name}_micro"] = accuracy  # single-label, every class counted: micro P = R = F1 = accuracy
        result[f"{name}_weighted"] = float((per_class * weights).sum())
    result["per_class"] = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    result["confusion_matrix"] = matrix.tolist()
    result["labels"] = list(labels)
    return result


def confusion_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` and ``support`` (each ``(..., k)``) and ``accuracy``
    (``(...)``) of confusion matrices ``(..., k, k)`` (rows = gold, columns = predicted): one matrix, or a stack
    of them (a bootstrap's resamples). A score with an empty denominator is 0 (scikit-learn ``zero_division=0``).
    """
    tp = np.diagonal(matrix, axis1=-2, axis2=-1).astype(np.float64)  # (..., k)
    support = matrix.sum(axis=-1)  # (..., k): gold count per class
    predicted = matrix.sum(axis=-2)  # (..., k)
    return {
        "precision": _ratio(tp, predicted),
        "recall": _ratio(tp, support),
        "f1": _ratio(2 * tp, support + predicted),  # = 2PR/(P+R), and 0 where both are 0
        "support": support,
        "accuracy": tp.sum(axis=-1) / support.sum(axis=-1),
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _check_inputs(y_true: list[int], y_pred: list[int], labels: list[str]) -> None:
    # These come from our own pipeline, not straight from a user's file, so a failure is a bug:
    # ValueError with the numbers needed to find it.
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    if not y_true:
        raise ValueError("cannot score an empty set of predictions")
    if not labels:
        raise ValueError("labels is empty")
    if len(set(labels)) != len(labels):
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        raise ValueError(f"labels must be unique; repeated: {duplicates}")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        bad = sorted({y for y in values if not 0 <= y < len(labels)})
        if bad:
            raise ValueError(f"{name} holds class ids {bad[:10]} outside 0..{len(labels) - 1} ({len(labels)} labels)")
