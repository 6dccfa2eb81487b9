"""Multi-label metrics and per-label decision thresholds.

    probs = 1 / (1 + np.exp(-logits))                       # (n, labels)
    thresholds = tune_thresholds(probs, gold)              # each label's F1-best cut on validation
    metrics = multilabel_metrics(gold, probs >= thresholds, labels)

Scores (computed with numpy from per-label true/false positive counts; ``tests/test_multi_label.py``
checks them against scikit-learn): precision, recall and F1 averaged micro (pooled counts), macro (every
label equally), weighted (by support) and samples (per example, then averaged); Hamming loss (share of
wrong label decisions); subset accuracy (share of examples whose whole label set is right, what
``sklearn.metrics.accuracy_score`` computes for multi-label data); per-label scores and support.

Conventions: a label score with an empty denominator is 0 (as for single-label classification); an
example with no gold and no predicted labels scores 1 in the samples averages (it is exactly right), as
scikit-learn's ``zero_division=1`` does.

The names ``best_metric`` may pick are registered here (``hamming_loss`` is minimised).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from domainfit.metrics.classification import register_selection_metric

# Metrics at the per-label (tuned) thresholds keep the plain names; the same at the default threshold
# get this suffix, so the gain from tuning is visible side by side (and in TensorBoard).
DEFAULT_SUFFIX = "_default"
_AVERAGES = ("micro", "macro", "weighted", "samples")
_HEADLINE = ("f1_micro", "f1_macro", "f1_samples", "hamming_loss", "subset_accuracy")

for _name in ("hamming_loss", "subset_accuracy", "precision_samples", "recall_samples", "f1_samples"):
    register_selection_metric(_name, "min" if _name == "hamming_loss" else "max")
for _name in _HEADLINE:
    register_selection_metric(_name + DEFAULT_SUFFIX, "min" if _name == "hamming_loss" else "max")


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function in float32, stable for large |logits|."""
    return (0.5 * (1.0 + np.tanh(0.5 * logits.astype(np.float32)))).astype(np.float32)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(num.shape, empty), where=den > 0)


