"""Faithfulness of the explanations: Integrated Gradients and gradient x input vs a random ranking of words.

    # a PhraseBank MiniLM model (or take any trained text-classification folder)
    domainfit train src/domainfit/configs/phrasebank.yaml output.dir=/tmp/pb train.epochs=1
    .venv/bin/python benchmarks/bench_explain.py --model-dir /tmp/pb/model \\
        --data ../shared/datasets/financial_phrasebank/split_seed42/test.csv --n 200

    # Chinese: multilingual-e5-small fine-tuned on ChnSentiCorp (see ../shared/MODELS.md for the weights)
    .venv/bin/python benchmarks/bench_explain.py --model-dir /tmp/zh/model \\
        --data ../shared/datasets/chnsenticorp/dev.tsv --text-column text_a --n 200

For the first ``--n`` texts of the file (a labelled or unlabelled CSV/TSV/JSONL, read as ``domainfit predict``
reads it) it explains the predicted label with each method and measures ERASER's AOPC comprehensiveness (drop
of the predicted label's probability when the top 1/5/10/20/50 % of words are removed; higher is more
faithful) and sufficiency (drop when only they are kept; lower is better), beside the same measures for a
random ranking of the same words (DeYoung et al. 2020). Prints a Markdown table, the time each method took
and the mean IG convergence delta; ``--json`` saves the numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from domainfit.data.readers import read_examples
from domainfit.evaluation.faithfulness import PERCENTS, aopc_of_explanations
from domainfit.serving.explain import explainer_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="a trained text-classification model folder")
    parser.add_argument("--data", required=True, help="file of texts (its first --n are explained)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--format", default="auto")
    parser.add_argument("--n", type=int, default=200, help="texts to explain (default 200)")
    parser.add_argument("--steps", type=int, default=50, help="Integrated Gradients steps (default 50)")
    parser.add_argument("--seeds", type=int, default=3, help="random rankings averaged for the baseline")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args()

    examples = read_examples(
        args.data, format=args.format, text_column=args.text_column, label_column=None, require_labels=False
    )
    texts = [e.text for e in examples[: args.n]]
    explainer = explainer_for(args.model_dir)
    rows, summary = (
        [],
        {
            "model": args.model_dir,
            "data": args.data,
            "texts": len(texts),
            "steps": args.steps,
            "date": date.today().isoformat(),
            "machine": platform.processor() or platform.machine(),
        },
    )
    results = {}
    for method in ("ig", "grad-x-input"):
        start = time.perf_counter()
        results[method] = explainer.explain(texts, method=method, n_steps=args.steps)
        seconds = time.perf_counter() - start
        scores = aopc_of_explanations(results[method], explainer.labels, explainer.probabilities)
        rows.append((method, scores, seconds))
    random_runs = [
        aopc_of_explanations(results["ig"], explainer.labels, explainer.probabilities, random_seed=s)
        for s in range(args.seeds)
    ]
    random_scores = {
        "comprehensiveness": float(np.mean([r["comprehensiveness"] for r in random_runs])),
        "sufficiency": float(np.mean([r["sufficiency"] for r in random_runs])),
        "by_percent": {
            p: {
                m: float(np.mean([r["by_percent"][p][m] for r in random_runs]))
                for m in ("comprehensiveness", "sufficiency")
            }
            for p in PERCENTS
        },
    }
    rows.append((f"random ({args.seeds} seeds)", random_scores, None))
    deltas = [abs(e["convergence_delta"]) for r in results["ig"] for e in r["explanations"][:1]]
    units = {r["unit"] for r in results["ig"]}
    words = np.mean([len(r["explanations"][0]["words"]) for r in results["ig"]])

    print(
        f"\n{len(texts)} texts of {args.data}; model {args.model_dir}; units: {', '.join(sorted(units))}, "
        f"{words:.1f} words per text on average; IG {args.steps} steps, mean |convergence delta| "
        f"{np.mean(deltas):.4f}\n"
    )
    header = (
        "| method | comprehensiveness (higher better) | sufficiency (lower better) | "
        + " | ".join(f"comp@{p}% / suff@{p}%" for p in PERCENTS)
        + " | time (s) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, scores, seconds in rows:
        bins = " | ".join(
            f"{scores['by_percent'][p]['comprehensiveness']:.3f} / {scores['by_percent'][p]['sufficiency']:.3f}"
            for p in PERCENTS
        )
        print(
            f"| {name} | {scores['comprehensiveness']:.3f} | {scores['sufficiency']:.3f} | {bins} | "
            f"{'' if seconds is None else f'{seconds:.0f}'} |"
        )
    summary["methods"] = {name: {**scores, "seconds": seconds} for name, scores, seconds in rows}
    summary["mean_abs_convergence_delta"] = float(np.mean(deltas))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
