"""Keeping a CPU training process small: micro-batches for long batches, freed memory handed back, a capped
kernel cache, recomputed activations and compact embedding rows, all behind one :class:`MemoryPlan`.

Where a fine-tuning process's resident memory goes (``benchmarks/memory_probe.py``, MiniLM, batch 32): the
imports (torch, and transformers' modeling code, which pulls in scipy and torch._dynamo) and the weights with
their AdamW states are fixed; what grows is (1) the activations of the longest batches, which scale with
rows x padded length, (2) memory glibc keeps after a step frees it, one pool per batch shape, and (3) oneDNN's
cache of compiled kernels, one set per shape. The levers, each measured in ``BENCHMARKS.md``:

- :func:`limit_kernel_cache` caps oneDNN's primitive cache (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``) unless the
  user set it: less memory at no measured cost in speed, so always on;
- :func:`micro_batches` splits a batch whose padded size exceeds ``train.micro_batch_tokens`` into
  micro-batches, one forward/backward each, weighted so that the gradient is the whole batch's: lowers the
  peak, costs throughput (smaller matmuls), so off by default;
- :func:`release_memory` (``train.release_memory_every``) calls glibc's ``malloc_trim``: keeps the resident
  size between steps flat, but the next steps fault the pages back in, so off by default;
- the allocator itself: training commands run on mimalloc (``domainfit/allocator.py``), which reuses freed
  blocks per size class instead of fragmenting a heap; the glibc levers below matter where glibc's malloc runs
  (``DOMAINFIT_ALLOCATOR=system``, or off Linux);
- :class:`LongBatchRecompute` (``train.recompute_min_length``, ``auto``: 64 tokens on CPUs) recomputes the
  activations of the longest batches in backward: a little less peak for a few percent of the speed;
- :func:`set_mmap_threshold` (``train.mmap_threshold_mb``, default 1) makes glibc serve blocks of 1 MB and
  more (activations, gradients) straight from the OS and hand them back when freed, instead of keeping them in
  its heap once their batch shape has passed: about 0.14 GB less peak at no measured cost in speed, so on;
- :class:`~domainfit.training.embedding_rows.SeenRows` (``train.embedding_rows: seen``) trains only the
  word-embedding rows the training data uses.

The loop holds one :class:`MemoryPlan`, built from the ``train`` config, and calls its methods at the points
where each lever acts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from domainfit.allocator import active_allocator, mimalloc_function
from domainfit.objectives.token_classification import IGNORE_INDEX
from domainfit.training.embedding_rows import SeenRows, apply_seen_rows

log = logging.getLogger(__name__)

KERNEL_CACHE_CAPACITY = "64"  # oneDNN's default is 1024


def micro_batches(
    batch: dict[str, torch.Tensor], max_tokens: int | None
) -> list[tuple[dict[str, torch.Tensor], float]]:
    """Split ``batch`` into pieces of at most ``max_tokens`` padded tokens, each with its loss weight.

    Only token batches (with 2-D ``input_ids``) are split; images and batches already small enough come
    back whole with weight 1. A piece's weight is its share of the batch's loss terms: its rows for one label
    per row, its labelled tokens for per-token labels (``-100`` = ignored), so ``sum(weight * piece_loss)``
    equals the whole batch's mean loss and the summed gradients equal the whole batch's (up to dropout draws).
    """
    input_ids = batch.get("input_ids")
    if max_tokens is None or input_ids is None or input_ids.dim() != 2 or input_ids.numel() <= max_tokens:
        return [(batch, 1.0)]
    rows, width = input_ids.shape
    per_piece = max(1, max_tokens // width)
    starts = range(0, rows, per_piece)
    pieces = [{k: v[s : s + per_piece] for k, v in batch.items()} for s in starts]
    labels = batch.get("labels")
    if labels is not None and labels.dim() >= 2:  # per-token losses are means over labelled tokens
        counts = [int((piece["labels"] != IGNORE_INDEX).sum()) for piece in pieces]
        total = sum(counts)
        weights = [c / total if total else 1 / len(pieces) for c in counts]
    else:
        weights = [len(piece["input_ids"]) / rows for piece in pieces]
    return list(zip(pieces, weights))


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


@lru_cache(maxsize=None)
def _glibc(function: str):
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, function)  # glibc only; musl has neither malloc_trim nor these mallopt numbers
    except (OSError, AttributeError):
        return None


def set_mmap_threshold(megabytes: int | None) -> bool:
    """Have glibc ``mmap`` every block of at least ``megabytes`` MB and unmap it when freed (``mallopt``);
    False where not done (None, no glibc, or the user set ``MALLOC_MMAP_THRESHOLD_`` themselves).

    glibc otherwise raises its threshold as large blocks are freed (up to 32 MB), so a training step's
    activations come from the heap, and what a batch shape freed stays resident after it. With the threshold
    fixed at 1 MB a one-epoch PhraseBank run peaked at 1.36 GB instead of 1.50 GB at 0.99x the speed
    (``benchmarks/bench_memory_levers.py``, BENCHMARKS.md). Applies to allocations made after the call.
    """
    if megabytes is None or "MALLOC_MMAP_THRESHOLD_" in os.environ or active_allocator() == "mimalloc":
        return False  # (under mimalloc, glibc's malloc is not the one in use)
    mallopt = _glibc("mallopt")
    return mallopt is not None and mallopt(M_MMAP_THRESHOLD, int(megabytes) << 20) == 1


def release_memory() -> bool:
    """Return the heap's free pages to the OS (glibc ``malloc_trim(0)``, or ``mi_collect`` under mimalloc);
    False where there is neither.

    Without it, glibc keeps the memory each batch shape freed, and the resident size of a CPU run climbs with
    the number of distinct padded lengths (2.6 GB after 28 lengths against 0.9 GB trimmed, MiniLM batch 32,
    ``benchmarks/memory_probe.py``). It is not free: the next steps fault the pages back in, which cost a
    whole PhraseBank run a large share of its throughput here (BENCHMARKS.md), so it is opt-in.
    """
    collect = mimalloc_function("mi_collect")  # under mimalloc: hand its free pages back
    if collect is not None:
        collect(ctypes.c_bool(True))
        return True
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


def limit_kernel_cache() -> None:
    """Cap oneDNN's primitive cache at :data:`KERNEL_CACHE_CAPACITY` kernels unless the user chose a size.

    oneDNN keeps up to 1024 compiled kernels, one set per batch shape and layer, with their scratch memory
    (0.4 GB after 28 padded lengths, ``benchmarks/memory_probe.py``). Capped at 64, a PhraseBank epoch was no
    slower (``benchmarks/bench_memory_levers.py``, BENCHMARKS.md). Read by oneDNN when it first builds a kernel,
    so call this early.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", KERNEL_CACHE_CAPACITY)


