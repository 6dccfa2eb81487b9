"""Length-sorted batches for evaluation and serving: little padding, and a cap on padded tokens per batch.

numpy only, so the ONNX serving path (``domainfit.serving``) does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Padded tokens per serving batch (rows x longest length): 64 rows of 128 tokens. Short texts keep their full
# batches; windows of 512 tokens go 16 at a time, so attention scores (rows x heads x len x len) stay ~200 MB.
SERVING_BATCH_TOKENS = 8192


def sorted_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int | None = None, call_cost: int | None = None
) -> list[list[int]]:
    """Evaluation and serving batches: indices sorted by length (longest first) so each batch pads little.

    With ``max_tokens`` a batch also stops before its padded size (rows x its first, longest length) would
    pass that many tokens (always at least one row): long texts go in fewer rows, bounding peak memory.

    With ``call_cost`` (what one forward pass costs beyond its tokens, counted in padded tokens) the sorted
    order is cut where the total padded tokens plus ``call_cost`` per batch is least, rather than every
    ``batch_size`` rows: a batch of mixed lengths is split where the lengths drop, a batch of like lengths
    stays whole. Serving uses it: a micro-batch holds whatever arrived together, and padding 32 random
    PhraseBank sentences to their longest computes twice their tokens.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    if call_cost is not None and len(order) > 1:
        return _cheapest_cuts(lengths[order].astype(np.int64), order, batch_size, max_tokens, call_cost)
    if not max_tokens:
        return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    batches, i = [], 0
    while i < len(order):
        rows = min(batch_size, max(1, max_tokens // max(1, int(lengths[order[i]]))))
        batches.append(order[i : i + rows].tolist())
        i += rows
    return batches


def _cheapest_cuts(
    longest_first: np.ndarray, order: np.ndarray, batch_size: int, max_tokens: int | None, call_cost: int
) -> list[list[int]]:
    """Dynamic programming over the cut points of the sorted rows: ``best[j]`` is the least cost of the first
    ``j`` rows, a batch of rows i..j-1 costs ``(j - i) * longest_first[i] + call_cost`` (its first row is its
    longest). Contiguous batches of the sorted order are optimal for this cost."""
    n = len(longest_first)
    width = np.maximum(longest_first, 1)
    best = np.zeros(n + 1)
    start = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        first = np.arange(max(0, j - batch_size), j)
        rows = j - first
        cost = best[first] + rows * width[first] + call_cost
        if max_tokens:
            cost[(rows * width[first] > max_tokens) & (rows > 1)] = np.inf  # one row may pass the cap
        k = int(np.argmin(cost))  # ties: the earliest start, the fewest batches
        best[j], start[j] = cost[k], first[k]
    batches, j = [], n
    while j > 0:
        batches.append(order[start[j] : j].tolist())
        j = int(start[j])
    return batches[::-1]
