"""Batching: length-grouped shuffled batches (little padding) and dynamic-padding collation.

Length grouping follows the "megabatch" recipe (as in fairseq and Trainer's ``LengthGroupedSampler``):
shuffle all indices, cut them into chunks of ``batch_size * group_size``, sort each chunk by length, cut it
into batches, then shuffle the batches. Every epoch sees a different order (good for accuracy) while each
batch holds texts of similar length (good for speed). The order is a pure function of (seed, epoch), so a
resumed run regenerates it and skips the batches it already did.

With ``balance_tokens`` each sorted chunk is cut into the same number of batches, but by padded tokens
rather than rows (:func:`token_balanced_cuts`): short texts ride in larger batches, long ones in smaller,
so the largest batch holds about the mean number of tokens instead of ``batch_size x max_length``. Steps per
epoch and the mean batch size stay as with fixed rows; the peak activation memory falls to the mean batch's.

With several processes (``torchrun``, ``accelerate launch``) every process makes the same global batches and
trains on its share of the rows of each one (:func:`shard_rows`), rather than on every k-th batch: so
``train.batch_size`` stays the batch of one optimizer step, and a run takes the same steps, schedule and
batches whatever the number of processes (the world size is a speed setting, not a hyperparameter).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


class EpochBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields lists of indices for one epoch, deterministic in (seed, epoch), resumable mid-epoch.

    Args:
        lengths: token length of every example.
        batch_size: examples per batch.
        seed: base seed; epoch ``e`` uses ``seed + e``.
        shuffle: shuffle at all (False for evaluation order).
        group_by_length: group similar lengths into batches.
        group_size: batches per length-sorted chunk (larger: less padding, less randomness).
        balance_labels: class id of every example: oversample so each class appears as often as the
            largest one in every epoch (all of a class's examples, repeated, plus a seeded random
            remainder; drawn anew each epoch, so still deterministic in (seed, epoch)). None: no oversampling.
        balance_tokens: with ``group_by_length``, size each chunk's batches by padded tokens (rows x longest
            length) rather than rows, keeping the number of batches: see the module docstring.
        length_multiple: the collator pads each batch's length up to a multiple of this; token-balanced cuts
            count the padded lengths, so batches fall into a few (rows, length) shapes.
        num_shards: processes that share each batch (the world size).
        shard: this process's index among them (its rank); see :meth:`shard_of`.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        group_by_length: bool = True,
        group_size: int = 50,
        balance_labels: Sequence[int] | None = None,
        balance_tokens: bool = False,
        length_multiple: int | None = None,
        num_shards: int = 1,
        shard: int = 0,
    ) -> None:
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} is not one of the {num_shards} shards")
        self.num_shards = num_shards
        self.shard = shard
        self.lengths = np.asarray(lengths)
        self.balance_labels = None if balance_labels is None else np.asarray(balance_labels)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self.group_size = group_size
        self.balance_tokens = balance_tokens and group_by_length
        self.length_multiple = length_multiple
        self._cache: tuple[int, list[list[int]]] | None = None  # (epoch, its batches)
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order; ``start_batch`` skips batches already trained on (resume)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def batches(self) -> list[list[int]]:
        """All batches of the current epoch, in order."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._make_batches())
        return self._cache[1]

    def _make_batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        pool = self._epoch_pool(rng)
        n = len(pool)
        order = pool[rng.permutation(n)] if self.shuffle else pool
        if self.group_by_length and n:
            chunks = np.array_split(order, max(1, -(-n // (self.batch_size * self.group_size))))
            # stable sort, longest first inside each chunk
            chunks = [c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks]
            order = np.concatenate(chunks)
        if self.balance_tokens and n:
            # as many batches per chunk as fixed rows would make in all (ceil(n / batch_size)), spread evenly
            per_chunk = [len(k) for k in np.array_split(np.arange(-(-n // self.batch_size)), len(chunks))]
            batches = []
            for chunk, k in zip(chunks, per_chunk):
                lengths = self.lengths[chunk]
                if self.length_multiple:
                    lengths = -(-lengths // self.length_multiple) * self.length_multiple
                cuts = token_balanced_cuts(lengths, k)
                batches += [chunk[a:b].tolist() for a, b in zip(cuts[:-1], cuts[1:])]
        else:
            batches = [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        if self.shuffle and self.group_by_length:
            perm = rng.permutation(len(batches))
            batches = [batches[i] for i in perm]
        return batches

    def _epoch_pool(self, rng: np.random.Generator) -> np.ndarray:
        """Indices of this epoch's examples: all of them, or the class-balanced oversampled multiset."""
        if self.balance_labels is None:
            return np.arange(len(self.lengths))
        classes, counts = np.unique(self.balance_labels, return_counts=True)
        target = counts.max()
        parts = []
        for c in classes:
            members = np.flatnonzero(self.balance_labels == c)
            repeats, remainder = divmod(target, len(members))
            parts += [np.tile(members, repeats), rng.choice(members, remainder, replace=False)]
        return np.sort(np.concatenate(parts), kind="stable")

    def epoch_size(self) -> int:
        """Examples per epoch (more than the data when oversampling)."""
        if self.balance_labels is None:
            return len(self.lengths)
        _, counts = np.unique(self.balance_labels, return_counts=True)
        return int(counts.max() * len(counts))

    def __iter__(self) -> Iterator[list[int]]:
        """The global batches from ``start_batch`` on; a process trains on :meth:`shard_of` each."""
        yield from self.batches()[self.start_batch :]

    def shard_of(self, batch: list[int]) -> tuple[list[int], float]:
        """This process's rows of a global batch and its loss weight: see :func:`shard_rows`."""
        return shard_rows(batch, self.num_shards, self.shard)

    def __len__(self) -> int:
        return -(-self.epoch_size() // self.batch_size) - self.start_batch


def shard_rows(batch: Sequence[int], num_shards: int, shard: int) -> tuple[list[int], float]:
    """Rows ``shard, shard + num_shards, ...`` of a global batch, and the weight of this shard's mean loss.

    The rows are taken strided, not in one block, because a length-grouped batch is sorted longest first:
    strided, every shard gets about the same padded width and finishes its step at the same time. Data-parallel
    training averages the shards' gradients, so a shard's mean loss is weighted by ``its rows x num_shards /
    batch rows``: the average is then the whole batch's mean, also when the rows do not divide evenly. A shard
    left without rows (a batch of fewer rows than processes) gets the batch's first row with weight 0: it must
    still run a forward and backward pass, since every process takes part in each gradient exchange.

    Args:
        batch: the global batch's example indices.
        num_shards: how many processes share it.
        shard: this process's index.

    Returns:
        (rows, weight); ``(list(batch), 1.0)`` with one shard.
    """
    if num_shards == 1:
        return list(batch), 1.0
    rows = list(batch[shard::num_shards])
    if not rows:
        return list(batch[:1]), 0.0
    return rows, len(rows) * num_shards / len(batch)


def token_balanced_cuts(lengths: np.ndarray, k: int) -> list[int]:
    """Cut a longest-first sequence of lengths into exactly ``k`` contiguous batches of about equal padded tokens.

    A batch's padded size is its row count times its first (longest) length. Binary search finds the smallest
    token budget that needs at most ``k`` greedy batches; batches with the most rows are then halved until
    there are exactly ``k``. Returns the cut positions ``[0, ..., len(lengths)]``.
    """
    n = len(lengths)
    k = max(1, min(k, n))
    lengths = np.maximum(np.asarray(lengths, dtype=np.int64), 1)

    def greedy(budget: int) -> list[int]:
        cuts, i = [0], 0
        while i < n:
            i = min(n, i + max(1, budget // int(lengths[i])))
            cuts.append(i)
        return cuts

    lo, hi = int(lengths.max()), int(lengths.max()) * n  # hi: one batch
    while lo < hi:
        mid = (lo + hi) // 2
        if len(greedy(mid)) - 1 <= k:
            hi = mid
        else:
            lo = mid + 1
    cuts = greedy(lo)
    while len(cuts) - 1 < k:  # fewer than k: split the batch with the most rows
        sizes = np.diff(cuts)
        j = int(np.argmax(sizes))
        cuts.insert(j + 1, cuts[j] + int(sizes[j]) // 2)
    return cuts


def pad_batch(sequences: Sequence[Sequence[int]], pad_value: int, multiple_of: int | None = None) -> torch.Tensor:
    """Right-pad integer sequences to the longest in the batch (rounded up to ``multiple_of``).

    Rounding the width bounds the number of distinct batch shapes, and with it the memory that CPU kernels
    keep per shape (oneDNN primitives, allocator pools): see benchmarks/bench_train.py.

    Returns:
        (batch, seq) int64.
    """
    width = max(len(s) for s in sequences)
    if multiple_of:
        width = -(-width // multiple_of) * multiple_of
    out = torch.full((len(sequences), width), pad_value, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out
