"""Texts -> padded int64 model inputs: the Rust ``tokenizers`` backend called directly, one batch padded
only to its own longest text.

    tokenizer = FastTokenizer(load_hf_tokenizer(model_dir), max_length=128)
    ids, type_ids = tokenizer(texts)
    inputs = pad_inputs(ids, type_ids, tokenizer.pad_id)   # {"input_ids": (batch, seq), ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from domainfit.errors import ModelError
from domainfit.models.loading import check_tokenizer_files


class FastTokenizer:
    """Texts -> token ids, unpadded and truncated to ``max_length``: the ids the training tokenizer gives.

    Calls the Rust ``tokenizers`` backend directly (a private copy, so the caller's tokenizer keeps its
    settings); a tokenizer without one (a slow, Python-only tokenizer) is called through transformers.
    """

    def __init__(self, hf_tokenizer: Any, max_length: int) -> None:
        self.max_length = max_length
        self.pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
        self._hf = hf_tokenizer
        self._backend = None
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is not None:
            from tokenizers import Tokenizer

            self._backend = Tokenizer.from_str(backend.to_str())
            self._backend.no_padding()
            self._backend.enable_truncation(max_length)

    def __call__(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Return (input ids, token type ids) per text."""
        if self._backend is not None:
            if len(texts) == 1:  # encode_batch's thread hand-off costs more than one short text
                encodings = [self._backend.encode(texts[0])]
            else:
                encodings = self._backend.encode_batch(list(texts))
            return [e.ids for e in encodings], [e.type_ids for e in encodings]
        out = self._hf(list(texts), truncation=True, max_length=self.max_length, return_token_type_ids=True)
        ids = out["input_ids"]
        return ids, out.get("token_type_ids") or [[0] * len(x) for x in ids]


def load_hf_tokenizer(model_dir: Path) -> Any:
    """The folder's tokenizer through ``AutoTokenizer``, with a ModelError if it cannot be loaded."""
    from transformers import AutoTokenizer

    check_tokenizer_files(model_dir, key=None)
    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise ModelError(
            f"cannot load the tokenizer: {e}",
            path=model_dir,
            fix="save the tokenizer next to the model (tokenizer.save_pretrained(DIR)).",
        ) from e


def pad_inputs(ids: list[list[int]], type_ids: list[list[int]], pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad one batch to its own longest row; int64 arrays of shape (batch, seq)."""
    length = max(len(x) for x in ids)
    input_ids = np.full((len(ids), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(ids), length), dtype=np.int64)
    token_type_ids = np.zeros((len(ids), length), dtype=np.int64)
    for row, (x, t) in enumerate(zip(ids, type_ids)):
        input_ids[row, : len(x)] = x
        attention_mask[row, : len(x)] = 1
        token_type_ids[row, : len(t)] = t
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
