"""kNN-TAPT mining on a mixed real pool: is the mined corpus mostly from the task's own domain?

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mining_demo.py            # ~1.5 min on 1 core
    PYTHONPATH=src .venv/bin/python benchmarks/mining_demo.py --task 1000 --per-source 5000 --k 10   # larger

Task: the first ``--task`` sentences of Financial PhraseBank's seed-42 train split (its val/test splits are the
held-out texts). Pool, one file per source (written to ``--work``):

- ``phrasebank_other.txt``: other PhraseBank train sentences (in domain, not in the task's train subset),
- ``phrasebank_heldout.txt``: the task's validation + test sentences (must all be excluded as leakage),
- ``symptom2disease.txt``: patient symptom descriptions (English, medical),
- ``ncbi_disease.txt``: PubMed abstract sentences (English, biomedical),
- ``chnsenticorp.txt``: Chinese hotel/product reviews (another language).

It runs the real ``domainfit mine`` command and prints, from its mining.json, the share of the mined corpus per
source: the precision of source is the PhraseBank share, against the PhraseBank share of the scored pool (what a
random selection of the same size would give).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def read_csv_column(path: Path, column: str, *, encoding: str = "utf-8") -> list[str]:
    with open(path, encoding=encoding, newline="") as f:
        return [row[column] for row in csv.DictReader(f)]


def ncbi_sentences(path: Path) -> list[str]:
    """Sentences of a CoNLL (token TAB tag) file, tokens joined by spaces."""
    sentences, tokens = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            tokens.append(line.split("\t")[0])
        elif tokens:
            sentences.append(" ".join(tokens))
            tokens = []
    return sentences + ([" ".join(tokens)] if tokens else [])


def write_lines(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(" ".join(t.split()) + "\n" for t in texts), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", default=os.environ.get("DOMAINFIT_DATA", str(REPO.parent / "shared" / "datasets"))
    )
    parser.add_argument("--work", default="runs/mining-demo", help="folder for the pool files and the mined corpus")
    parser.add_argument("--task", type=int, default=200, help="PhraseBank train sentences used as the task")
    parser.add_argument(
        "--per-source", type=int, default=500, help="pool texts per out-of-domain source / other PhraseBank"
    )
    parser.add_argument("--chinese", type=int, default=200, help="ChnSentiCorp reviews in the pool")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = Path(args.data_dir)
    pb = data / "financial_phrasebank" / "split_seed42"
    if not (pb / "train.csv").is_file():
        print(f"datasets not found under {data} (give --data-dir or set DOMAINFIT_DATA)", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    work = Path(args.work)
    (work / "pool").mkdir(parents=True, exist_ok=True)

    train = read_csv_column(pb / "train.csv", "text")
    task = write_lines(work / "task_train.txt", train[: args.task])
    val = write_lines(work / "task_val.txt", read_csv_column(pb / "val.csv", "text"))
    test = write_lines(work / "task_test.txt", read_csv_column(pb / "test.csv", "text"))
    s2d = read_csv_column(data / "symptom2disease" / "Symptom2Disease.csv", "text")
    ncbi = ncbi_sentences(data / "ner_ncbi_disease" / "NCBI-disease-IOB" / "train.tsv")
    with open(data / "chnsenticorp" / "train.tsv", encoding="utf-8", newline="") as f:
        chinese = [row[0] for row in csv.reader(f, delimiter="\t") if row]
    pool = {
        "phrasebank_other.txt": train[args.task : args.task + args.per_source],
        "phrasebank_heldout.txt": val.read_text(encoding="utf-8").splitlines()
        + test.read_text(encoding="utf-8").splitlines(),
        "symptom2disease.txt": rng.sample(s2d, min(args.per_source, len(s2d))),
        "ncbi_disease.txt": rng.sample(ncbi, min(args.per_source, len(ncbi))),
        "chnsenticorp.txt": rng.sample(chinese, min(args.chinese, len(chinese))),
    }
    for name, texts in pool.items():
        write_lines(work / "pool" / name, texts)

    from domainfit.cli import main as domainfit

    command = [
        "mine",
        str(work / "pool"),
        "--task-texts",
        str(task),
        "--exclude",
        str(val),
        "--exclude",
        str(test),
        "--k",
        str(args.k),
        "--output",
        str(work / "corpus.txt"),
    ]
    print("domainfit " + " ".join(command), flush=True)
    started = time.perf_counter()
    code = domainfit(command)
    if code:
        return code
    seconds = time.perf_counter() - started
    report = json.loads((work / "mining.json").read_text(encoding="utf-8"))
    by_source = {Path(source).name: n for source, n in report["selected_by_source"].items()}
    scored = report["pool_texts_scored"]
    sizes = {name: len(texts) for name, texts in pool.items()}

    print("\n| pool source | in pool | mined | share of mined corpus |\n|---|---|---|---|")
    for name in pool:
        n = by_source.get(name, 0)
        print(f"| {name} | {sizes[name]} | {n} | {100 * n / max(1, report['selected']):.1f}% |")
    in_domain = by_source.get("phrasebank_other.txt", 0)
    baseline = sizes["phrasebank_other.txt"] / scored
    print(
        f"\nprecision of source (PhraseBank share of the mined corpus): "
        f"{100 * in_domain / max(1, report['selected']):.1f}% "
        f"({in_domain} of {report['selected']}); a random selection of the same size: {100 * baseline:.1f}%"
    )
    print(
        f"held-out PhraseBank texts in the pool: {sizes['phrasebank_heldout.txt']}, excluded as leakage: "
        f"{report['excluded_as_leakage']}, mined: {by_source.get('phrasebank_heldout.txt', 0)}"
    )
    sel, rnd = report["similarity_selected"], report["similarity_random_pool_sample"]
    print(
        f"similarity to the nearest task text, median: mined {sel['median']:.3f}, "
        f"random pool sample {rnd['median']:.3f}"
    )
    print(
        f"time: {seconds:.0f} s for {report['task_texts']} task texts + {scored} pool texts on {os.cpu_count()} "
        f"visible cores (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
