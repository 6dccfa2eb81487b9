"""Is one model, or one recipe over seeds, really above another on one labelled file? Paired-bootstrap intervals.

    # one model against several
    .venv/bin/python benchmarks/compare_models.py runs/fed18x1/fedavg/model \\
        --against runs/central18/centralised/model runs/alone18/site0/model runs/alone18/site1/model
    # one recipe against another, seed by seed, and the mean over the seeds
    .venv/bin/python benchmarks/compare_models.py --pair runs/fed18x1/fedavg/model runs/alone18/site0/model \\
        --pair runs/fed18-seed1/fedavg/model runs/alone18-seed1/site0/model

The same numbers as ``domainfit evaluate MODEL DATA --against OTHER`` gives one pair at a time
(:mod:`domainfit.metrics.paired_bootstrap`: the examples resampled with replacement, both models scored on each
resample), each model predicted once. With ``--pair`` (two or more), a last row bootstraps the mean difference
over the pairs: every pair is scored on the same resamples, and their differences are averaged resample by
resample. That covers the test set's luck for the mean over the seeds run, not the luck of seeds not run.
Prints a Markdown table: the scores, the difference in points, the 95% interval of the difference, how often the
first model came out ahead, and whether the interval excludes 0. Default data: the PhraseBank test split in
``../shared/datasets``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST = REPO.parent / "shared" / "datasets" / "financial_phrasebank" / "split_seed42" / "test.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="the model folder compared with each of --against")
    parser.add_argument("--against", nargs="+", default=[], help="model folders (text classifiers, same labels)")
    parser.add_argument(
        "--pair", nargs=2, action="append", default=[], metavar=("A", "B"), help="compare A with B (repeatable)"
    )
    parser.add_argument("--data", type=Path, default=TEST, help=f"labelled CSV (default {TEST})")
    parser.add_argument("--metric", default="f1_macro", help="the score tabled (default f1_macro)")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    args = parser.parse_args()
    pairs = [(args.model, other) for other in args.against] if args.model else []
    pairs += [tuple(pair) for pair in args.pair]
    if not pairs or (args.model and not args.against):
        parser.error("give MODEL --against OTHER..., or --pair A B (repeatable)")

    import numpy as np

    import domainfit
    from domainfit.data.readers import read_examples
    from domainfit.metrics.paired_bootstrap import bootstrap_differences, summarise

    examples = read_examples(args.data)
    texts = [e.text for e in examples]
    labels: list[str] = []
    predictions: dict[str, list[int]] = {}
    for folder in dict.fromkeys(folder for pair in pairs for folder in pair):  # each model predicted once
        predictor = domainfit.load(folder, backend="torch")
        labels = labels or predictor.labels
        predictions[folder] = [labels.index(predictor.labels[i]) for i in predictor.predict_proba(texts).argmax(1)]
    gold = [labels.index(e.label) for e in examples]
    print(
        f"\n{args.data} ({len(texts)} examples), {args.metric}; paired bootstrap, {args.resamples:,} resamples "
        f"(seed {args.seed}); differences in points, first model minus second\n"
    )
    print("| model | against | its score | against's | difference | 95% interval | model ahead in | clear? |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    observed_all, differences_all = [], []
    for a, b in pairs:
        observed, differences = bootstrap_differences(
            gold, predictions[a], predictions[b], len(labels), resamples=args.resamples, seed=args.seed
        )
        observed_all.append(observed[args.metric])
        differences_all.append(differences[args.metric])
        _row(a, b, summarise({args.metric: observed[args.metric]}, {args.metric: differences[args.metric]}))
    if not args.model and len(pairs) > 1:
        mean_observed = tuple(float(np.mean([o[i] for o in observed_all])) for i in (0, 1))
        mean = summarise({args.metric: mean_observed}, {args.metric: np.mean(differences_all, axis=0)})
        _row(f"mean of the {len(pairs)} first models", "mean of the second ones", mean)


def _row(a: str, b: str, metrics: dict) -> None:
    score = next(iter(metrics.values()))
    clear = "above" if score["low"] > 0 else "below" if score["high"] < 0 else "no (interval holds 0)"
    print(
        f"| {a} | {b} | {score['a']:.4f} | {score['b']:.4f} | {100 * score['difference']:+.1f} | "
        f"{100 * score['low']:+.1f} .. {100 * score['high']:+.1f} | {100 * score['a_ahead']:.1f}% | {clear} |"
    )


if __name__ == "__main__":
    main()
