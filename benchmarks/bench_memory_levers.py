"""Peak memory against throughput for each memory lever of ``domainfit train``, on the real PhraseBank run.

    .venv/bin/python benchmarks/bench_memory_levers.py --variants NAME ...   # one-epoch runs, ~1.5 min each
    .venv/bin/python benchmarks/bench_memory_levers.py --rounds 2      # each variant twice, alternated
    .venv/bin/python benchmarks/bench_memory_levers.py --preset freeze-embeddings --rounds 3   # e5, about 8 minutes

``benchmarks/memory_probe.py`` isolates the training step; this runs the whole command
(``domainfit train benchmarks/phrasebank_bench.yaml train.epochs=1``: data, tokenisation, evaluation, report)
once per variant, each in its own process, variants alternated round by round so machine drift spreads over
all of them. Peak RSS is measured as in ``bench_train.py`` (the kernel's VmHWM, polled); samples/s is the
run's own figure (training loop only). One epoch of 3,870 sentences: a first epoch, so shapes are new to the
kernel cache; the 3-epoch figures are in ``bench_train.py``'s table.

``--preset freeze-embeddings`` runs the same measurement for ``model.freeze_embeddings`` on multilingual-e5-small
(``src/domainfit/configs/kuake_qic_e5.yaml``, one epoch over 1,000 KUAKE-QIC queries; needs ``runs/e5``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import REPO_ROOT, run_measured  # noqa: E402

CONFIG = "benchmarks/phrasebank_bench.yaml"
SYSTEM = {"DOMAINFIT_ALLOCATOR": "system"}  # glibc's malloc instead of mimalloc (domainfit/allocator.py)
# name: (overrides, extra environment); the first is domainfit's default
VARIANTS: dict[str, tuple[list[str], dict[str, str]]] = {
    (
        "default (mimalloc, seen embedding rows, recompute 64+, eager attention on CPU, kernel cache 64, "
        "token-balanced batches)"
    ): (
        [],
        {},
    ),
    "before: no recompute": (["train.recompute_min_length=null"], {}),
    "before: every word-embedding row trained": (["train.embedding_rows=all", "train.recompute_min_length=null"], {}),
    "lengths padded to a multiple of 16": (["train.pad_to_multiple_of=16", "train.recompute_min_length=null"], {}),
    "kernel cache 16": (["train.recompute_min_length=null"], {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16"}),
    "recompute batches of 48+ tokens": (["train.recompute_min_length=48"], {}),
    "before: glibc malloc with mmap threshold 1 MB": ([], SYSTEM),
    "before: glibc's own mmap threshold": (["train.mmap_threshold_mb=null"], SYSTEM),
    "glibc, mmap threshold 256 KB": ([], {**SYSTEM, "MALLOC_MMAP_THRESHOLD_": "262144"}),
    "glibc, mmap threshold 128 KB": ([], {**SYSTEM, "MALLOC_MMAP_THRESHOLD_": "131072"}),
    "glibc, mmap threshold 1 MB + trim every step": (["train.release_memory_every=1"], SYSTEM),
    "glibc, trim every 32 steps": (["train.release_memory_every=32"], SYSTEM),
    "mimalloc, freed pages returned at once (MIMALLOC_PURGE_DELAY=0)": ([], {"MIMALLOC_PURGE_DELAY": "0"}),
    "mimalloc, freed pages returned after 100 ms": ([], {"MIMALLOC_PURGE_DELAY": "100"}),
    "mimalloc, freed pages returned after 300 ms": ([], {"MIMALLOC_PURGE_DELAY": "300"}),
    "mimalloc + mi_collect every 32 steps": (["train.release_memory_every=32"], {}),
    "before: sdpa, kernel cache 1024": (
        ["model.attn_implementation=sdpa"],
        {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024"},
    ),
    "sdpa, kernel cache 64": (["model.attn_implementation=sdpa"], {}),
    "default + malloc_trim every step": (["train.release_memory_every=1"], {}),
    "default + trim every 8 steps": (["train.release_memory_every=8"], {}),
    "before: evaluation batches of 128 rows whatever their length": (["train.eval_batch_tokens=null"], {}),
    "before: fixed 32-row batches, exact lengths": (
        ["train.balance_batch_tokens=false", "train.pad_to_multiple_of=null"],
        {},
    ),
    "token-balanced, exact lengths": (["train.pad_to_multiple_of=null"], {}),
    "default + micro-batches of 2048 tokens": (["train.micro_batch_tokens=2048"], {}),
    "default + micro-batches of 1024 tokens": (["train.micro_batch_tokens=1024"], {}),
    "default + micro-batches of 1024 + trim every step": (
        ["train.micro_batch_tokens=1024", "train.release_memory_every=1"],
        {},
    ),
}
# the default's earlier names, as BENCHMARKS.md's older commands spell them
ALIASES = {
    "default (eager attention on CPU, kernel cache 64)": next(iter(VARIANTS)),
    "default (mimalloc, eager attention on CPU, kernel cache 64, token-balanced batches)": next(iter(VARIANTS)),
    "default (mimalloc, seen embedding rows, eager attention on CPU, kernel cache 64, token-balanced batches)": next(
        iter(VARIANTS)
    ),
    "default (eager attention on CPU, kernel cache 64, token-balanced batches, mmap threshold 1 MB)": next(
        iter(VARIANTS)
    ),
}

FREEZE_CONFIG = "src/domainfit/configs/kuake_qic_e5.yaml"
FREEZE_VARIANTS: dict[str, tuple[list[str], dict[str, str]]] = {
    "frozen word embeddings": (["model.freeze_embeddings=true"], {}),
    "trained word embeddings": (["model.freeze_embeddings=false"], {}),
}
# preset: (config, variants, overrides for every run)
PRESETS = {
    "levers": (CONFIG, VARIANTS, []),
    "freeze-embeddings": (FREEZE_CONFIG, FREEZE_VARIANTS, ["data.max_train_samples=1000"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--preset", choices=list(PRESETS), default="levers")
    parser.add_argument("--variants", nargs="+", default=None, help="a subset of the preset's variant names")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        help="extra key=value overrides for every run (e.g. "
        "train.num_threads=1 to measure memory beside other jobs; the speeds are then not comparable)",
    )
    args = parser.parse_args()
    config, variants, common = PRESETS[args.preset]
    args.variants = [ALIASES.get(name, name) for name in args.variants or variants]
    unknown = set(args.variants) - set(variants)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; the preset has: {list(variants)}")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_memory_levers_"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in args.variants}
    for round_ in range(args.rounds):
        for index, name in enumerate(args.variants):
            overrides, env = variants[name]
            out = work / f"v{index}-r{round_}"
            command = [
                sys.executable,
                "-m",
                "domainfit",
                "train",
                config,
                "train.epochs=1",
                f"output.dir={out}",
                "output.overwrite=true",
                *common,
                *overrides,
                *args.set,
            ]
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                code, _, peak, wall = run_measured(command, work / f"v{index}-r{round_}")
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            if code:
                raise SystemExit(f"{name}: exit {code}, see {work}/v{index}-r{round_}.stderr")
            metrics = json.loads((out / "metrics.json").read_text())
            row = (max(peak.values()) / 1e9, metrics["train"]["samples_per_second"], metrics["test"]["f1_macro"])
            results[name].append(row)
            print(f"round {round_ + 1} {name}: peak {row[0]:.2f} GB, {row[1]:.1f} samples/s", flush=True)
    print(f"\nwork folder: {work}; repository: {REPO_ROOT}; {args.rounds} round(s), medians\n")
    base = statistics.median(r[1] for r in results[args.variants[0]])
    print(f"| variant | peak RSS GB | samples/s | x {args.variants[0].split(' (')[0]} | test macro-F1 (1 epoch) |")
    print("|---|---:|---:|---:|---:|")
    for name, rows in results.items():
        peak = statistics.median(r[0] for r in rows)
        speed = statistics.median(r[1] for r in rows)
        f1 = statistics.median(r[2] for r in rows)
        print(f"| {name} | {peak:.2f} | {speed:.1f} | {speed / base:.2f} | {f1:.3f} |")


if __name__ == "__main__":
    main()
