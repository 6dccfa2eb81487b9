"""Is model A really better than model B on this test set? A paired bootstrap of the difference.

Two classifiers scored on the same labelled file differ by a point of macro-F1; on 484 sentences that is four or
five of them. :func:`paired_bootstrap` resamples the examples with replacement (the same resample for both models,
so what each example does to both is kept together: Koehn 2004, "Statistical significance tests for machine
translation evaluation"; Efron & Tibshirani 1993, ch. 13), scores both models on each resample and returns, per
metric, the observed scores, their difference, a percentile interval of the difference and how often each model
came out ahead. The interval is what answers "clearly above": it excludes 0 or it does not.

Pure numpy: each resample's scores come from its two confusion matrices, counted with one ``bincount`` over
(gold, A's prediction, B's prediction) cells, and scored by
:func:`domainfit.metrics.classification.confusion_scores`, as ``classification_metrics`` scores one matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from domainfit.metrics.classification import confusion_scores

# The scores compared: single-label scores that an example's resampling moves (micro = accuracy here).
COMPARED_METRICS: tuple[str, ...] = ("f1_macro", "accuracy", "precision_macro", "recall_macro", "f1_weighted")

# Cells counted at once per chunk of resamples: bounds the (chunk, n) index array to ~32 MB of int64.
_CELLS_PER_CHUNK = 4_000_000


def paired_bootstrap(
    y_true: Sequence[int],
    pred_a: Sequence[int],
    pred_b: Sequence[int],
    num_labels: int,
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Compare two models' predictions of the same examples by a paired bootstrap.

    Args:
        y_true: gold class ids, each in ``0 .. num_labels - 1``.
        pred_a: model A's predicted class ids, one per example of ``y_true``.
        pred_b: model B's, likewise.
        num_labels: how many classes there are (every one is scored, as ``classification_metrics`` does).
        resamples: bootstrap resamples (10,000 puts the 2.5% and 97.5% percentiles within about 0.1 point).
        confidence: the interval's coverage, e.g. 0.95.
        seed: seed of the resampling; the same seed gives the same interval.

    Returns:
        A JSON-serialisable dict: ``n``, ``resamples``, ``confidence``, ``seed`` and ``metrics``, which maps each
        of :data:`COMPARED_METRICS` to ``{"a", "b", "difference" (a - b), "low", "high" (the percentile
        interval of the difference), "a_ahead", "b_ahead" (the fraction of resamples where that model scored
        higher; ties count for neither)}``.
    """
    observed, differences = bootstrap_differences(
        y_true, pred_a, pred_b, num_labels, resamples=resamples, seed=seed, confidence=confidence
    )
    return {
        "n": len(y_true),
        "resamples": resamples,
        "confidence": confidence,
        "seed": seed,
        "metrics": summarise(observed, differences, confidence),
    }


def bootstrap_differences(
    y_true: Sequence[int],
    pred_a: Sequence[int],
    pred_b: Sequence[int],
    num_labels: int,
    *,
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[dict[str, tuple[float, float]], dict[str, np.ndarray]]:
    """The raw material of :func:`paired_bootstrap`: each compared metric's observed (A, B) scores, and its
    difference A - B on every resample, ``(resamples,)``.

    The resamples depend only on ``seed``, ``resamples`` and the number of examples, so the differences of
    several pairs of models on one file (one recipe against another, seed by seed) line up resample by
    resample: their mean per resample is the bootstrap of the mean difference (:func:`summarise` it).
    """
    gold, a, b = (np.asarray(v, dtype=np.int64) for v in (y_true, pred_a, pred_b))
    _check(gold, a, b, num_labels, resamples, confidence)
    k = num_labels
    n = len(gold)
    cells = (gold * k + a) * k + b  # one cell per (gold, A's prediction, B's prediction)
    scores = _scores(np.bincount(cells, minlength=k**3)[None].reshape(1, k, k, k), n)
    observed = {name: (float(scores[name][0][0]), float(scores[name][1][0])) for name in COMPARED_METRICS}
    differences = {name: np.empty(resamples) for name in COMPARED_METRICS}
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CELLS_PER_CHUNK // n))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        picked = cells[rng.integers(0, n, size=(rows, n))]  # (rows, n): each row one resample's cells
        offsets = np.arange(rows, dtype=np.int64)[:, None] * k**3
        counts = np.bincount((picked + offsets).ravel(), minlength=rows * k**3).reshape(rows, k, k, k)
        scores = _scores(counts, n)
        for name in COMPARED_METRICS:
            differences[name][start : start + rows] = scores[name][0] - scores[name][1]
    return observed, differences


def summarise(
    observed: dict[str, tuple[float, float]], differences: dict[str, np.ndarray], confidence: float = 0.95
) -> dict[str, dict[str, float]]:
    """Per metric: the observed scores ``a`` and ``b``, their ``difference``, the percentile interval
    ``low`` .. ``high`` of the resampled differences, and the fractions of resamples each model led in."""
    tail = (1 - confidence) / 2
    metrics = {}
    for name, d in differences.items():
        score_a, score_b = observed[name]
        metrics[name] = {
            "a": score_a,
            "b": score_b,
            "difference": score_a - score_b,
            "low": float(np.quantile(d, tail)),
            "high": float(np.quantile(d, 1 - tail)),
            "a_ahead": float((d > 0).mean()),
            "b_ahead": float((d < 0).mean()),
        }
    return metrics


def _scores(counts: np.ndarray, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each compared metric for A and for B, per resample, from ``counts`` (rows, gold, pred A, pred B)."""
    scores_a = _matrix_scores(counts.sum(axis=3), n)  # confusion of (gold, pred A)
    scores_b = _matrix_scores(counts.sum(axis=2), n)  # confusion of (gold, pred B)
    return {name: (scores_a[name], scores_b[name]) for name in COMPARED_METRICS}


def _matrix_scores(matrix: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The compared metrics of a stack of confusion matrices (rows, gold, predicted), as classification_metrics
    computes them."""
    scores = confusion_scores(matrix)  # per class: (rows, k)
    return {
        "f1_macro": scores["f1"].mean(axis=1),
        "accuracy": scores["accuracy"],
        "precision_macro": scores["precision"].mean(axis=1),
        "recall_macro": scores["recall"].mean(axis=1),
        "f1_weighted": (scores["f1"] * scores["support"]).sum(axis=1) / n,
    }


def _check(gold: np.ndarray, a: np.ndarray, b: np.ndarray, k: int, resamples: int, confidence: float) -> None:
    # Called with our own predictions, not a user's file: a failure is a bug, so ValueError with the numbers.
    if not len(gold) == len(a) == len(b):
        raise ValueError(f"y_true, pred_a and pred_b have {len(gold)}, {len(a)} and {len(b)} items")
    if len(gold) == 0:
        raise ValueError("cannot compare two models on no examples")
    if k < 1:
        raise ValueError(f"num_labels must be at least 1, got {k}")
    for name, values in (("y_true", gold), ("pred_a", a), ("pred_b", b)):
        if values.min() < 0 or values.max() >= k:
            raise ValueError(f"{name} holds class ids outside 0..{k - 1}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
