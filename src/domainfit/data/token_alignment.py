"""Words, subword tokens and character offsets for token classification; long sentences as windows.

Used by the ``token-classification`` task for training and evaluation and by the token predictor, so a
sentence is cut into tokens, labelled and windowed the same way in both.

- :func:`encode_sentence` tokenises one sentence with a fast tokenizer (pre-split CoNLL words through
  ``is_split_into_words``; raw text with ``offset_mapping``, which also works for Chinese, where BERT
  tokenizers make every character a word) and labels the first subword of each word (the others -100).
- :func:`plan_windows` cuts a sentence longer than the model's window into overlapping windows and gives
  each token to the window where it is most central; :func:`merge_window_logits` puts the predictions back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from domainfit.data.ner_readers import Span

IGNORE = -100


@dataclass
class SentenceEncoding:
    """One sentence as content tokens (no special tokens), with its words and gold labels.

    Attributes:
        text: the sentence.
        ids: token ids.
        labels: per token: the label id on each word's first token, -100 elsewhere (or the word's I- label on
            the other subwords with ``label_all_subwords``); all -100 when there are no gold labels.
        first_tokens: index of each word's first token; the positions that are scored and decoded.
        word_spans: character span ``(start, end)`` of each word in ``text``.
        tags: gold IOB2 tag of each word (None without gold labels).
        snapped: gold spans whose edges fell inside a word and were widened to whole words.
    """

    text: str
    ids: list[int]
    labels: list[int]
    first_tokens: list[int]
    word_spans: list[tuple[int, int]]
    tags: list[str] | None = None
    snapped: int = 0


def encode_sentence(tokenizer: Any, text: str, *, words: Sequence[str] | None = None,
                    tags: Sequence[str] | None = None, spans: Sequence[Span] | None = None,
                    label2id: dict[str, int] | None = None, label_all_subwords: bool = False) -> SentenceEncoding:
    """Tokenise one sentence and align word-level gold tags to tokens.

    Args:
        tokenizer: a fast (Rust-backed) Hugging Face tokenizer.
        text: the sentence; for CoNLL data, ``words`` joined by single spaces.
        words: pre-split words (CoNLL); None to let the tokenizer find the words of ``text``.
        tags: IOB2 tag per word in ``words``.
        spans: gold entities as character spans (span data); turned into word tags.
        label2id: tag -> label id; None for unlabelled text (prediction).
        label_all_subwords: label every subword (continuations get the word's I- tag) instead of only the first.
    """
    if words is not None:
        enc = tokenizer(list(words), is_split_into_words=True, add_special_tokens=False)
        starts, position = [], 0
        for word in words:
            starts.append(position)
            position += len(word) + 1
        all_spans = [(s, s + len(w)) for s, w in zip(starts, words)]
        all_tags = list(tags) if tags is not None else None
    else:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        all_spans, all_tags = [], None
        offsets = enc["offset_mapping"]
        for token, word in enumerate(enc.word_ids()):
            if word is None:
                continue
            while len(all_spans) <= word:
                all_spans.append((offsets[token][0], offsets[token][1]))
            all_spans[word] = (min(all_spans[word][0], offsets[token][0]), max(all_spans[word][1], offsets[token][1]))
    ids: list[int] = enc["input_ids"]
    word_ids = enc.word_ids()
    # words that produce no token (a lone control character) cannot be labelled: drop them
    first_of: dict[int, int] = {}
    for token, word in enumerate(word_ids):
        if word is not None and word not in first_of:
            first_of[word] = token
    kept = sorted(first_of)
    word_spans = [all_spans[w] for w in kept]
    snapped = 0
    if spans is not None:
        word_tags, snapped = spans_to_tags(spans, word_spans)
    elif all_tags is not None:
        word_tags = [all_tags[w] for w in kept]
    else:
        word_tags = None
    labels = [IGNORE] * len(ids)
    if word_tags is not None and label2id is not None:
        new_index = {w: i for i, w in enumerate(kept)}
        for token, word in enumerate(word_ids):
            if word is None or word not in new_index:
                continue
            tag = word_tags[new_index[word]]
            if first_of[word] == token:
                labels[token] = label2id[tag]
            elif label_all_subwords:
                labels[token] = label2id[tag if tag == "O" else "I-" + tag[2:]]
    return SentenceEncoding(text=text, ids=ids, labels=labels, first_tokens=[first_of[w] for w in kept],
                            word_spans=word_spans, tags=word_tags, snapped=snapped)


def spans_to_tags(spans: Sequence[Span], word_spans: Sequence[tuple[int, int]]) -> tuple[list[str], int]:
    """IOB2 tag per word from character spans; also how many spans had an edge inside a word."""
    tags = ["O"] * len(word_spans)
    snapped = 0
    for span in spans:
        inside = [i for i, (start, end) in enumerate(word_spans) if start < span.end and end > span.start]
        if not inside or any(tags[i] != "O" for i in inside):
            snapped += 1  # no token at all (only spaces), or shares a word with the previous span
            continue
        if word_spans[inside[0]][0] != span.start or word_spans[inside[-1]][1] != span.end:
            snapped += 1
        tags[inside[0]] = f"B-{span.label}"
        for i in inside[1:]:
            tags[i] = f"I-{span.label}"
    return tags, snapped


# ---------------------------------------------------------------------------------------------------------
# Windows


@dataclass(frozen=True)
class Window:
    """Content tokens ``[start, start + size)`` of a sentence; this window's predictions are kept for the
    tokens ``[own_start, own_end)``, where it is the most central of the windows that hold them."""

    start: int
    size: int
    own_start: int
    own_end: int


def plan_windows(n_tokens: int, size: int, stride: int) -> list[Window]:
    """Overlapping windows of ``size`` tokens that share ``stride`` tokens with their neighbour.

    The last window is aligned to the sentence end, so it may share more. Every token is owned by the
    window where it is farthest from an edge (ties: the earlier window), so each prediction has the most
    context on both sides.
    """
    if n_tokens <= size:
        return [Window(0, n_tokens, 0, n_tokens)]
    if not 0 <= stride < size:
        raise ValueError(f"stride must be in [0, {size}), got {stride}")
    starts = list(range(0, n_tokens - size, size - stride)) + [n_tokens - size]
    owner = []
    for p in range(n_tokens):
        best, best_margin = 0, -1
        for w, s in enumerate(starts):
            if s <= p < s + size:
                margin = min(p - s, s + size - 1 - p)
                if margin > best_margin:
                    best, best_margin = w, margin
        owner.append(best)
    windows = []
    for w, s in enumerate(starts):
        owned = [p for p in range(n_tokens) if owner[p] == w]
        lo, hi = (owned[0], owned[-1] + 1) if owned else (s, s)
        windows.append(Window(s, size, lo, hi))
    return windows


def merge_window_logits(window_logits: Sequence[np.ndarray], windows: Sequence[Window], n_tokens: int,
                        offset: int) -> np.ndarray:
    """Per-token logits of the whole sentence from its windows' logits.

    Args:
        window_logits: per window, logits (seq, num_labels) of its model input (special tokens included).
        windows: the sentence's windows, as from :func:`plan_windows`.
        n_tokens: content tokens in the sentence.
        offset: position of the first content token in a model input (1 after BERT's [CLS]).

    Returns:
        (n_tokens, num_labels), each row from the window that owns the token.
    """
    num_labels = window_logits[0].shape[-1]
    merged = np.zeros((n_tokens, num_labels), dtype=np.float32)
    for logits, window in zip(window_logits, windows):
        lo = offset + window.own_start - window.start
        merged[window.own_start : window.own_end] = logits[lo : lo + window.own_end - window.own_start]
    return merged


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids this tokenizer puts before and after a single text ([CLS] and [SEP] for BERT)."""
    full = tokenizer("a")["input_ids"]
    content = tokenizer("a", add_special_tokens=False)["input_ids"]
    for i in range(len(full) - len(content) + 1):
        if full[i : i + len(content)] == content:
            return full[:i], full[i + len(content) :]
    return [], []
