"""Metrics of the ``generation`` task: perplexity on reference responses, ROUGE-L and exact match of generations.

Perplexity is exp(mean negative log-likelihood per response token), summed over the whole split (not a mean
of per-example perplexities), so long and short responses weigh by their tokens. ROUGE-L (Lin 2004) is the
F-measure of the longest common subsequence of tokens; English is compared on lower-cased alphanumeric
words (as Google's ``rouge-score`` does without stemming) and Chinese/Japanese/Korean on single characters,
so ``"患者发热"`` vs ``"病人发热"`` shares two of four tokens.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch

from domainfit.metrics.classification import register_selection_metric

register_selection_metric("perplexity", "min")
register_selection_metric("nll_per_token", "min")

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


def perplexity_metrics(nll_and_count: torch.Tensor) -> dict[str, float]:
    """Split-level perplexity from per-example (summed NLL, response-token count), shape (n, 2)."""
    nll = float(nll_and_count[:, 0].double().sum())
    tokens = float(nll_and_count[:, 1].double().sum())
    if tokens == 0:
        raise ValueError("no response tokens to score (every label is -100)")
    mean = nll / tokens
    return {
        "n": int(nll_and_count.shape[0]),
        "perplexity": math.exp(min(mean, 700.0)),
        "nll_per_token": mean,
        "response_tokens": int(tokens),
    }


def rouge_tokens(text: str) -> list[str]:
    """Lower-cased words (letters/digits), with every CJK character a token of its own."""
    return _TOKEN.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, O(len(a) * len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 of one prediction against one reference (0 when either has no tokens)."""
    pred, ref = rouge_tokens(prediction), rouge_tokens(reference)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def generation_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-L F1 and exact match (after whitespace/case normalisation) over paired texts."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        return {}
    scores = [rouge_l(p, r) for p, r in zip(predictions, references)]
    exact = [" ".join(p.lower().split()) == " ".join(r.lower().split()) for p, r in zip(predictions, references)]
    return {"rougeL": sum(scores) / len(scores), "exact_match": sum(exact) / len(exact), "generated": len(scores)}