class LongBatchRecompute:
    """Activation checkpointing for the longest batches only (``train.recompute_min_length``).

    With token-balanced batches every batch holds about the same number of tokens, but attention keeps a
    (rows, heads, length, length) tensor per layer, so a batch of long texts holds several times the activations
    of a batch of short ones and sets the process's peak. Checkpointing every transformer layer of those batches
    (their activations are recomputed in backward, the same values: dropout's random state is replayed) lowers
    the peak for the price of one more forward pass on a few batches; every other batch runs as before.

    Args:
        model: a Hugging Face model whose layers support activation checkpointing.
        min_length: batches padded to at least this many tokens are checkpointed.
    """

    def __init__(self, model: torch.nn.Module, min_length: int) -> None:
        from transformers.modeling_layers import GradientCheckpointingLayer

        self.min_length = min_length
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        self.layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        self.batches = 0  # how many batches were checkpointed (metrics.json)
        self.set_for(0)

    def set_for(self, length: int) -> None:
        """Checkpoint the next forward pass if its batch is padded to ``length >= min_length`` tokens."""
        long = length >= self.min_length
        self.batches += long
        for layer in self.layers:
            layer.gradient_checkpointing = long


AUTO_RECOMPUTE_MIN_LENGTH = 64  # CPU: 45 of PhraseBank's 363 token-balanced batches (BENCHMARKS.md)


