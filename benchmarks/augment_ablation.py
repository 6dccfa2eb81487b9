"""Does augmentation help when labelled data is scarce? PhraseBank with K examples per class, with and without.

    PYTHONPATH=src .venv/bin/python benchmarks/augment_ablation.py --per-class 16 64 --seeds 1 2 3 \\
        --out runs/augment-ablation                      # add --mlm-model DIR to also try the mlm op

For each K and seed it draws K training sentences per class (seeded, from the fixed split
``financial_phrasebank/split_seed42/train.csv``; the subset files go under ``--out``, not into the repo),
then fine-tunes the packaged MiniLM once per condition with the settings of
``src/domainfit/configs/phrasebank_augment.yaml`` and ``--epochs`` epochs: ``none`` (augment.ops empty),
``eda`` (swap, delete, insert, synonym with docs/examples/synonyms.txt) and, given ``--mlm-model``,
``eda+mlm``. The best epoch is picked on the full validation file (484 sentences) and scored on the full
test file (484). Prints test accuracy and macro-F1, mean and standard deviation over seeds, per K and
condition, and writes them to ``--out/results.md``.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
from collections import defaultdict
from pathlib import Path

from domainfit.config import load_config
from domainfit.training import train

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "src" / "domainfit" / "configs" / "phrasebank_augment.yaml"


def write_subset(train_csv: Path, per_class: int, seed: int, out: Path) -> Path:
    """K rows per label drawn with ``seed``, written as CSV (text,label)."""
    with open(train_csv, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_label = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    rng = random.Random(seed)
    chosen = [row for label in sorted(by_label) for row in rng.sample(by_label[label], per_class)]
    rng.shuffle(chosen)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in chosen)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", type=Path, default=REPO.parent / "shared/datasets/financial_phrasebank/split_seed42")
    parser.add_argument("--per-class", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--mlm-model", default=None, help="a masked LM with its head: adds the eda+mlm condition")
    parser.add_argument("--num-threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/augment-ablation"))
    args = parser.parse_args()

    conditions = {"none": ["augment.ops=[]"],
                  "eda": ["augment.ops=[swap,delete,insert,synonym]"]}
    if args.mlm_model:
        conditions["eda+mlm"] = ["augment.ops=[swap,delete,insert,synonym,mlm]", f"augment.mlm_model={args.mlm_model}"]
    scores: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    for k in args.per_class:
        for seed in args.seeds:
            subset = write_subset(args.split / "train.csv", k, seed, args.out / "data" / f"k{k}-seed{seed}.csv")
            for name, extra in conditions.items():
                overrides = [f"data.train={subset}", f"data.validation={args.split / 'val.csv'}",
                             f"data.test={args.split / 'test.csv'}", f"train.epochs={args.epochs}",
                             f"train.seed={seed}", "train.batch_size=16", f"augment.rate={args.rate}",
                             f"augment.alpha={args.alpha}", f"augment.lexicon={REPO / 'docs/examples/synonyms.txt'}",
                             f"output.dir={args.out / f'k{k}-seed{seed}-{name}'}", "output.overwrite=true", *extra]
                if args.num_threads:
                    overrides.append(f"train.num_threads={args.num_threads}")
                test = train(load_config(CONFIG, overrides))["test"]
                scores[(k, name)].append((test["accuracy"], test["f1_macro"]))
                print(f"K={k} seed={seed} {name}: accuracy {test['accuracy']:.4f} macro-F1 {test['f1_macro']:.4f}",
                      flush=True)
    lines = [f"PhraseBank, K sentences per class, MiniLM, {args.epochs} epochs, seeds {args.seeds}, "
             f"rate {args.rate}, alpha {args.alpha}; test set 484 sentences", "",
             "| K per class | augmentation | test accuracy | test macro-F1 |", "|---|---|---|---|"]
    for (k, name), values in scores.items():
        acc, f1 = [v[0] for v in values], [v[1] for v in values]
        sd = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)
        lines.append(f"| {k} | {name} | {statistics.mean(acc):.3f} ± {sd(acc):.3f} | "
                     f"{statistics.mean(f1):.3f} ± {sd(f1):.3f} |")
    table = "\n".join(lines)
    print(table)
    (args.out / "results.md").write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
