"""Masked-LM inputs: which tokens to hide, chosen by token, by whole word, or by whole domain term.

    masking: {strategy: whole-word, probability: 0.15}          # token | whole-word | knowledge

BERT (Devlin et al. 2019) picks 15% of the tokens and replaces 80% of those by [MASK], 10% by a random token,
and leaves 10% unchanged; the loss is computed on the picked tokens only. Masking single word pieces lets the
model guess "##ability" from "unbeliev"; whole-word masking (Cui et al. 2021, for Chinese) hides every piece of
a word together. Chinese has no spaces, so words come from jieba; tokens are mapped to words through the
tokenizer's character offsets. Knowledge-guided masking (ERNIE, Sun et al. 2019) first spends part of the
budget on whole lexicon terms, then fills the rest with whole words. Lexicon terms are added to jieba's
dictionary so segmentation keeps them whole.

Encoding (:meth:`MaskingCollator.encode`) computes each text's masking *units* once (lists of token positions
that are masked together); :meth:`MaskingCollator.collate` draws the masks afresh for every batch.
"""

from __future__ import annotations

from typing import Any

import torch

from domainfit.config import MaskingConfig
from domainfit.data.batching import pad_batch
from domainfit.data.lexicon import Lexicon
from domainfit.data.words import WordSplitter

IGNORE_INDEX = -100
# jieba frequency of a lexicon term: high enough to win jieba's path search, so a term is never cut
TERM_FREQ = 10**6


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def word_splitter(language: str, lexicon: Lexicon | None = None) -> WordSplitter:
    """The splitter whole-word masking cuts Chinese with: jieba, with every lexicon term kept whole."""
    return WordSplitter(language, lexicon.terms if lexicon is not None else (), term_freq=TERM_FREQ)


def masking_units(
    text: str,
    offsets: list[tuple[int, int]],
    special: list[int],
    word_ids: list[int | None],
    *,
    strategy: str,
    splitter: WordSplitter,
    lexicon: Lexicon | None = None,
) -> tuple[list[list[int]], list[bool]]:
    """Group a text's token positions into units that are masked together.

    Args:
        text: the text that was tokenised.
        offsets: ``(start, end)`` character span of each token.
        special: 1 for special tokens ([CLS], [SEP], <s>...), which are never in any unit.
        word_ids: the tokenizer's word index per token (None for special tokens).
        strategy: "token" (each token alone), "whole-word", or "knowledge" (terms + whole words).
        splitter: cuts the text into words where it is Chinese (see :func:`word_splitter`); other texts use
            ``word_ids``.
        lexicon: domain terms ("knowledge"); tokens of one term occurrence form one unit.

    Returns:
        (units, is_term): token-position lists in text order, and whether each unit holds a lexicon term.
    """
    tokens = [i for i, s in enumerate(special) if not s]
    if strategy == "token":
        return [[i] for i in tokens], [False] * len(tokens)
    uf = _UnionFind(len(offsets))
    if splitter.is_chinese(text):
        words, start = [], 0
        for piece in splitter.split(text):
            words.append((start, start + len(piece)))
            start += len(piece)
        _union_overlapping(uf, tokens, offsets, words)
    else:
        first_of_word: dict[int, int] = {}
        for i in tokens:
            if word_ids[i] is not None:
                uf.union(i, first_of_word.setdefault(word_ids[i], i))
    term_spans = lexicon.find(text) if strategy == "knowledge" and lexicon is not None else []
    term_tokens = _union_overlapping(uf, tokens, offsets, term_spans)
    # a token with an empty span (a sentencepiece "▁" before a Chinese character) goes with the next token
    for a, b in zip(tokens, tokens[1:]):
        if offsets[a][1] <= offsets[a][0]:
            uf.union(a, b)
    groups: dict[int, list[int]] = {}
    for i in tokens:
        groups.setdefault(uf.find(i), []).append(i)
    units = sorted(groups.values())
    return units, [any(i in term_tokens for i in unit) for unit in units]


def _union_overlapping(
    uf: _UnionFind, tokens: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]
) -> set[int]:
    """Union all tokens whose character span overlaps the same span; return the tokens touched."""
    touched: set[int] = set()
    spans = sorted(spans)
    first_token: dict[int, int] = {}  # span index -> first token overlapping it
    j = 0
    for i in tokens:
        start, end = offsets[i]
        if end <= start:
            continue
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        k = j
        while k < len(spans) and spans[k][0] < end:  # every span this token overlaps
            uf.union(i, first_token.setdefault(k, i))
            touched.add(i)
            k += 1
    return touched