def multilabel_metrics(gold: np.ndarray, pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Score 0/1 label decisions against 0/1 gold labels.

    Args:
        gold: (n, num_labels) 0/1 gold labels.
        pred: (n, num_labels) 0/1 (or bool) predicted labels.
        labels: label names, column order.

    Returns:
        A JSON-serialisable dict: ``n``, ``{precision,recall,f1}_{micro,macro,weighted,samples}``,
        ``hamming_loss``, ``subset_accuracy`` (also as ``accuracy``, scikit-learn's name),
        ``per_class`` ({label: {precision, recall, f1, support, predicted}}) and ``labels``.
    """
    gold = np.asarray(gold).astype(bool)  # (n, L)
    pred = np.asarray(pred).astype(bool)  # (n, L)
    if gold.shape != pred.shape or gold.ndim != 2 or gold.shape[1] != len(labels):
        raise ValueError(f"gold {gold.shape} and pred {pred.shape} must both be (n, {len(labels)})")
    if gold.shape[0] == 0:
        raise ValueError("cannot score an empty set of predictions")
    tp = (gold & pred).sum(0)  # (L,)
    fp = (~gold & pred).sum(0)
    fn = (gold & ~pred).sum(0)
    support = gold.sum(0)
    precision, recall = _ratio(tp, tp + fp, 0.0), _ratio(tp, tp + fn, 0.0)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn, 0.0)
    result: dict = {"n": int(gold.shape[0])}
    weights = support / support.sum() if support.sum() else np.zeros(len(labels))
    scores = {
        "micro": (
            _ratio(tp.sum(), tp.sum() + fp.sum(), 0.0),
            _ratio(tp.sum(), tp.sum() + fn.sum(), 0.0),
            _ratio(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum(), 0.0),
        ),
        "macro": (precision.mean(), recall.mean(), f1.mean()),
        "weighted": ((precision * weights).sum(), (recall * weights).sum(), (f1 * weights).sum()),
    }
    tp_s, fp_s, fn_s = (gold & pred).sum(1), (~gold & pred).sum(1), (gold & ~pred).sum(1)  # (n,)
    scores["samples"] = (
        _ratio(tp_s, tp_s + fp_s, 1.0).mean(),
        _ratio(tp_s, tp_s + fn_s, 1.0).mean(),
        _ratio(2 * tp_s, 2 * tp_s + fp_s + fn_s, 1.0).mean(),
    )
    for average in _AVERAGES:
        p, r, f = scores[average]
        result[f"precision_{average}"], result[f"recall_{average}"], result[f"f1_{average}"] = (
            float(p),
            float(r),
            float(f),
        )
    result["hamming_loss"] = float((gold != pred).mean())
    result["subset_accuracy"] = float((gold == pred).all(1).mean())
    result["accuracy"] = result["subset_accuracy"]
    result["per_class"] = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": int(tp[i] + fp[i]),
        }
        for i, label in enumerate(labels)
    }
    result["labels"] = list(labels)
    return result


def threshold_grid(step: float) -> np.ndarray:
    """Candidate thresholds ``step, 2*step, ... < 1``, e.g. 0.05 ... 0.95 for step 0.05."""
    return np.round(np.arange(step, 1.0 - 1e-9, step), 6)


def tune_thresholds(
    probs: np.ndarray, gold: np.ndarray, *, step: float = 0.05, default: float = 0.5, min_positives: int = 5
) -> np.ndarray:
    """Per label, the threshold on the grid (see :func:`threshold_grid`) that maximises its F1.

    A label is predicted when its probability is >= its threshold. Ties go to the threshold nearest
    ``default``. A label with fewer than ``min_positives`` positive examples in ``gold``, or whose best F1 is
    0, keeps ``default``: a cut fitted to one or two validation positives does not generalise. (It is not a
    cure for validation/test shift: BENCHMARKS.md's NCBI multi-label case floods with a well-supported label.)

    Args:
        probs: (n, num_labels) predicted probabilities (validation split).
        gold: (n, num_labels) 0/1 gold labels.
        step: grid spacing.
        default: the untuned threshold.
        min_positives: fewest positives a label needs in ``gold`` to be tuned.

    Returns:
        (num_labels,) float thresholds.
    """
    gold = np.asarray(gold).astype(bool)  # (n, L)
    grid = threshold_grid(step)
    f1 = np.empty((len(grid), gold.shape[1]))  # (grid, L)
    for g, t in enumerate(grid):  # one (n, L) pass per candidate: memory stays O(n * L)
        pred = probs >= t
        tp = (gold & pred).sum(0)
        f1[g] = _ratio(2 * tp, tp + pred.sum(0) + gold.sum(0), 0.0)  # 2tp / (2tp + fp + fn)
    best = f1.max(0)  # (L,)
    # among the grid points within float noise of the best F1, the one nearest the default
    distance = np.where(f1 >= best - 1e-12, np.abs(grid - default)[:, None], np.inf)
    thresholds = grid[distance.argmin(0)].astype(np.float64)
    keep_default = (gold.sum(0) < max(1, min_positives)) | (best <= 0)
    thresholds[keep_default] = default
    return thresholds


def score_with_thresholds(
    probs: np.ndarray, gold: np.ndarray, labels: Sequence[str], thresholds: np.ndarray, default: float
) -> dict:
    """Metrics at ``thresholds`` plus the headline metrics at ``default`` (keys with ``_default``).

    ``per_class`` gains each label's ``threshold`` and its F1 at the default threshold (``f1_default``).
    """
    tuned = multilabel_metrics(gold, probs >= thresholds[None, :], labels)
    plain = multilabel_metrics(gold, probs >= default, labels)
    for key in _HEADLINE:
        tuned[key + DEFAULT_SUFFIX] = plain[key]
    tuned["default_threshold"] = float(default)
    for i, label in enumerate(labels):
        tuned["per_class"][label]["threshold"] = float(thresholds[i])
        tuned["per_class"][label]["f1_default"] = plain["per_class"][label]["f1"]
    return tuned
