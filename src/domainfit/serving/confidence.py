"""From logits to answers: the temperature-scaled softmax, and "abstain" under a confidence threshold.

probabilities = softmax(logits, temperature)          # (batch, num_labels), float32
results = apply_abstention(results, min_confidence)   # label "abstain" where the score is lower
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from domainfit.errors import DomainfitError

ABSTAIN = "abstain"  # the label of a prediction under min_confidence: route it to a person


def check_min_confidence(value: Any, *, path: Path | None = None, key: str | None = None) -> None:
    """A confidence threshold is None or a number from 0 to 1."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise DomainfitError(
            f"min_confidence must be a number from 0 to 1, found {value!r}",
            path=path,
            key=key,
            fix="e.g. --min-confidence 0.8 (answers below 0.8 confidence become 'abstain').",
        )


def apply_abstention(results: list[dict[str, Any]], min_confidence: float | None) -> list[dict[str, Any]]:
    """Replace the label of each result whose ``score`` is under ``min_confidence`` by :data:`ABSTAIN`."""
    if min_confidence is None:
        return results
    for result in results:
        if result["score"] < min_confidence:
            result["label"] = ABSTAIN
    return results


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float32; logits (batch, num_labels)."""
    if temperature != 1.0:
        logits = logits / np.float32(temperature)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return exp / exp.sum(axis=1, keepdims=True)
