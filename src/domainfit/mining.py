"""Mine a task-adaptive pretraining corpus: the pool sentences nearest the task's own texts (kNN-TAPT).

    domainfit mine POOL [POOL ...] --config CONFIG --output mined/corpus.txt [--k 20] [--max-total 50000]
    domainfit mine POOL --task-texts task.txt --exclude val.txt --exclude test.txt --output mined/corpus.txt

Gururangan et al. 2020, "Don't Stop Pretraining" (section 5, kNN-TAPT): embed every task example and every
sentence of a large unlabelled pool, take each task example's k nearest pool sentences, and pretrain on their
union. Here embeddings are mean-pooled and L2-normalised (:mod:`domainfit.models.embedding`), so similarity is a
dot product; the pool is streamed in chunks and only a running top-k per task example is kept (plus the texts
those entries point at), so a pool larger than memory works and the result does not depend on the chunk size.

Pool texts that equal (after whitespace normalisation and case folding) a validation or test text of the task
are excluded before scoring: pretraining on the evaluation texts would inflate the scores. Duplicates inside
the pool are kept once. Output: the corpus (one text a line, written atomically; the format ``domainfit
pretrain`` reads) and, next to it, ``mining.json`` and ``mining_report.md`` (how many, how near, examples).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from domainfit.data.corpus import SourcedText
from domainfit.data.splits import normalize_text
from domainfit.errors import DataError
from domainfit.io.atomic import write_atomic, write_text_atomic
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
                raise DataError(f"--{name.replace('_', '-')} must be >= {low}, found {getattr(self, name)}",
                                fix=f"give --{name.replace('_', '-')} {max(low, 1)} or more")
        if self.max_total is not None and self.max_total < 1:
            raise DataError(f"--max-total must be >= 1, found {self.max_total}", fix="give a positive cap, or leave it out")


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

    def __init__(self, queries: np.ndarray, k: int, *, exclude: set[str] = frozenset(), contrast_sample: int = 2000,
                 seed: int = 0) -> None:
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
            self.top_index[rows] = np.where(np.isneginf(self.top_scores[rows]), -1,
                                            np.take_along_axis(merged_index, order, axis=1))
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
        return [(self.candidates[int(p)].item, float(s)) for p, s in zip(self.top_index[query], self.top_scores[query])
                if p >= 0]

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


def mine(pool: Iterable[SourcedText], task_texts: Sequence[str], embed: Embedder, *, exclude_texts: Iterable[str] = (),
         options: MiningOptions | None = None, progress: Any = None) -> MiningResult:
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
        raise DataError("no task texts to mine for (the task's training texts are empty)",
                        fix="give --task-texts with one text a line, or a --config whose data.train has texts")
    started = time.perf_counter()
    miner = KnnMiner(embed(queries_text), options.k, exclude={leakage_key(t) for t in exclude_texts},
                     contrast_sample=options.contrast_sample, seed=options.seed)
    for chunk in chunked(pool, options.chunk_size):
        admitted = miner.admit(chunk)
        if admitted:
            miner.add(admitted, embed([item.text for item in admitted]))
        if progress is not None:
            progress(miner.n_seen)
    if miner.n_scored == 0:
        raise DataError(f"the pool holds no texts to score ({miner.n_seen} read, {miner.n_excluded} excluded as "
                        "leakage; blank lines and texts under --min-chars characters are skipped)",
                        fix="check the pool paths, --text-column and --min-chars")
    positions = miner.select(options.max_total)
    selected = [miner.candidates[p] for p in positions]
    stats = _statistics(miner, selected, queries_text, options, time.perf_counter() - started)
    return MiningResult(selected=[c.item for c in selected], stats=stats)


def _distribution(values: Sequence[float]) -> dict[str, float] | None:
    if not len(values):
        return None
    a = np.asarray(values, dtype=np.float64)
    return {"n": int(a.size), "min": round(float(a.min()), 4), "p10": round(float(np.quantile(a, 0.1)), 4),
            "median": round(float(np.median(a)), 4), "p90": round(float(np.quantile(a, 0.9)), 4),
            "max": round(float(a.max()), 4), "mean": round(float(a.mean()), 4)}


def _statistics(miner: KnnMiner, selected: list[_Candidate], queries: list[str], options: MiningOptions,
                seconds: float) -> dict[str, Any]:
    n_union = len(miner.select(None))
    selected_median = float(np.median([c.max_similarity for c in selected])) if selected else None
    contrast = miner.contrast
    shown = sorted(random.Random(options.seed).sample(range(len(queries)), min(options.n_examples, len(queries))))
    examples = [{"task_text": queries[q],
                 "nearest": [{"text": item.text, "similarity": round(score, 4), "source": item.source, "line": item.line}
                             for item, score in miner.neighbours(q)[:3]]} for q in shown]
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
        "random_share_at_least_selected_median": (round(sum(v >= selected_median for v in contrast) / len(contrast), 4)
                                                  if contrast and selected_median is not None else None),
        "selected_by_source": dict(Counter(c.item.source for c in selected).most_common()),
        "examples": examples,
        "seconds": round(seconds, 1),
    }


def write_mining_outputs(result: MiningResult, corpus: str | Path, info: dict[str, Any]) -> tuple[Path, Path, Path]:
    """Write the corpus (one text a line), ``mining.json`` and ``mining_report.md`` next to it, each atomically.

    Args:
        result: what :func:`mine` returned.
        corpus: the corpus file to write.
        info: provenance to record (pool paths, task source, embedding model).

    Returns:
        The paths of the corpus, mining.json and mining_report.md.
    """
    corpus = Path(corpus)

    def write_lines(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for item in result.selected:
                f.write(item.text + "\n")

    write_atomic(corpus, write_lines)
    payload = {"corpus": str(corpus), **info, **result.stats}
    json_path, md_path = corpus.parent / "mining.json", corpus.parent / "mining_report.md"
    write_text_atomic(json_path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    write_text_atomic(md_path, format_mining_report(payload))
    return corpus, json_path, md_path


def _fmt_dist(d: dict[str, float] | None) -> str:
    if d is None:
        return "| - | - | - | - | - | - |"
    return f"| {d['n']} | {d['min']:.3f} | {d['p10']:.3f} | {d['median']:.3f} | {d['p90']:.3f} | {d['max']:.3f} |"


def format_mining_report(s: dict[str, Any]) -> str:
    """mining_report.md: what was selected, how near it is compared with the pool, and examples."""
    sel, rnd = s["similarity_selected"], s["similarity_random_pool_sample"]
    lines = [
        "# Mined pretraining corpus",
        "",
        f"- Corpus: `{s['corpus']}` ({s['selected']} texts, one a line)",
        f"- Pool: {', '.join(f'`{p}`' for p in s.get('pool', []))} ({s['pool_texts_read']} texts read, "
        f"{s['pool_texts_scored']} scored)",
        f"- Task texts (queries): {s['task_texts']} from {s.get('task_source', '?')}",
        f"- Embeddings: {s.get('embedding_model', '?')}, mean pooling + L2 norm; cosine similarity",
        f"- Method: {s['method']}; k = {s['k']}, cap = {s['max_total'] or 'none'}",
        f"- Selected: {s['selected']} of {s['pool_texts_scored']} pool texts "
        f"({100 * s['selected_share_of_pool']:.2f}%); {s['selected_before_cap']} before the cap",
        f"- Excluded as leakage (copies of the task's validation/test texts): **{s['excluded_as_leakage']}**",
        f"- Duplicate copies skipped: {s['duplicate_copies_skipped']}",
        "",
        "## How near: cosine similarity to the nearest task text",
        "",
        "| texts | n | min | p10 | median | p90 | max |",
        "|---|---|---|---|---|---|---|",
        f"| selected {_fmt_dist(sel)}",
        f"| random pool sample {_fmt_dist(rnd)}",
        "",
    ]
    share = s.get("random_share_at_least_selected_median")
    if sel and rnd and share is not None:
        # a quarter: the selected median then lies above the random sample's upper quartile
        reading = ("the selected texts are clearly nearer the task than the pool at large" if share <= 0.25 else
                   "the selected texts are only a little nearer than the pool at large: the pool may hold little "
                   "in-domain text, or k is large relative to it")
        lines += [f"Reading: {reading}: {100 * share:.1f}% of random pool texts are as near as the median selected "
                  f"one (selected median {sel['median']:.3f} vs. random median {rnd['median']:.3f}).", ""]
    lines += ["## Selected texts by source", "", "| source | texts | share |", "|---|---|---|"]
    for source, n in s["selected_by_source"].items():
        lines.append(f"| `{source}` | {n} | {100 * n / max(1, s['selected']):.1f}% |")
    lines += ["", "## Examples: task text -> nearest pool texts", ""]
    for ex in s["examples"]:
        lines.append(f"- **{_short(ex['task_text'])}**")
        for nb in ex["nearest"]:
            lines.append(f"  - {nb['similarity']:.3f}  {_short(nb['text'])}  (`{Path(nb['source']).name}` line {nb['line']})")
    if s["excluded_examples"]:
        lines += ["", "## Excluded as leakage (first few)", ""]
        lines += [f"- `{Path(e['source']).name}` line {e['line']}: {_short(e['text'])}" for e in s["excluded_examples"]]
    lines += ["", f"Mining took {s['seconds']} s.", ""]
    return "\n".join(lines)


def _short(text: str, n: int = 140) -> str:
    text = text.replace("|", "/")
    return text if len(text) <= n else text[: n - 3] + "..."


def texts_of(items: Iterable[Any], *, path: str | None = None) -> list[str]:
    """The texts of a task's examples: ``Example.text``, or the tokens joined by spaces (token-level tasks)."""
    texts = []
    for item in items:
        text = getattr(item, "text", None)
        if text is None and getattr(item, "tokens", None) is not None:
            text = " ".join(item.tokens)
        if not isinstance(text, str):
            raise DataError(f"cannot get a text from a {type(item).__name__} example (no .text or .tokens)", path=path,
                            fix="give the task texts as a plain file with --task-texts")
        texts.append(text)
    return texts


def load_task_texts(config: str | None, overrides: Sequence[str] = ()) -> tuple[list[str], list[str], dict[str, Any]]:
    """The training texts and the validation + test texts of a run config, read exactly as ``domainfit train``
    reads them (same task, files, dedup and split).

    Returns:
        (train texts, validation + test texts, provenance for the report).
    """
    from domainfit.config import load_config
    from domainfit.tasks import create_task

    cfg = load_config(config, list(overrides))
    data = create_task(cfg.task).load_data(cfg)
    held_out = [t for name in ("validation", "test") for t in texts_of(data.splits.get(name, []), path=cfg.data.train)]
    info = {"task_source": f"{config} (task {cfg.task}, train split of {cfg.data.train})",
            "counts": {name: len(items) for name, items in data.splits.items()}}
    return texts_of(data.splits["train"], path=cfg.data.train), held_out, info
