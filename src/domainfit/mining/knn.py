"""The kNN-TAPT selection: a streamed top-k of pool texts per task text (see the package docstring for the method).

Embeddings are mean-pooled and L2-normalised, so similarity is a dot product; the pool is read in chunks and only
a running top-k per task text is kept, so a pool larger than memory works and the result does not depend on the
chunk size. Pool texts equal to a validation or test text (``leakage_key``) are excluded before scoring.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from domainfit.data.corpus import SourcedText
from domainfit.data.splits import normalize_text
from domainfit.errors import DataError
from domainfit.models.embedding import Embedder


def leakage_key(text: str) -> str:
    """The form pool texts are compared to evaluation texts in: normalised whitespace, case folded (stricter than
    training dedup, because a pretraining copy of a test sentence that differs only in case still leaks it)."""
    return normalize_text(text).casefold()


@dataclass
class MiningOptions:
    """How many neighbours to take and how to stream.

    Attributes:
        k: pool sentences taken per task example (Gururangan et al. use k up to 500 on 1M-sentence pools).
        max_total: cap on the corpus size; the best-ranked neighbours are kept first (every task example's 1st
            neighbour, then every 2nd ...), so a cap keeps coverage of all task examples. None: no cap.
        chunk_size: pool texts embedded and scored at a time (memory ~ chunk_size x (dim + 2,048) floats).
        min_chars: pool texts shorter than this are skipped.
        contrast_sample: size of the random pool sample whose similarities are reported for contrast.
        n_examples: task examples shown with their nearest pool sentences in the report.
        seed: seed for the contrast sample and the shown examples.
    """

    k: int = 20
    max_total: int | None = None
    chunk_size: int = 1024
    min_chars: int = 10
    contrast_sample: int = 2000
    n_examples: int = 5
    seed: int = 0

    def check(self) -> None:
        for name, low in [("k", 1), ("chunk_size", 1), ("min_chars", 0), ("contrast_sample", 0), ("n_examples", 0)]:
            if getattr(self, name) < low:
                raise DataError(
                    f"--{name.replace('_', '-')} must be >= {low}, found {getattr(self, name)}",
                    fix=f"give --{name.replace('_', '-')} {max(low, 1)} or more",
                )
        if self.max_total is not None and self.max_total < 1:
            raise DataError(
                f"--max-total must be >= 1, found {self.max_total}", fix="give a positive cap, or leave it out"
            )


_QUERY_BLOCK = 2048


@dataclass
class _Candidate:
    item: SourcedText
    max_similarity: float  # to the nearest task example


@dataclass
class MiningResult:
    """The selected corpus (in pool order) and everything the report says about it."""

    selected: list[SourcedText]
    stats: dict[str, Any] = field(default_factory=dict)


class KnnMiner:
    """A running top-k of pool texts per task example, fed one chunk of the pool at a time.

    Ties are broken by pool position (the earlier text wins), so any chunking of the same pool gives the same
    selection. Memory: the (task examples, k) score and index tables, plus the texts they point at.

    Args:
        queries: (n_task, dim) unit-length embeddings of the task's training texts.
        k: neighbours kept per task example.
        exclude: leakage keys (see :func:`leakage_key`) of texts that must not be selected.
        contrast_sample: reservoir size for the random pool sample's similarities.
        seed: reservoir seed.
    """

    def __init__(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: set[str] = frozenset(),
        contrast_sample: int = 2000,
        seed: int = 0,
    ) -> None:
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)  # (n_task, dim)
        self.k = k
        self.exclude = exclude
        n_task = len(self.queries)
        self.top_scores = np.full((n_task, k), -np.inf, dtype=np.float32)  # (n_task, k), best first
        self.top_index = np.full((n_task, k), -1, dtype=np.int64)  # (n_task, k) pool positions, -1 = empty
        self.candidates: dict[int, _Candidate] = {}
        self._candidate_keys: dict[str, int] = {}
        self.n_seen = 0  # pool texts read, admitted or not
        self.n_excluded = 0
        self.excluded_examples: list[SourcedText] = []
        self.n_duplicates_skipped = 0
        self._rng = random.Random(seed)
        self._contrast_size = contrast_sample
        self._contrast: list[float] = []
        self.n_scored = 0  # pool texts scored (admitted); their positions are 0..n_scored-1

    def admit(self, items: Sequence[SourcedText]) -> list[SourcedText]:
        """Drop the texts of a pool chunk that must not be scored: copies of held-out (validation/test) texts, and
        copies of a text already held. Called before embedding, so dropped texts cost nothing.

        A copy of a text evicted earlier is admitted but cannot get back in (same score, later position, and the
        top-k only gets stricter), so the final union is duplicate-free without remembering the whole pool.
        """
        admitted, in_chunk = [], set()
        for item in items:
            self.n_seen += 1
            key = normalize_text(item.text)
            if leakage_key(item.text) in self.exclude:
                self.n_excluded += 1
                if len(self.excluded_examples) < 5:
                    self.excluded_examples.append(item)
            elif key in self._candidate_keys or key in in_chunk:
                self.n_duplicates_skipped += 1
            else:
                in_chunk.add(key)
                admitted.append(item)
        return admitted

    def add(self, items: Sequence[SourcedText], vectors: np.ndarray) -> None:
        """Score admitted pool texts (see :meth:`admit`) against every task example; update the running top-k.

        Args:
            items: the admitted texts of one chunk, in pool order.
            vectors: their (len(items), dim) unit-length embeddings.
        """
        n = len(items)
        positions = np.arange(self.n_scored, self.n_scored + n, dtype=np.int64)  # (n,) order among scored texts
        vectors = np.asarray(vectors, dtype=np.float32).reshape(n, -1)  # (n, dim)
        nearest = np.full(n, -np.inf, dtype=np.float32)  # (n,) similarity to the nearest task text
        # task texts in blocks, so memory stays ~ block x (k + n) whatever the number of task texts
        for start in range(0, len(self.queries), _QUERY_BLOCK):
            rows = slice(start, start + _QUERY_BLOCK)
            scores = self.queries[rows] @ vectors.T  # (block, n)
            nearest = np.maximum(nearest, scores.max(axis=0))
            merged_scores = np.concatenate([self.top_scores[rows], scores], axis=1)  # (block, k + n)
            merged_index = np.concatenate([self.top_index[rows], np.broadcast_to(positions, scores.shape)], axis=1)
            # stable sort: among equal scores the earlier column wins, and columns are in pool order
            order = np.argsort(-merged_scores, axis=1, kind="stable")[:, : self.k]  # (block, k)
            self.top_scores[rows] = np.take_along_axis(merged_scores, order, axis=1)
            self.top_index[rows] = np.where(
                np.isneginf(self.top_scores[rows]), -1, np.take_along_axis(merged_index, order, axis=1)
            )
        self._sample_contrast(nearest)

        kept = set(np.unique(self.top_index[self.top_index >= 0]).tolist())
        for i, item in enumerate(items):
            position = int(positions[i])
            if position in kept:
                self.candidates[position] = _Candidate(item, float(nearest[i]))
                self._candidate_keys[normalize_text(item.text)] = position
        for position in [p for p in self.candidates if p not in kept]:
            del self._candidate_keys[normalize_text(self.candidates.pop(position).item.text)]

    def _sample_contrast(self, similarities: np.ndarray) -> None:
        """Reservoir-sample (Algorithm R) the nearest-task-example similarity of random pool texts."""
        for value in similarities.tolist():
            if self.n_scored < self._contrast_size:
                self._contrast.append(value)
            else:
                j = self._rng.randint(0, self.n_scored)
                if j < self._contrast_size:
                    self._contrast[j] = value
            self.n_scored += 1

    def neighbours(self, query: int) -> list[tuple[SourcedText, float]]:
        """The current nearest pool texts of one task example, nearest first."""
        return [
            (self.candidates[int(p)].item, float(s))
            for p, s in zip(self.top_index[query], self.top_scores[query])
            if p >= 0
        ]

    def select(self, max_total: int | None = None) -> list[int]:
        """The union of every task example's neighbours (pool positions, in pool order), capped at ``max_total``:
        rank 1 of every task example first, then rank 2, ...; within a rank, nearer first."""
        best: dict[int, tuple[int, float]] = {}
        for rank in range(self.k):
            for position, score in zip(self.top_index[:, rank].tolist(), self.top_scores[:, rank].tolist()):
                if position >= 0 and position not in best:
                    best[position] = (rank, -score)
        ordered = sorted(best, key=lambda p: (*best[p], p))
        if max_total is not None:
            ordered = ordered[:max_total]
        return sorted(ordered)

    @property
    def contrast(self) -> list[float]:
        return list(self._contrast)


def chunked(items: Iterable[SourcedText], size: int) -> Iterator[list[SourcedText]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    chunk: list[SourcedText] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def mine(
    pool: Iterable[SourcedText],
    task_texts: Sequence[str],
    embed: Embedder,
    *,
    exclude_texts: Iterable[str] = (),
    options: MiningOptions | None = None,
    progress: Any = None,
) -> MiningResult:
    """Select the pool texts nearest the task texts (kNN-TAPT), streaming the pool.

    Args:
        pool: the unlabelled pool, streamed (see :func:`domainfit.data.corpus.iter_texts`).
        task_texts: the task's training texts (the queries); duplicates are embedded once.
        embed: texts -> unit-length row vectors.
        exclude_texts: the task's validation and test texts: pool copies of them are never selected.
        options: k, cap, chunk size ...
        progress: optional callable(n_pool_texts_seen) called after each chunk.

    Returns:
        The selected texts in pool order and the statistics for the report.
    """
    options = options or MiningOptions()
    options.check()
    queries_text = list(dict.fromkeys(normalize_text(t) for t in task_texts if t.strip()))
    if not queries_text:
        raise DataError(
            "no task texts to mine for (the task's training texts are empty)",
            fix="give --task-texts with one text a line, or a --config whose data.train has texts",
        )
    started = time.perf_counter()
    miner = KnnMiner(
        embed(queries_text),
        options.k,
        exclude={leakage_key(t) for t in exclude_texts},
        contrast_sample=options.contrast_sample,
        seed=options.seed,
    )
    for chunk in chunked(pool, options.chunk_size):
        admitted = miner.admit(chunk)
        if admitted:
            miner.add(admitted, embed([item.text for item in admitted]))
        if progress is not None:
            progress(miner.n_seen)
    if miner.n_scored == 0:
        raise DataError(
            f"the pool holds no texts to score ({miner.n_seen} read, {miner.n_excluded} excluded as "
            "leakage; blank lines and texts under --min-chars characters are skipped)",
            fix="check the pool paths, --text-column and --min-chars",
        )
    positions = miner.select(options.max_total)
    selected = [miner.candidates[p] for p in positions]
    stats = _statistics(miner, selected, queries_text, options, time.perf_counter() - started)
    return MiningResult(selected=[c.item for c in selected], stats=stats)


def _distribution(values: Sequence[float]) -> dict[str, float] | None:
    if not len(values):
        return None
    a = np.asarray(values, dtype=np.float64)
    return {
        "n": int(a.size),
        "min": round(float(a.min()), 4),
        "p10": round(float(np.quantile(a, 0.1)), 4),
        "median": round(float(np.median(a)), 4),
        "p90": round(float(np.quantile(a, 0.9)), 4),
        "max": round(float(a.max()), 4),
        "mean": round(float(a.mean()), 4),
    }


def _statistics(
    miner: KnnMiner, selected: list[_Candidate], queries: list[str], options: MiningOptions, seconds: float
) -> dict[str, Any]:
    n_union = len(miner.select(None))
    selected_median = float(np.median([c.max_similarity for c in selected])) if selected else None
    contrast = miner.contrast
    shown = sorted(random.Random(options.seed).sample(range(len(queries)), min(options.n_examples, len(queries))))
    examples = [
        {
            "task_text": queries[q],
            "nearest": [
                {"text": item.text, "similarity": round(score, 4), "source": item.source, "line": item.line}
                for item, score in miner.neighbours(q)[:3]
            ],
        }
        for q in shown
    ]
    return {
        "method": "kNN-TAPT (Gururangan et al. 2020): union of each task example's k nearest pool texts, "
        "cosine similarity of mean-pooled, L2-normalised embeddings",
        "k": options.k,
        "max_total": options.max_total,
        "task_texts": len(queries),
        "pool_texts_read": miner.n_seen,
        "pool_texts_scored": miner.n_scored,
        "excluded_as_leakage": miner.n_excluded,
        "excluded_examples": [{"text": i.text, "source": i.source, "line": i.line} for i in miner.excluded_examples],
        "duplicate_copies_skipped": miner.n_duplicates_skipped,
        "selected_before_cap": n_union,
        "selected": len(selected),
        "selected_share_of_pool": round(len(selected) / miner.n_scored, 6),
        "similarity_selected": _distribution([c.max_similarity for c in selected]),
        "similarity_random_pool_sample": _distribution(contrast),
        # how separated the two are: the share of random pool texts at least as near as the median selected one
        "random_share_at_least_selected_median": (
            round(sum(v >= selected_median for v in contrast) / len(contrast), 4)
            if contrast and selected_median is not None
            else None
        ),
        "selected_by_source": dict(Counter(c.item.source for c in selected).most_common()),
        "examples": examples,
        "seconds": round(seconds, 1),
    }
