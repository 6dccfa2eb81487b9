"""Length-sorted batches for evaluation and serving: little padding, and a cap on padded tokens per batch.

numpy only, so the ONNX serving path (``domainfit.serving``) does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Padded tokens per serving batch (rows x longest length): 64 rows of 128 tokens. Short texts keep their full
# batches; windows of 512 tokens go 16 at a time, so attention scores (rows x heads x len x len) stay ~200 MB.
SERVING_BATCH_TOKENS = 8192


def sorted_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Evaluation and serving batches: indices sorted by length (longest first) so each batch pads little.

    With ``max_tokens`` a batch also stops before its padded size (rows x its first, longest length) would
    pass that many tokens (always at least one row): long texts go in fewer rows, bounding peak memory.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    if not max_tokens:
        return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    batches, i = [], 0
    while i < len(order):
        rows = min(batch_size, max(1, max_tokens // max(1, int(lengths[order[i]]))))
        batches.append(order[i : i + rows].tolist())
        i += rows
    return batches