def choose_masked(
    units: list[list[int]],
    is_term: list[bool],
    *,
    probability: float,
    term_fraction: float = 0.0,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Token positions to predict: whole units, about ``probability`` of the tokens (at least one unit).

    Terms are taken first (shuffled) while under ``term_fraction`` of the budget, then other units
    (shuffled); a unit that would overshoot the budget is skipped, as in BERT's whole-word masking.
    """
    n_tokens = sum(len(u) for u in units)
    if n_tokens == 0:
        return []
    budget = max(1, round(probability * n_tokens))
    order = torch.randperm(len(units), generator=generator).tolist()
    terms = [u for u in order if is_term[u]]
    others = [u for u in order if not is_term[u]]
    chosen: list[int] = []
    for u in terms:
        if len(chosen) >= term_fraction * budget:
            break
        if len(chosen) + len(units[u]) <= budget:
            chosen += units[u]
    for u in others:
        if len(chosen) + len(units[u]) <= budget:
            chosen += units[u]
    if not chosen:  # every unit is longer than the budget: take the shortest so the text still teaches something
        chosen = list(min(units, key=len))
    return sorted(chosen)


class MaskingCollator:
    """Encodes texts once (ids + masking units) and makes masked batches (input_ids, attention_mask, labels).

    Args:
        tokenizer: a fast Hugging Face tokenizer (offsets are needed for whole-word masking).
        masking: the masking settings.
        max_length: longer texts are truncated.
        text_prefix: prepended to every text.
        lexicon: domain terms for "knowledge" masking.
    """

    def __init__(
        self,
        tokenizer: Any,
        masking: MaskingConfig,
        *,
        max_length: int,
        text_prefix: str = "",
        lexicon: Lexicon | None = None,
    ) -> None:
        if tokenizer.mask_token_id is None:
            from domainfit.errors import ModelError

            raise ModelError(
                "this tokenizer has no mask token, so the model cannot be trained as a masked LM",
                key="train.objective",
                fix="use objective clm for decoder models, or an encoder (BERT-like) model.",
            )
        self.tokenizer, self.masking, self.max_length, self.text_prefix = tokenizer, masking, max_length, text_prefix
        self.lexicon = lexicon
        self.splitter = word_splitter(masking.language, lexicon)  # jieba loads only if a Chinese text comes

    def encode(self, texts: list[str]) -> list[dict[str, Any]]:
        """Token ids and masking units of each text."""
        texts = [self.text_prefix + t for t in texts]
        enc = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        items = []
        for i, text in enumerate(texts):
            units, is_term = masking_units(
                text,
                enc["offset_mapping"][i],
                enc["special_tokens_mask"][i],
                enc.word_ids(i),
                strategy=self.masking.strategy,
                splitter=self.splitter,
                lexicon=self.lexicon,
            )
            items.append({"input_ids": enc["input_ids"][i], "units": units, "is_term": is_term})
        return items

    def collate(self, items: list[dict[str, Any]], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Pad and mask: 80% [MASK], 10% random token, 10% unchanged; labels -100 except at masked positions."""
        input_ids = pad_batch([it["input_ids"] for it in items], self.tokenizer.pad_token_id)  # (batch, seq)
        lengths = torch.tensor([len(it["input_ids"]) for it in items])
        attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()  # (batch, seq)
        picked = torch.zeros_like(input_ids, dtype=torch.bool)
        for row, it in enumerate(items):
            positions = choose_masked(
                it["units"],
                it["is_term"],
                probability=self.masking.probability,
                term_fraction=self.masking.term_fraction if self.masking.strategy == "knowledge" else 0.0,
                generator=generator,
            )
            picked[row, positions] = True
        labels = torch.where(picked, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        draw = torch.rand(input_ids.shape, generator=generator)  # (batch, seq)
        random_ids = torch.randint(len(self.tokenizer), input_ids.shape, generator=generator)
        masked = input_ids.clone()
        masked[picked & (draw < 0.8)] = self.tokenizer.mask_token_id
        swap = picked & (draw >= 0.8) & (draw < 0.9)
        masked[swap] = random_ids[swap]
        return {"input_ids": masked, "attention_mask": attention_mask, "labels": labels}


class CausalCollator:
    """Causal-LM batches: every real token is a target (the model shifts labels itself); padding is -100."""

    def __init__(self, tokenizer: Any, *, max_length: int, text_prefix: str = "") -> None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer, self.max_length, self.text_prefix = tokenizer, max_length, text_prefix

    def encode(self, texts: list[str]) -> list[dict[str, Any]]:
        enc = self.tokenizer([self.text_prefix + t for t in texts], truncation=True, max_length=self.max_length)
        return [{"input_ids": ids} for ids in enc["input_ids"]]

    def collate(self, items: list[dict[str, Any]], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        input_ids = pad_batch([it["input_ids"] for it in items], self.tokenizer.pad_token_id)  # (batch, seq)
        lengths = torch.tensor([len(it["input_ids"]) for it in items])
        attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
