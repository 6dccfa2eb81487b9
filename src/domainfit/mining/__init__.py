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

from domainfit.mining.knn import KnnMiner, MiningOptions, MiningResult, chunked, leakage_key, mine
from domainfit.mining.report import format_mining_report, write_mining_outputs
from domainfit.mining.task_texts import load_task_texts, texts_of

__all__ = [
    "KnnMiner",
    "MiningOptions",
    "MiningResult",
    "chunked",
    "format_mining_report",
    "leakage_key",
    "load_task_texts",
    "mine",
    "texts_of",
    "write_mining_outputs",
]