def long_batch_recompute(
    model: torch.nn.Module, min_length: int | str | None, device: torch.device
) -> LongBatchRecompute | None:
    """A :class:`LongBatchRecompute` for ``model``, or None when off or the model has no checkpointable layers.
    ``"auto"``: :data:`AUTO_RECOMPUTE_MIN_LENGTH` on a CPU, off on a GPU (memory is rarely what limits a GPU run)."""
    if min_length == "auto":
        min_length = AUTO_RECOMPUTE_MIN_LENGTH if device.type == "cpu" else None
    if min_length is None:
        return None
    if not getattr(model, "supports_gradient_checkpointing", False):
        log.info("train.recompute_min_length: %s has no activation checkpointing; ignored", type(model).__name__)
        return None
    recompute = LongBatchRecompute(model, min_length)
    return recompute if recompute.layers else None


@dataclass
class MemoryPlan:
    """The memory levers of one run, from its ``train`` config; the loop calls a method where each one acts.

    Pretraining has none of these config keys: its ``MemoryPlan()`` caps the kernel cache only.
    """

    micro_batch_tokens: int | None = None
    release_memory_every: int | None = None
    mmap_threshold_mb: int | None = None
    recompute_min_length: int | str | None = None
    embedding_rows: str = "all"
    recompute: LongBatchRecompute | None = None  # set by :meth:`prepare_model`
    seen_rows: SeenRows | None = None  # set by :meth:`prepare_model`

    @classmethod
    def from_config(cls, train: Any) -> MemoryPlan:
        """The plan of a fine-tuning run's ``train`` section."""
        return cls(
            micro_batch_tokens=train.micro_batch_tokens,
            release_memory_every=train.release_memory_every,
            mmap_threshold_mb=train.mmap_threshold_mb,
            recompute_min_length=train.recompute_min_length,
            embedding_rows=train.embedding_rows,
        )

    def configure_process(self) -> None:
        """Cap oneDNN's kernel cache and fix glibc's mmap threshold: before the first kernel is built and the
        model is allocated (call first)."""
        limit_kernel_cache()
        set_mmap_threshold(self.mmap_threshold_mb)

    def prepare_model(
        self, model: torch.nn.Module, cfg: Any, items: list[dict], tokenizer, device: torch.device
    ) -> None:
        """Before the optimizer exists: recompute the long batches' activations, and train only the embedding
        rows the training ``items`` use (the optimizer then takes :meth:`extra_parameters`)."""
        self.recompute = long_batch_recompute(model, self.recompute_min_length, device)
        if self.embedding_rows == "seen":
            self.seen_rows = apply_seen_rows(model, cfg, items, tokenizer, device)

    def extra_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """Named weights outside the model that the optimizer trains (the compact embedding rows)."""
        return self.seen_rows.named_parameters() if self.seen_rows is not None else []

    def clipped(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        """Every weight whose gradient the norm clipping covers."""
        return [*model.parameters(), *([self.seen_rows.rows] if self.seen_rows is not None else [])]

    def after_resume(self) -> None:
        """A checkpoint was loaded into the model: the compact rows re-read the trained matrix."""
        if self.seen_rows is not None:
            self.seen_rows.refresh()

    def before_batch(self, batch: dict[str, torch.Tensor]) -> list[tuple[dict[str, torch.Tensor], float]]:
        """Switch recomputation for this batch's length; the batch's pieces with their loss weights
        (one piece of weight 1 unless it is over ``micro_batch_tokens``)."""
        if self.recompute is not None and "input_ids" in batch:
            self.recompute.set_for(batch["input_ids"].shape[-1])
        return micro_batches(batch, self.micro_batch_tokens)

    def after_update(self):
        """What the optimizer step calls after updating the weights (the compact rows write back), or None."""
        return self.seen_rows.after_step if self.seen_rows is not None else None

    def after_step(self, step: int, device: torch.device) -> None:
        """After optimizer step ``step``: hand freed memory back every ``release_memory_every`` (CPU)."""
        every = self.release_memory_every
        if every and device.type == "cpu" and step % every == 0:
            release_memory()

    def summary(self) -> dict[str, Any]:
        """What the levers did, for metrics.json's ``train`` section."""
        return {
            "embedding_rows_trained": self.seen_rows.num_rows if self.seen_rows is not None else "all",
            "recomputed_batches": self.recompute.batches if self.recompute is not None else 0,
        }
