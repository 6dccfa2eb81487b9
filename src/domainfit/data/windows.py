"""Sliding windows over long documents, and the per-document aggregation of window logits.

    # config: model.long_text: windows, model.window_stride: 64, model.window_aggregation: mean
    domainfit train my.yaml model.long_text=windows

A text longer than ``model.max_length`` tokens is cut into overlapping windows of ``max_length`` tokens
(special tokens included), whose starts are ``window_stride`` content tokens apart; the last window ends
at the last token, so every token is in at least one window. Each window is classified on its own and the
document's logits are the mean (or element-wise max) of its windows' logits. Training gives every window
its document's label; evaluation scores documents, not windows; ``domainfit.load(...).predict`` windows
long texts the same way (the settings travel in the model folder's ``domainfit.json``).

The same two functions serve training, evaluation and prediction, so they cannot drift apart:
:func:`split_windows` (token ids -> windows) and :func:`aggregate_by_group` (window logits -> document logits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from domainfit.errors import ConfigError

LONG_TEXT_MODES = ("truncate", "windows")
AGGREGATIONS = ("mean", "max")


@dataclass(frozen=True)
class WindowSettings:
    """How long texts are windowed.

    Attributes:
        max_length: tokens per window, special tokens included (``model.max_length``).
        stride: content tokens from one window's start to the next (None: half a window).
        aggregation: "mean" or "max" of the window logits.
        n_head: special tokens before the content ([CLS] for BERT: 1).
        n_tail: special tokens after the content ([SEP] for BERT: 1).
    """

    max_length: int
    stride: int | None
    aggregation: str
    n_head: int = 1
    n_tail: int = 1

    @property
    def content_length(self) -> int:
        """Content (non-special) tokens per window."""
        return self.max_length - self.n_head - self.n_tail

    @property
    def step(self) -> int:
        """Content tokens between consecutive window starts."""
        return self.stride if self.stride is not None else max(1, self.content_length // 2)

    def check(self, key: str = "model.window_stride") -> None:
        """Raise a ConfigError if the stride would skip tokens or the aggregation is unknown."""
        if self.content_length < 1:
            raise ConfigError(
                f"max_length {self.max_length} leaves no room for text between the "
                f"{self.n_head + self.n_tail} special tokens",
                key="model.max_length",
            )
        if self.step > self.content_length:
            raise ConfigError(
                f"a stride of {self.step} tokens would skip text: windows hold only "
                f"{self.content_length} content tokens ({self.max_length} minus "
                f"{self.n_head + self.n_tail} special tokens)",
                key=key,
                fix=f"set {key} to at most {self.content_length} (null: half a window).",
            )
        if self.aggregation not in AGGREGATIONS:
            raise ConfigError(
                f"unknown window aggregation {self.aggregation!r}",
                key="model.window_aggregation",
                fix=f"use one of: {', '.join(AGGREGATIONS)}.",
            )


def special_token_counts(tokenizer: Any) -> tuple[int, int]:
    """(special tokens before, after) the text in one encoded sequence, found by encoding a probe word."""
    with_specials = tokenizer("a")["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    for head in range(len(with_specials) - len(plain) + 1):
        if with_specials[head : head + len(plain)] == plain:
            return head, len(with_specials) - head - len(plain)
    return 0, 0  # a tokenizer that adds nothing, or changes the text's own tokens: no specials to keep


def window_spans(n_tokens: int, size: int, step: int) -> list[tuple[int, int]]:
    """[start, end) spans of windows of ``size`` tokens, ``step`` apart, covering ``n_tokens`` tokens.

    The last window is moved back to end at the last token, so all windows but a short text's only one
    are full and no token is left out.
    """
    if n_tokens <= size:
        return [(0, n_tokens)]
    starts = list(range(0, n_tokens - size + 1, step))
    if starts[-1] + size < n_tokens:
        starts.append(n_tokens - size)
    return [(s, s + size) for s in starts]


def split_windows(ids: Sequence[int], settings: WindowSettings) -> list[tuple[list[int], int, int]]:
    """Cut one encoded text (special tokens included) into windows of at most ``settings.max_length``.

    Returns:
        (window ids with the text's own special tokens around it, content start, content end) per window;
        start and end index the content tokens (``ids`` without its special tokens).
    """
    head = list(ids[: settings.n_head])
    tail = list(ids[len(ids) - settings.n_tail :]) if settings.n_tail else []
    content = list(ids[settings.n_head : len(ids) - settings.n_tail])
    return [
        (head + content[s:e] + tail, s, e)
        for s, e in window_spans(len(content), settings.content_length, settings.step)
    ]


def aggregate_by_group(logits: Any, groups: Sequence[int], how: str) -> Any:
    """Document logits from window logits: mean or element-wise max over each group's rows.

    Args:
        logits: (windows, ...) torch tensor or numpy array.
        groups: the document index of every row, 0..n_documents-1.
        how: "mean" or "max".

    Returns:
        (documents, ...) of the same kind as ``logits``, row ``d`` for document ``d``.
    """
    is_numpy = isinstance(logits, np.ndarray)
    import torch

    values = torch.from_numpy(logits) if is_numpy else logits
    index = torch.as_tensor(np.asarray(groups), dtype=torch.long)
    n_docs = int(index.max()) + 1 if len(index) else 0
    shape = (n_docs, *values.shape[1:])
    expand = index.view(-1, *([1] * (values.ndim - 1))).expand_as(values)
    if how == "mean":
        out = torch.zeros(shape, dtype=values.dtype).scatter_add_(0, expand, values)
        counts = torch.bincount(index, minlength=n_docs).clamp(min=1).to(values.dtype)
        out = out / counts.view(-1, *([1] * (values.ndim - 1)))
    elif how == "max":
        out = torch.full(shape, float("-inf"), dtype=values.dtype).scatter_reduce_(0, expand, values, "amax")
    else:
        raise ConfigError(
            f"unknown window aggregation {how!r}",
            key="model.window_aggregation",
            fix=f"use one of: {', '.join(AGGREGATIONS)}.",
        )
    return out.numpy() if is_numpy else out


def group_labels(labels: Any, groups: Sequence[int]) -> Any:
    """One label per document (every window carries its document's label): the first window's."""
    import torch

    index = torch.as_tensor(np.asarray(groups), dtype=torch.long)
    n_docs = int(index.max()) + 1 if len(index) else 0
    first = torch.full((n_docs,), len(index), dtype=torch.long).scatter_reduce_(
        0, index, torch.arange(len(index)), "amin"
    )
    return labels[first]


@dataclass
class Window:
    """One window of one document, for training or evaluation.

    Attributes:
        document: index of the document in its split.
        input_ids: the window's token ids, special tokens included.
        char_start: where the window's text starts in the document (prefix excluded).
        char_end: where it ends.
    """

    document: int
    input_ids: list[int]
    char_start: int
    char_end: int


def encode_windows(texts: Sequence[str], tokenizer: Any, settings: WindowSettings, prefix: str = "") -> list[Window]:
    """Tokenise whole texts (no truncation) and cut each into windows; ``prefix`` is prepended to each text.

    The character span of each window lets augmentation re-tokenise a window's own text.
    """
    full = [prefix + t for t in texts]
    # the tokenizer warns about sequences over model_max_length: windows are exactly the answer to that
    enc = tokenizer(full, truncation=False, return_offsets_mapping=True, verbose=False)
    windows = []
    for doc, (ids, offsets) in enumerate(zip(enc["input_ids"], enc["offset_mapping"])):
        content_offsets = offsets[settings.n_head : len(offsets) - settings.n_tail]
        for window_ids, s, e in split_windows(ids, settings):
            if e > s:
                start = max(0, content_offsets[s][0] - len(prefix))
                end = max(start, content_offsets[e - 1][1] - len(prefix))
            else:
                start, end = 0, len(texts[doc])
            windows.append(Window(doc, window_ids, start, end))
    return windows


def window_rows(
    ids: Sequence[Sequence[int]], settings: WindowSettings
) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """Prediction: (window ids, token type ids, document index) for every window of every encoded text."""
    rows, groups = [], []
    for doc, text_ids in enumerate(ids):
        for window_ids, _, _ in split_windows(text_ids, settings):
            rows.append(window_ids)
            groups.append(doc)
    return rows, [[0] * len(r) for r in rows], groups
