"""Sentence embeddings for nearest-neighbour search: a transformer encoder, mean pooling, L2 normalisation.

    embed = SentenceEmbedder("minilm")
    vectors = embed(["Operating profit rose .", "Net sales fell ."])   # (2, 384) float32, unit length

This is the recipe all-MiniLM-L6-v2 was trained with (sentence-transformers: mean of the last hidden states over
real tokens, then L2 norm), so the dot product of two rows is their cosine similarity. Any encoder works
(a hub id, a local folder, a built-in short name); texts are sorted by length inside each call to cut padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from domainfit.models.loading import load_pretrained, load_tokenizer


class Embedder(Protocol):
    """Anything that maps texts to unit-length row vectors (tests inject a deterministic one)."""

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Return a (len(texts), dim) float32 array whose rows have L2 norm 1."""


class SentenceEmbedder:
    """Mean-pooled, L2-normalised embeddings from a Hugging Face encoder.

    Args:
        name: model id, folder or built-in short name (``minilm``).
        batch_size: texts per forward pass.
        max_length: longer texts are truncated (all-MiniLM-L6-v2 was trained on 128 tokens).
        text_prefix: prepended to every text (e5 models expect ``"query: "``).
    """

    def __init__(
        self, name: str = "minilm", *, batch_size: int = 64, max_length: int = 128, text_prefix: str = ""
    ) -> None:
        from transformers import AutoModel

        self.name = name
        self.tokenizer = load_tokenizer(name)
        self.model = load_pretrained(AutoModel.from_pretrained, name).eval()
        self.batch_size = batch_size
        self.max_length = max_length
        self.text_prefix = text_prefix

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [self.text_prefix + texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(**batch).last_hidden_state  # (batch, seq, hidden)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (batch, hidden)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).float().numpy()
        return out
