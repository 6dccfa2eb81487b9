"""Faithfulness of word attributions, measured as ERASER does (DeYoung et al. 2020, "ERASER: A Benchmark to
Evaluate Rationalized NLP Models", section 4: AOPC comprehensiveness and sufficiency).

    scores = aopc(words, attributions, targets, explainer.probabilities, chinese=[False] * len(words))
    # {'comprehensiveness': 0.21, 'sufficiency': 0.05, 'by_percent': {1: {...}, 5: {...}, ...}}

For each text, the words an explanation ranks highest are

- removed (comprehensiveness: how much the predicted label's probability drops without them; higher is
  more faithful), or
- kept alone (sufficiency: how much it drops with only them; lower is more faithful),

for the top 1, 5, 10, 20 and 50 % of the words, and the drops are averaged over those bins and the texts
(Area Over the Perturbation Curve). A random ranking of the same words (:func:`random_attributions`) is the
baseline an attribution method must beat. A bin takes at least one word.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from domainfit.errors import DomainfitError

PERCENTS = (1, 5, 10, 20, 50)


def top_words(scores: Sequence[float], percent: float) -> set[int]:
    """Indices of the ``percent`` % highest-scoring words (at least one; ties broken by position)."""
    count = max(1, math.ceil(len(scores) * percent / 100))
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return set(order[:count])


def join_words(words: Sequence[str], chinese: bool) -> str:
    """Words back into a text: Chinese words as they are, others with single spaces."""
    return "".join(words) if chinese else " ".join(words)


def aopc(
    words: Sequence[Sequence[str]],
    scores: Sequence[Sequence[float]],
    targets: Sequence[int],
    probabilities: Callable[[list[str]], np.ndarray],
    *,
    chinese: Sequence[bool] | None = None,
    percents: Sequence[float] = PERCENTS,
) -> dict[str, Any]:
    """AOPC comprehensiveness and sufficiency of word attributions.

    Args:
        words: per text, its words (as the explanation cut them).
        scores: per text, one attribution per word (higher: more for the target label).
        targets: per text, the index of the explained label.
        probabilities: texts -> (len(texts), num_labels) probabilities; it must accept an empty text
            (comprehensiveness can remove every word of a one-word text).
        chinese: per text, whether words join without spaces (default: all False).
        percents: the top-k % bins.

    Returns:
        ``comprehensiveness`` and ``sufficiency`` (means over texts and bins), ``texts``, and
        ``by_percent``: the same two means for each bin.
    """
    if not (len(words) == len(scores) == len(targets)):
        raise DomainfitError(
            f"aopc needs as many score lists and targets as texts: {len(words)} texts, "
            f"{len(scores)} score lists, {len(targets)} targets"
        )
    chinese = list(chinese) if chinese is not None else [False] * len(words)
    for i, (w, s) in enumerate(zip(words, scores)):
        if len(w) != len(s) or not w:
            raise DomainfitError(f"text {i}: {len(w)} words but {len(s)} scores (need one per word, at least one)")
    full, removed, kept = [], [], []
    for w, s, zh in zip(words, scores, chinese):
        full.append(join_words(w, zh))
        for percent in percents:
            top = top_words(s, percent)
            removed.append(join_words([x for i, x in enumerate(w) if i not in top], zh))
            kept.append(join_words([x for i, x in enumerate(w) if i in top], zh))
    rows = np.arange(len(words))
    target = np.asarray(targets)
    p_full = probabilities(full)[rows, target]  # (texts,)
    shape = (len(words), len(percents))
    # one row per (text, bin), text-major, each with its text's target
    perturbed, perturbed_target = np.arange(len(removed)), np.repeat(target, len(percents))
    p_removed = probabilities(removed)[perturbed, perturbed_target]
    p_kept = probabilities(kept)[perturbed, perturbed_target]
    comprehensiveness = p_full[:, None] - p_removed.reshape(shape)  # (texts, bins)
    sufficiency = p_full[:, None] - p_kept.reshape(shape)
    return {
        "comprehensiveness": float(comprehensiveness.mean()),
        "sufficiency": float(sufficiency.mean()),
        "texts": len(words),
        "by_percent": {
            p: {
                "comprehensiveness": float(comprehensiveness[:, j].mean()),
                "sufficiency": float(sufficiency[:, j].mean()),
            }
            for j, p in enumerate(percents)
        },
    }


def random_attributions(words: Sequence[Sequence[str]], seed: int = 0) -> list[list[float]]:
    """A random score per word (uniform, seeded): the baseline ranking of ERASER's comparison."""
    rng = np.random.default_rng(seed)
    return [rng.random(len(w)).tolist() for w in words]


def aopc_of_explanations(
    results: Sequence[dict[str, Any]],
    labels: Sequence[str],
    probabilities: Callable[[list[str]], np.ndarray],
    *,
    percents: Sequence[float] = PERCENTS,
    random_seed: int | None = None,
) -> dict[str, Any]:
    """:func:`aopc` of the first explanation of each result of ``TextExplainer.explain`` (its top label).

    Args:
        results: what ``explain`` returned.
        labels: the model's label names, in output order.
        probabilities: as in :func:`aopc`.
        percents: the top-k % bins.
        random_seed: if given, the words are ranked by random scores instead (the baseline).
    """
    index = {label: i for i, label in enumerate(labels)}
    words = [[w["word"] for w in r["explanations"][0]["words"]] for r in results]
    scores = [[w["score"] for w in r["explanations"][0]["words"]] for r in results]
    if random_seed is not None:
        scores = random_attributions(words, random_seed)
    targets = [index[r["explanations"][0]["label"]] for r in results]
    chinese = [r["unit"] == "jieba words" for r in results]
    return aopc(words, scores, targets, probabilities, chinese=chinese, percents=percents)
