"""Words, subword tokens and character offsets for token classification; long sentences as windows.

Used by the ``token-classification`` task for training and evaluation and by the token predictor, so a
sentence is cut into tokens, labelled and windowed the same way in both.

- :func:`encode_sentence` tokenises one sentence with a fast tokenizer and labels it in one of two units.
  ``unit="words"`` (CoNLL data): pre-split words through ``is_split_into_words`` (or the tokenizer's own
  words of raw text), the first subword of each word labelled, the others -100. ``unit="tokens"``
  (character-offset span data): every token is labelled by the characters it covers
  (``return_offsets_mapping``). Words do not work for span data in general: a SentencePiece tokenizer
  (XLM-R, multilingual-e5) splits words only at spaces, so a whole Chinese sentence is one "word" and every
  entity in it would be widened to the sentence.
- :func:`decode_entities` turns a sentence's tags back into character spans, the unit the data gives and
  the unit entities are scored in.
- :func:`plan_windows` cuts a sentence longer than the model's window into overlapping windows and gives
  each token to the window where it is most central; :func:`merge_window_logits` puts the predictions back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from domainfit.data.ner_readers import Span, tags_to_entities

IGNORE = -100
UNITS = ("words", "tokens")
# SentencePiece's word-boundary marker (U+2581). A piece of only this marker (XLM-R/e5 put one before
# every word, and as a word of its own before most Chinese text) holds no character of the text.
METASPACE = "\u2581"


def is_boundary_marker(piece: str) -> bool:
    """Whether a token piece is only SentencePiece's word-boundary marker, not part of any word."""
    return bool(piece) and not piece.strip(METASPACE)


@dataclass
class SentenceEncoding:
    """One sentence as content tokens (no special tokens), with its words and gold labels.

    Attributes:
        text: the sentence.
        ids: token ids.
        labels: per token: the label id on each word's first token, -100 elsewhere (or the word's I- label on
            the other subwords with ``label_all_subwords``); all -100 when there are no gold labels.
        first_tokens: the token of each unit (a word's first token, or each token); the positions that are
            scored and decoded.
        word_spans: character span ``(start, end)`` of each unit (word or token) in ``text``.
        tags: gold IOB2 tag of each unit (None without gold labels).
        snapped: gold spans whose edges fell inside a unit and were widened to whole units.
        entities: gold entities as character spans ``(label, start, end)``: the data's own spans (span data)
            or the tagged words' spans (CoNLL); None without gold labels.
    """

    text: str
    ids: list[int]
    labels: list[int]
    first_tokens: list[int]
    word_spans: list[tuple[int, int]]
    tags: list[str] | None = None
    snapped: int = 0
    entities: list[tuple[str, int, int]] | None = None


def encode_sentence(
    tokenizer: Any,
    text: str,
    *,
    words: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    spans: Sequence[Span] | None = None,
    label2id: dict[str, int] | None = None,
    label_all_subwords: bool = False,
    unit: str = "words",
) -> SentenceEncoding:
    """Tokenise one sentence and align its gold tags or spans to tokens.

    Args:
        tokenizer: a fast (Rust-backed) Hugging Face tokenizer.
        text: the sentence; for CoNLL data, ``words`` joined by single spaces.
        words: pre-split words (CoNLL); None to let the tokenizer find the words of ``text``.
        tags: IOB2 tag per word in ``words``.
        spans: gold entities as character spans (span data); turned into tags of the units.
        label2id: tag -> label id; None for unlabelled text (prediction).
        label_all_subwords: label every subword (continuations get the word's I- tag) instead of only the first.
        unit: "words" (a tag per word, on its first subword) or "tokens" (a tag per token, from the characters
            it covers; ``words``, ``tags`` and ``label_all_subwords`` are not used).
    """
    if unit == "tokens":
        return _encode_tokens(tokenizer, text, spans, label2id)
    if unit != "words":
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
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
    pieces = tokenizer.convert_ids_to_tokens(ids)
    # words that produce no token (a lone control character) cannot be labelled: drop them. A word's label
    # goes on its first token that holds part of it: SentencePiece often starts a word with a bare marker
    # token (each Chinese character of a CoNLL file becomes "▁" + the character).
    first_of: dict[int, int] = {}
    for token, word in enumerate(word_ids):
        if word is None:
            continue
        if word not in first_of or (
            is_boundary_marker(pieces[first_of[word]]) and not is_boundary_marker(pieces[token])
        ):
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
            elif label_all_subwords and token > first_of[word]:
                labels[token] = label2id[tag if tag == "O" else "I-" + tag[2:]]
    entities = None
    if spans is not None:
        entities = [(span.label, span.start, span.end) for span in spans]
    elif word_tags is not None:
        entities = [
            (label, word_spans[first][0], word_spans[last][1]) for label, first, last in tags_to_entities(word_tags)
        ]
    return SentenceEncoding(
        text=text,
        ids=ids,
        labels=labels,
        first_tokens=[first_of[w] for w in kept],
        word_spans=word_spans,
        tags=word_tags,
        snapped=snapped,
        entities=entities,
    )


def _encode_tokens(
    tokenizer: Any, text: str, spans: Sequence[Span] | None, label2id: dict[str, int] | None
) -> SentenceEncoding:
    """Every token that covers characters of ``text`` is a unit, tagged by the gold spans it overlaps."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    units, unit_spans = [], []
    pieces = tokenizer.convert_ids_to_tokens(ids)
    for token, ((start, end), piece) in enumerate(zip(enc["offset_mapping"], pieces)):
        # a SentencePiece token may include the space before it; a bare marker covers a space, or (at
        # the start of a text) the same character as the next token: neither is part of an entity
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end and not is_boundary_marker(piece):
            units.append(token)
            unit_spans.append((start, end))
    tags, snapped = spans_to_tags(spans, unit_spans) if spans is not None else (None, 0)
    labels = [IGNORE] * len(ids)
    if tags is not None and label2id is not None:
        for token, tag in zip(units, tags):
            labels[token] = label2id[tag]
    entities = [(span.label, span.start, span.end) for span in spans] if spans is not None else None
    return SentenceEncoding(
        text=text,
        ids=ids,
        labels=labels,
        first_tokens=units,
        word_spans=unit_spans,
        tags=tags,
        snapped=snapped,
        entities=entities,
    )


def decode_entities(enc: SentenceEncoding, tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities ``(label, start, end)`` as character spans of ``enc.text`` from one IOB2 tag per unit
    (strict IOB2, as they are scored)."""
    return [
        (label, enc.word_spans[first][0], enc.word_spans[last][1])
        for label, first, last in tags_to_entities(list(tags))
    ]


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


def merge_window_logits(
    window_logits: Sequence[np.ndarray], windows: Sequence[Window], n_tokens: int, offset: int
) -> np.ndarray:
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
