"""Federated vs centralised vs each site alone: MiniLM + LoRA on PhraseBank dealt into label-skewed sites.

    .venv/bin/python benchmarks/bench_federated.py --out runs/bench-federated     # needs domainfit[federated]

The PhraseBank training split (../shared/datasets/financial_phrasebank/split_seed42) is dealt into ``--sites``
sites with skewed labels: site i holds ``--skew`` of label i's examples and an even share of the rest of
every other label, so no site sees a balanced picture. Every run trains MiniLM with LoRA (r 16, alpha 32, on
query, key, value and the dense layers; lr 1e-3) with ``regularization.class_weights: balanced`` (each run
weighs its loss by its own label counts: at a skewed site this keeps the local update from pulling the global
model towards the site's majority label; without it FedAvg collapsed to the majority class, BENCHMARKS.md) and
is scored on the same val.csv / test.csv:

- federated: ``domainfit federate`` (FedAvg, then FedProx; ``--strategies`` picks), ``--rounds`` rounds of
  ``--local-epochs``;
- centralised: ``domainfit train`` on all sites' data pooled, ``rounds x local-epochs`` epochs;
- each site alone: ``domainfit train`` on that site's file, the same epochs.

It prints one table of test macro-F1 (and accuracy), the bytes the federated runs sent against full
weights, and the precision each run computed in (``train.precision: auto`` chooses per machine, for federated
and centralised runs alike). Not a unit test: several MiniLM trainings, tens of minutes on 2 CPU cores
(minutes on a GPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

from domainfit.config.federate import SERVER_STRATEGIES, STRATEGIES, STRATEGY_KEYS

REPO = Path(__file__).resolve().parents[1]
SPLIT = REPO.parent / "shared" / "datasets" / "financial_phrasebank" / "split_seed42"
LABELS = ("negative", "neutral", "positive")


def deal_sites(out: Path, n_sites: int, skew: float, seed: int) -> list[Path]:
    """Write ``site<i>.csv``: label-skewed shares of train.csv (every row goes to exactly one site)."""
    with (SPLIT / "train.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rng = random.Random(seed)
    shares: list[list[dict]] = [[] for _ in range(n_sites)]
    for k, label in enumerate(LABELS):
        mine = [r for r in rows if r["label"] == label]
        rng.shuffle(mine)
        owner = k % n_sites
        cut = int(skew * len(mine))
        shares[owner] += mine[:cut]
        others = [i for i in range(n_sites) if i != owner]
        for j, row in enumerate(mine[cut:]):
            shares[others[j % len(others)]].append(row)
    files = []
    for i, share in enumerate(shares):
        path = out / f"site{i}.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows({"text": r["text"], "label": r["label"]} for r in share)
        files.append(path)
    return files


def run_config(
    out: Path,
    epochs: int,
    threads: int | None,
    class_weights: str = "balanced",
    learning_rate: float = 1e-3,
    seed: int = 42,
) -> Path:
    path = out / "run.yaml"
    path.write_text(
        "task: text-classification\nmodel:\n  name: minilm\n  max_length: 128\n"
        f"data:\n  train: {SPLIT / 'train.csv'}\n  validation: {SPLIT / 'val.csv'}\n"
        f"  test: {SPLIT / 'test.csv'}\n"
        f"train:\n  epochs: {epochs}\n  batch_size: 32\n  learning_rate: {learning_rate}\n  seed: {seed}\n"
        + (f"  num_threads: {threads}\n" if threads else "")
        # the LoRA setting that matched full fine-tuning on PhraseBank (BENCHMARKS.md, "Parameter-efficient
        # fine-tuning"); peft's default (r 8 on query/value, lr 5e-4) lost 15.7 points there, and collapsed here
        + "peft:\n  method: lora\n  r: 16\n  alpha: 32\n  target_modules: query,key,value,dense\n"
        + f"regularization:\n  class_weights: {class_weights}\n",
        encoding="utf-8",
    )
    return path


def train(config: Path, data: Path, out: Path) -> dict:
    from domainfit.tasks import load_run_config
    from domainfit.training import train as train_run

    cfg = load_run_config(
        config,
        [
            f"data.train={json.dumps(str(data))}",
            f"output.dir={json.dumps(str(out))}",
            "output.overwrite=true",
        ],
    )
    return train_run(cfg)


def federate(config: Path, sites: list[Path], out: Path, strategy: str, args: argparse.Namespace) -> dict:
    from domainfit.config.federate import load_federate_config
    from domainfit.federated.simulation import run_federation

    path = out.with_suffix(".yaml")
    path.write_text(
        f"run_config: {config}\nsites:\n"
        + "".join(f"  site{i}: {p}\n" for i, p in enumerate(sites))
        + f"rounds: {args.rounds}\nlocal_epochs: {args.local_epochs}\nstrategy: {strategy}\n"
        + (f"server_momentum: {args.server_momentum}\n" if strategy in SERVER_STRATEGIES else "")
        + (f"server_learning_rate: {args.server_lr}\n" if strategy in SERVER_STRATEGIES and args.server_lr else "")
        + (f"server_tau: {args.server_tau}\n" if strategy in STRATEGY_KEYS["server_tau"] else "")
        + ("freeze_lora_a: true\n" if args.freeze_lora_a else "")
        + f"output_dir: {out}\noverwrite: true\n",
        encoding="utf-8",
    )
    return run_federation(load_federate_config(path), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-federated"))
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--skew", type=float, default=0.7, help="share of label i's examples at site i")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--strategies",
        nargs="*",
        default=["fedavg", "fedprox"],
        choices=STRATEGIES,
        help="federated runs (none: only the centralised and single-site runs)",
    )
    parser.add_argument(
        "--class-weights", default="balanced", choices=["balanced", "none"], help="regularization.class_weights"
    )
    parser.add_argument(
        "--server-momentum", type=float, default=0.9, help="server_momentum (fedavgm; beta_1 of fedadam, fedyogi)"
    )
    parser.add_argument(
        "--server-lr", type=float, default=None, help="server_learning_rate (default: the strategy's, 1.0 or 0.01)"
    )
    parser.add_argument("--server-tau", type=float, default=1e-3, help="server_tau (fedadam, fedyogi)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="train.learning_rate of every run")
    parser.add_argument("--seed", type=int, default=42, help="train.seed of every run (the sites' dealing stays)")
    parser.add_argument("--freeze-lora-a", action="store_true", help="FFA-LoRA: only LoRA's B matrices travel")
    parser.add_argument("--federated-only", action="store_true", help="skip the centralised and single-site runs")
    parser.add_argument("--no-sites-alone", action="store_true", help="skip the single-site runs")
    parser.add_argument("--no-centralised", action="store_true", help="skip the centralised run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sites = deal_sites(args.out, args.sites, args.skew, seed=0)
    config = run_config(
        args.out, args.rounds * args.local_epochs, args.threads, args.class_weights, args.learning_rate, args.seed
    )

    rows, results_of = [], {}
    for strategy in args.strategies:
        results = results_of[strategy] = federate(config, sites, args.out / strategy, strategy, args)
        final = results["final"]  # the round kept on the sites' validation scores, as train keeps its best epoch
        sent = sum(t["sent"] for t in results["traffic"].values())
        full = sum(t["full_weights"] for t in results["traffic"].values())
        rows.append(
            (
                f"federated {strategy} (round {results['selection']['kept_round']})",
                final["f1_macro"],
                final["accuracy"],
                f"{sent / 1e6:.1f} of {full / 1e6:.0f} MB",
                results["precision"],
            )
        )
    for strategy, row in zip(args.strategies, rows):
        per_round = {r: round(m["f1_macro"], 4) for r, m in results_of[strategy]["global"].items()}
        print(f"{row[0]}: global test macro-F1 by round {per_round}")
        per_round = {r: round(m["f1_macro"], 4) for r, m in results_of[strategy]["global_validation"].items()}
        print(f"{row[0]}: validation macro-F1 by round (chooses) {per_round}")
    if args.federated_only:
        print_table(args, rows)
        return
    pooled = args.out / "pooled.csv"
    with pooled.open("w", encoding="utf-8", newline="") as f:
        f.write("text,label\n")
        for site in sites:
            f.writelines(site.read_text(encoding="utf-8").splitlines(keepends=True)[1:])
    if not args.no_centralised:
        results = train(config, pooled, args.out / "centralised")
        test = results["test"]
        rows.append(("centralised", test["f1_macro"], test["accuracy"], "-", results["train"]["precision"]))
    for site in [] if args.no_sites_alone else sites:
        results = train(config, site, args.out / f"alone-{site.stem}")
        test = results["test"]
        rows.append((f"{site.stem} alone", test["f1_macro"], test["accuracy"], "-", results["train"]["precision"]))
    print_table(args, rows)


def print_table(args: argparse.Namespace, rows: list[tuple]) -> None:
    print(
        f"\nPhraseBank test ({SPLIT / 'test.csv'}), MiniLM + LoRA, {args.sites} sites, skew {args.skew}, "
        f"{args.rounds} rounds x {args.local_epochs} local epochs, class weights {args.class_weights}, "
        f"learning rate {args.learning_rate}, seed {args.seed}\n"
    )
    # precision: what train.precision (auto) chose on this machine; federated and centralised runs alike
    print("| run | macro-F1 | accuracy | bytes sent (vs full weights) | precision |\n|---|---|---|---|---|")
    for name, f1, acc, traffic, precision in rows:
        print(f"| {name} | {f1:.4f} | {acc:.4f} | {traffic} | {precision} |")


if __name__ == "__main__":
    main()
