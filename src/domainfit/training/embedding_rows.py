"""Train only the word-embedding rows the training data uses (``train.embedding_rows: seen``).

A fine-tune's word-embedding matrix is most of a small encoder (MiniLM: 30,522 x 384 of 22.7M weights), but a
domain's training set uses a quarter of the vocabulary (PhraseBank: 7,974 ids with the special tokens, logged as
``embedding rows:``). Under dense training every other row gets an exactly-zero gradient, so AdamW's moments for
it stay zero and its only change is the decoupled weight decay, ``w <- w * (1 - lr * wd)``. :class:`SeenRows`
trains the same thing in less:

- the matrix is frozen; a compact ``(n_seen, hidden)`` copy of the used rows is the trainable parameter, so
  backward builds a gradient, and AdamW keeps two moments, for those rows only;
- a forward hook on the embedding module looks the used ids up in the compact copy while training (ids outside
  it, which a training batch cannot hold when the set comes from its own tokens, read the frozen matrix);
- after each optimizer step the other rows get the decay AdamW would have applied, and the trained rows are
  copied back, so evaluation, checkpoints and the saved model read one ordinary matrix at every step.

Same result as dense training up to float rounding (``tests/test_embedding_rows.py`` compares the two), less
memory and a shorter step (``BENCHMARKS.md``). The loop skips it where rows outside the training tokens can
be reached: text augmentation and the joint MLM objective (new or random token ids), an output layer tied to
the embeddings, and embeddings that do not train at all (``model.freeze_embeddings``, PEFT).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn

log = logging.getLogger(__name__)


class SeenRows:
    """The trainable compact rows of ``embedding`` and the hook that uses them.

    Args:
        embedding: the model's input word embedding (``model.get_input_embeddings()``); its weight is frozen.
        token_ids: every id a training batch can contain (its tokens, special tokens, padding).
        device: where training runs (the compact rows are created there; the model may still be on the CPU).
    """

    def __init__(self, embedding: nn.Embedding, token_ids: Iterable[int], device: torch.device | str = "cpu") -> None:
        weight = embedding.weight
        ids = torch.tensor(sorted({int(i) for i in token_ids}), dtype=torch.long)
        if ids.numel() == 0 or int(ids[0]) < 0 or int(ids[-1]) >= weight.shape[0]:
            raise ValueError(
                f"token ids must lie in [0, {weight.shape[0]}), got {ids[:1].tolist()}..{ids[-1:].tolist()}"
            )
        self.embedding = embedding
        self.ids = ids.to(device)
        index = torch.full((weight.shape[0],), -1, dtype=torch.long)
        index[ids] = torch.arange(len(ids))
        self.index = index.to(device)  # vocabulary id -> compact row, -1 where not trained
        self.rows = nn.Parameter(weight.detach()[ids].clone().to(device))
        weight.requires_grad_(False)
        self._group: dict | None = None
        embedding.register_forward_hook(self._lookup)

    @property
    def num_rows(self) -> int:
        return self.rows.shape[0]

    def named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """For the optimizer: named so weight decay and layer-wise lr decay treat it as the embedding matrix."""
        return [("embeddings.word_embeddings.weight", self.rows)]

    def _lookup(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not (module.training and torch.is_grad_enabled()):
            return None  # evaluation: the matrix holds the trained rows already
        compact = self.index[args[0]]  # (batch, seq)
        rows = nn.functional.embedding(compact.clamp(min=0), self.rows)
        return torch.where((compact >= 0).unsqueeze(-1), rows, output)

    @torch.no_grad()
    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Call after every optimizer step that updated the weights: decay the untrained rows as AdamW would
        have, and write the trained rows back into the matrix."""
        if self._group is None:
            self._group = next(g for g in optimizer.param_groups if any(p is self.rows for p in g["params"]))
        weight = self.embedding.weight
        decay = self._group["lr"] * self._group["weight_decay"]
        if decay:
            weight.mul_(1.0 - decay)
        weight.index_copy_(0, self.ids.to(weight.device), self.rows.to(weight.dtype))

    @torch.no_grad()
    def refresh(self) -> None:
        """Re-read the compact rows from the matrix (after a checkpoint was loaded into the model)."""
        self.rows.copy_(self.embedding.weight[self.ids.to(self.embedding.weight.device)])


def seen_rows_blocker(model: nn.Module, cfg) -> str | None:
    """Why ``train.embedding_rows: seen`` cannot apply to this run, or None when it can."""
    if cfg.augment.ops:
        return "text augmentation makes new token ids"
    if cfg.joint.enabled:
        return "the joint MLM objective draws random token ids and reads the embeddings as its decoder"
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if get is not None else None
    if not isinstance(embedding, nn.Embedding):
        return "the model has no word-embedding matrix"
    if not embedding.weight.requires_grad:
        return "the word embeddings do not train (model.freeze_embeddings or PEFT)"
    out = getattr(model, "get_output_embeddings", lambda: None)()
    if out is not None and getattr(out, "weight", None) is embedding.weight:
        return "the output layer is tied to the word embeddings"
    return None


def training_token_ids(items: list[dict], tokenizer) -> set[int]:
    """Every id a training batch can hold: the items' tokens, the tokenizer's special tokens (padding)."""
    ids: set[int] = set()
    for item in items:
        ids.update(item["input_ids"])
    ids.update(i for i in getattr(tokenizer, "all_special_ids", []) if i is not None)
    if getattr(tokenizer, "pad_token_id", None) is not None:
        ids.add(tokenizer.pad_token_id)
    return ids


def apply_seen_rows(model: nn.Module, cfg, items: list[dict], tokenizer, device: torch.device) -> SeenRows | None:
    """Set up :class:`SeenRows` for a run where ``cfg.train.embedding_rows`` is ``seen`` and nothing blocks
    it (logged either way); None otherwise."""
    if cfg.train.embedding_rows != "seen" or not items or "input_ids" not in items[0]:
        return None
    blocker = seen_rows_blocker(model, cfg)
    if blocker is not None:
        log.info("embedding rows: all trained (%s)", blocker)
        return None
    embedding = model.get_input_embeddings()
    seen = SeenRows(embedding, training_token_ids(items, tokenizer), device=device)
    log.info(
        "embedding rows: %d of %d trained (the ones the training data uses; the others get weight decay only)",
        seen.num_rows,
        embedding.weight.shape[0],
    )
    return seen
