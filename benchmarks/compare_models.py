"""One model against several on one labelled file: is it really above each? A table of paired-bootstrap intervals.

    .venv/bin/python benchmarks/compare_models.py runs/fed18x1/fedavg/model \\
        --against runs/central18/centralised/model runs/alone18/site0/model runs/alone18/site1/model

The same numbers as ``domainfit evaluate MODEL DATA --against OTHER`` gives one pair at a time
(:func:`domainfit.metrics.paired_bootstrap.paired_bootstrap`: the examples resampled with replacement, both models
scored on each resample), with MODEL predicted once. Prints a Markdown table: each other model's macro-F1, the
difference in points (MODEL minus it), the 95% interval of the difference, how often MODEL came out ahead, and
whether the interval excludes 0. Default data: the PhraseBank test split in ``../shared/datasets``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST = REPO.parent / "shared" / "datasets" / "financial_phrasebank" / "split_seed42" / "test.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the model folder compared with each of --against")
    parser.add_argument("--against", nargs="+", required=True, help="model folders (text classifiers, same labels)")
    parser.add_argument("--data", type=Path, default=TEST, help=f"labelled CSV (default {TEST})")
    parser.add_argument("--metric", default="f1_macro", help="the score tabled (default f1_macro)")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    args = parser.parse_args()

    import domainfit
    from domainfit.data.readers import read_examples
    from domainfit.metrics.paired_bootstrap import paired_bootstrap

    examples = read_examples(args.data)
    texts = [e.text for e in examples]
    predictor = domainfit.load(args.model, backend="torch")
    labels = predictor.labels
    gold = [labels.index(e.label) for e in examples]
    predicted = predictor.predict_proba(texts).argmax(1).tolist()
    print(
        f"\n{args.model} against each model below on {args.data} ({len(texts)} examples), {args.metric}; paired "
        f"bootstrap, {args.resamples:,} resamples (seed {args.seed}); differences in points\n"
    )
    print("| against | its score | this model | difference | 95% interval | this model ahead in | clear? |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for other_dir in args.against:
        other = domainfit.load(other_dir, backend="torch")
        other_predicted = [labels.index(other.labels[i]) for i in other.predict_proba(texts).argmax(1).tolist()]
        result = paired_bootstrap(
            gold, predicted, other_predicted, len(labels), resamples=args.resamples, seed=args.seed
        )
        score = result["metrics"][args.metric]
        clear = "above" if score["low"] > 0 else "below" if score["high"] < 0 else "no (interval holds 0)"
        print(
            f"| {other_dir} | {score['b']:.4f} | {score['a']:.4f} | {100 * score['difference']:+.1f} | "
            f"{100 * score['low']:+.1f} .. {100 * score['high']:+.1f} | {100 * score['a_ahead']:.1f}% | {clear} |"
        )


if __name__ == "__main__":
    main()
