"""How far a classifier's confidence can be trusted: calibration error, temperature, selective prediction.

Pure functions of class probabilities (or logits) and gold class ids, numpy and scipy only:

- :func:`expected_calibration_error` and :func:`reliability_bins`: expected calibration error over 15
  equal-width confidence bins and the per-bin figures behind a reliability diagram (Guo et al. 2017, "On
  Calibration of Modern Neural Networks", ICML).
- :func:`fit_temperature`: temperature scaling from the same paper, one scalar ``T > 0`` that divides the
  logits, fitted by L-BFGS on the negative log-likelihood of validation predictions; the argmax, so every
  label, is unchanged.
- :func:`risk_coverage` and :func:`choose_min_confidence`: selective prediction (El-Yaniv and Wiener 2010;
  Geifman and El-Yaniv 2017): answer only when the top probability reaches a threshold, and pick the threshold
  that keeps the most predictions while the accepted ones reach a target accuracy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15  # Guo et al. 2017's setting, so figures compare with the literature
_MIN_TEMPERATURE, _MAX_TEMPERATURE = 0.05, 100.0  # T outside this range means the logits carry no signal


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``: (n, num_labels) -> probabilities (n, num_labels)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the gold labels under ``softmax(logits / temperature)``."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_z - shifted[np.arange(len(labels)), labels]))


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Per confidence bin: its range, example count, mean confidence and accuracy (a reliability diagram).

    Bins are equal-width on the top probability, ``(lo, hi]`` (the first also holds 0); empty bins are kept,
    with ``confidence`` and ``accuracy`` None, so the list always has ``n_bins`` entries.

    Args:
        probabilities: (n, num_labels) class probabilities.
        labels: (n,) gold class ids.
        n_bins: number of bins.
    """
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)  # (lo, hi] bins
    bins = []
    for b in range(n_bins):
        members = which == b
        count = int(members.sum())
        bins.append(
            {
                "lower": round(float(edges[b]), 6),
                "upper": round(float(edges[b + 1]), 6),
                "count": count,
                "confidence": float(confidence[members].mean()) if count else None,
                "accuracy": float(correct[members].mean()) if count else None,
            }
        )
    return bins


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE: the example-weighted mean gap between accuracy and mean confidence over equal-width bins.

    0 for a perfectly calibrated model; 0.3 means the confidence is off by 30 points on average.
    """
    n = len(labels)
    if n == 0:
        return float("nan")
    return float(
        sum(
            b["count"] / n * abs(b["accuracy"] - b["confidence"])
            for b in reliability_bins(probabilities, labels, n_bins)
            if b["count"]
        )
    )


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature ``T > 0`` that minimises the NLL of ``softmax(logits / T)`` on these labels.

    Optimised over ``log T`` (so T stays positive) with L-BFGS-B and the analytic gradient, from T = 1;
    one parameter, so it converges in a few iterations. Returns 1.0 when there is nothing to fit.

    Args:
        logits: (n, num_labels) validation logits of the selected weights.
        labels: (n,) gold class ids.
    """
    from scipy.optimize import minimize

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0 or logits.shape[1] < 2:
        return 1.0
    gold = logits[np.arange(len(labels)), labels]

    def nll_and_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        t = float(np.exp(params[0]))
        p = softmax(logits, t)
        nll = negative_log_likelihood(logits, labels, t)
        # d NLL / d T = mean(gold - E_p[z]) / T^2;  d T / d log T = T
        grad_t = float(np.mean(gold - (p * logits).sum(axis=1))) / t**2
        return nll, np.array([grad_t * t])

    result = minimize(
        nll_and_grad,
        x0=np.zeros(1),
        jac=True,
        method="L-BFGS-B",
        bounds=[(np.log(_MIN_TEMPERATURE), np.log(_MAX_TEMPERATURE))],
    )
    temperature = float(np.exp(result.x[0]))
    # never worse than no scaling (a flat or degenerate problem can stop the search early)
    if negative_log_likelihood(logits, labels, temperature) > negative_log_likelihood(logits, labels, 1.0):
        return 1.0
    return temperature


def risk_coverage(probabilities: np.ndarray, labels: np.ndarray, points: int = 20) -> list[dict[str, float]]:
    """Accuracy of the predictions kept at each coverage, keeping the most confident first.

    Returns at most ``points`` + 1 entries, ``{"coverage", "accuracy", "min_confidence"}``, from the most
    confident 1/points of the data to all of it (coverage 1.0: the plain accuracy).
    """
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    n = len(labels)
    if n == 0:
        return []
    confidence = probabilities.max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    correct = (probabilities.argmax(axis=1) == labels)[order]
    hits = np.cumsum(correct)
    curve = []
    for k in sorted({max(1, round(n * q / points)) for q in range(1, points + 1)}):
        curve.append(
            {"coverage": k / n, "accuracy": float(hits[k - 1] / k), "min_confidence": float(confidence[order[k - 1]])}
        )
    return curve


def selective_scores(probabilities: np.ndarray, labels: np.ndarray, min_confidence: float) -> dict[str, Any]:
    """Coverage (share answered) and accuracy of the answered predictions at ``min_confidence``."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    answered = probabilities.max(axis=1) >= min_confidence
    count = int(answered.sum())
    accuracy = float((probabilities.argmax(axis=1) == labels)[answered].mean()) if count else None
    return {
        "coverage": count / len(labels) if len(labels) else 0.0,
        "accuracy": accuracy,
        "answered": count,
        "abstained": int(len(labels) - count),
    }


def choose_min_confidence(probabilities: np.ndarray, labels: np.ndarray, target_accuracy: float) -> float | None:
    """The lowest confidence threshold at which the answered predictions reach ``target_accuracy``.

    Candidates are the observed top probabilities (answer when ``confidence >= threshold``, so ties are kept
    together); the lowest one that works keeps the most predictions. 0.0 when every prediction may be
    answered; None when no threshold reaches the target (not even the single most confident prediction).
    """
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    if len(labels) == 0:
        return None
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    if correct.mean() >= target_accuracy:
        return 0.0
    order = np.argsort(-confidence, kind="stable")
    sorted_conf, hits = confidence[order], np.cumsum(correct[order])
    # the last position of each run of equal confidences: a threshold there answers the whole run
    last_of_tie = np.append(sorted_conf[1:] != sorted_conf[:-1], True)
    kept = np.arange(1, len(labels) + 1)
    ok = last_of_tie & (hits / kept >= target_accuracy)
    if not ok.any():
        return None
    return float(sorted_conf[np.flatnonzero(ok)[-1]])
