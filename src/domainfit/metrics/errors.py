"""Examples of a classifier's mistakes, for the reports: the misclassified texts it was surest about.

error_examples(texts, y_true, probabilities, labels)
# [{"text": "...", "label": "neutral", "predicted": "positive", "probability": 0.91,
#   "probabilities": {"positive": 0.91, "neutral": 0.06, "negative": 0.03}}, ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# mistakes kept per split: enough to see a pattern, few enough for metrics.json to stay small
MAX_ERRORS = 20
# characters of a text kept (a long document's opening is enough to recognise it)
MAX_TEXT_CHARS = 400
# probabilities listed per mistake: the most likely labels
TOP_PROBABILITIES = 3


def error_examples(
    texts: Sequence[str],
    y_true: Sequence[int],
    probabilities: np.ndarray,
    labels: list[str],
    *,
    limit: int = MAX_ERRORS,
) -> list[dict[str, Any]]:
    """The misclassified examples, most confident mistake first (the likeliest wrong labels in the data).

    Args:
        texts: the examples' texts, in the order of ``y_true``.
        y_true: gold class ids.
        probabilities: (n, k) class probabilities.
        labels: class names; position ``i`` names class id ``i``.
        limit: the most mistakes returned.

    Returns:
        Dicts with ``text`` (cut to MAX_TEXT_CHARS), ``label``, ``predicted``, ``probability`` (of the
        predicted label) and ``probabilities`` (the TOP_PROBABILITIES likeliest labels).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)  # (n, k)
    predicted = probabilities.argmax(1)
    wrong = np.flatnonzero(predicted != np.asarray(y_true))
    # stable sort: ties keep the data's order, so the report is the same on every run
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:limit]
    examples = []
    for i in wrong.tolist():
        top = np.argsort(-probabilities[i], kind="stable")[:TOP_PROBABILITIES]
        examples.append(
            {
                "text": texts[i][:MAX_TEXT_CHARS],
                "label": labels[int(y_true[i])],
                "predicted": labels[int(predicted[i])],
                "probability": round(float(probabilities[i, predicted[i]]), 4),
                "probabilities": {labels[j]: round(float(probabilities[i, j]), 4) for j in top.tolist()},
            }
        )
    return examples
