"""Masked-LM contextual substitution (``augment.ops: [mlm]``): a data augmenter that needs a pretrained model.

It plugs into the data layer's augmenter registry from the models layer, so ``domainfit.data`` never imports a
model loader: importing this module registers the ``mlm`` op (the text-classification task imports it).
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from domainfit.data.augment import AUGMENTERS, OpContext, content_positions
from domainfit.errors import ModelError


@AUGMENTERS.register("mlm")
class MaskedLMSubstitution:
    """Mask ``n`` random words of each sentence and refill each with one of the masked LM's top-k tokens.

    A word is masked with as many [MASK] tokens as it has sub-word tokens, so a two-character Chinese word
    comes back as two characters. Invalid refills (special tokens, the original token, a continuation piece
    at a word start) are skipped; words with a digit (amounts, doses, dates) are never masked. The model is
    loaded once (per run) and run once per batch, on the CPU.
    """

    MAX_LENGTH = 256  # words past this many tokens are not masked: augmenting needs only some context

    def __init__(self, ctx: OpContext) -> None:
        from transformers import AutoModelForMaskedLM

        from domainfit.models.loading import load_pretrained, load_tokenizer

        if not ctx.mlm_model:
            raise ModelError(
                "the mlm op needs a masked language model",
                key="augment.mlm_model",
                fix="set augment.mlm_model to a model with its MLM head.",
            )
        self.tokenizer = load_tokenizer(ctx.mlm_model)
        model, info = load_pretrained(AutoModelForMaskedLM.from_pretrained, ctx.mlm_model, output_loading_info=True)
        # weights of the encoder (base_model_prefix) may be missing harmlessly (e.g. an unused pooler); any
        # missing head weight means the head is randomly initialised
        prefix = f"{model.base_model_prefix}."
        head_missing = [k for k in info.get("missing_keys", []) if not k.startswith(prefix)]
        if head_missing:
            raise ModelError(
                f"{ctx.mlm_model!r} has no trained masked-LM head (missing weights: "
                f"{', '.join(sorted(head_missing)[:4])}...): its predictions would be random",
                key="augment.mlm_model",
                fix="use a model saved with its MLM head (e.g. bert-base-uncased, bert-base-chinese, "
                "or a domain-pretrained folder); the packaged minilm is an encoder without one.",
            )
        if self.tokenizer.mask_token_id is None:
            raise ModelError(f"the tokenizer of {ctx.mlm_model!r} has no mask token", key="augment.mlm_model")
        self.model = model.eval()
        self.top_k = ctx.mlm_top_k
        self.splitter = ctx.splitter
        self._special = set(self.tokenizer.all_special_ids)

    def apply(self, sentences: list[list[str]], n_changes: list[int], rngs: list[random.Random]) -> list[list[str]]:
        import torch

        if not sentences:
            return []
        enc = self.tokenizer(
            [list(s) for s in sentences],
            is_split_into_words=True,
            truncation=True,
            max_length=self.MAX_LENGTH,
            padding=True,
            return_tensors="pt",
        )
        input_ids = enc["input_ids"].clone()  # (batch, seq)
        masked: list[dict[int, list[int]]] = []  # per sentence: word index -> its token positions
        for row, (words, n, rng) in enumerate(zip(sentences, n_changes, rngs)):
            word_ids = enc.word_ids(row)
            tokens_of: dict[int, list[int]] = defaultdict(list)
            for pos, w in enumerate(word_ids):
                if w is not None:
                    tokens_of[w].append(pos)
            # a word with a digit is never masked: a refilled figure changes what the sentence says
            candidates = [
                i for i in content_positions(words) if i in tokens_of and not any(c.isdecimal() for c in words[i])
            ]
            chosen = {i: tokens_of[i] for i in sorted(rng.sample(candidates, min(n, len(candidates))))}
            for positions in chosen.values():
                input_ids[row, positions] = self.tokenizer.mask_token_id
            masked.append(chosen)
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=enc["attention_mask"]).logits  # (batch, seq, vocab)
        out = []
        for row, (words, rng, chosen) in enumerate(zip(sentences, rngs, masked)):
            words = list(words)
            for i, positions in chosen.items():
                pieces = [
                    self._pick(logits[row, pos], int(enc["input_ids"][row, pos]), rng, first=k == 0)
                    for k, pos in enumerate(positions)
                ]
                if any(p is None for p in pieces):
                    continue
                new = self.tokenizer.convert_tokens_to_string(pieces).strip()
                if self.splitter.is_chinese(words[i]):
                    new = new.replace(" ", "")
                if new:
                    words[i] = new
            out.append(words)
        return out

    def _pick(self, scores: Any, original: int, rng: random.Random, *, first: bool) -> str | None:
        """One of the top-k valid tokens for one masked position, or None if none is valid."""
        valid = []
        for token_id in scores.topk(self.top_k + len(self._special) + 2).indices.tolist():
            if token_id in self._special or token_id == original:
                continue
            token = self.tokenizer.convert_ids_to_tokens(token_id)
            if first and token.startswith("##"):
                continue
            valid.append(token)
            if len(valid) == self.top_k:
                break
        return rng.choice(valid) if valid else None


# ----------------------------------------------------------------------------------------------------------
# The augmenter: rate, op choice, seeding
