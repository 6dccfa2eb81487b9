"""Does ``torch.compile`` pay for training on this CPU? Eager against compiled training steps, same batches.

    .venv/bin/python benchmarks/bench_compile.py                 # one PhraseBank epoch per mode, ~8 minutes
    .venv/bin/python benchmarks/bench_compile.py --steps 40      # quicker look

The issue asks for graph capture "where it pays (measure compile time against run length)". This runs the
training step domainfit runs (MiniLM for sequence classification, eager attention, bf16 autocast where
``precision: auto`` picks it, fused AdamW) over the same length-grouped PhraseBank batches (batch 32, seed 42),
each mode in its own process:

- ``eager``: what ``domainfit train`` does;
- ``compile-cold``: ``torch.compile(model, dynamic=True)`` with an empty Inductor cache (a first run);
- ``compile-warm``: the same again, reusing the cache the cold run filled (a user's second run).

Prints, per mode, the time of the first 20 steps (where compilation happens), the median step time and
samples/s after them, and the whole loop; then the steady-state ratio to eager and the number of steps after
which compiling would have paid back its start-up cost (never, when the compiled steps are not faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SPLIT = REPO_ROOT.parent / "shared/datasets/financial_phrasebank/split_seed42/train.csv"
WARMUP_STEPS = 20


def run_steps(mode: str, steps: int) -> dict:
    """One mode, in this process: returns per-step seconds."""
    import csv

    import torch

    sys.path.insert(0, str(REPO_ROOT / "src"))
    from transformers import AutoModelForSequenceClassification

    from domainfit.data.batching import EpochBatchSampler, pad_batch
    from domainfit.models.loading import load_tokenizer, resolve_model_path
    from domainfit.training.precision import resolve_precision

    torch.manual_seed(0)
    with open(SPLIT, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = sorted({r["label"] for r in rows})
    tokenizer = load_tokenizer("minilm")
    ids = tokenizer([r["text"] for r in rows], truncation=True, max_length=128)["input_ids"]
    targets = [labels.index(r["label"]) for r in rows]
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path("minilm"), num_labels=len(labels), attn_implementation="eager"
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)
    precision = resolve_precision("auto", device)
    step_fn = torch.compile(model, dynamic=True) if mode.startswith("compile") else model
    sampler = EpochBatchSampler([len(x) for x in ids], 32, seed=42)
    seconds = []
    for i, indices in enumerate(sampler):
        if i >= steps:
            break
        input_ids = pad_batch([ids[j] for j in indices], tokenizer.pad_token_id)  # (batch, seq)
        batch = {
            "input_ids": input_ids,
            "attention_mask": (input_ids != tokenizer.pad_token_id).long(),
            "labels": torch.tensor([targets[j] for j in indices]),
        }
        batch = {k: v.to(device) for k, v in batch.items()}
        tick = time.perf_counter()
        with torch.autocast(
            device.type,
            dtype=torch.bfloat16 if precision == "bf16" else torch.float16,
            enabled=precision in ("bf16", "fp16"),
        ):
            loss = step_fn(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()  # time the step, not its launch
        seconds.append(time.perf_counter() - tick)
    return {"mode": mode, "precision": precision, "device": device.type, "seconds": seconds}


def summarise(result: dict) -> dict:
    s = result["seconds"]
    late = s[WARMUP_STEPS:]
    return {
        "mode": result["mode"],
        "first": sum(s[:WARMUP_STEPS]),
        "median_ms": 1000 * statistics.median(late),
        "samples_per_s": 32 * len(late) / sum(late),
        "total": sum(s),
        "steps": len(s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=121, help="training steps per mode (121: one PhraseBank epoch)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps <= WARMUP_STEPS:
        parser.error(f"--steps must be over {WARMUP_STEPS}")
    if args.child:
        print(json.dumps(run_steps(args.child, args.steps)))
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_compile_") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "HF_HUB_OFFLINE": "1"}
        for mode in ("eager", "compile-cold", "compile-warm"):
            print(f"[{time.strftime('%H:%M:%S')}] {mode} ...", file=sys.stderr, flush=True)
            done = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--steps", str(args.steps)],
                env=env,
                capture_output=True,
                text=True,
                cwd=REPO_ROOT,
            )
            if done.returncode != 0:
                sys.exit(f"{mode} failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(summarise(result))
    eager = rows[0]
    print(
        f"\nMiniLM training steps on PhraseBank (batch 32, length-grouped), {result['device']}, "
        f"precision {result['precision']}, "
        f"torch threads: default; steps per mode: {args.steps}\n"
    )
    print(
        "| mode | first 20 steps s | median step ms after | samples/s after | x eager | whole loop s "
        "| pays back after |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        saving = eager["median_ms"] - r["median_ms"]
        overhead = r["first"] - eager["first"]
        payback = (
            "-" if r is eager else (f"{overhead * 1000 / saving:.0f} steps" if saving > 0 else "never (not faster)")
        )
        print(
            f"| {r['mode']} | {r['first']:.1f} | {r['median_ms']:.0f} | {r['samples_per_s']:.1f} | "
            f"{r['samples_per_s'] / eager['samples_per_s']:.2f} | {r['total']:.1f} | {payback} |"
        )


if __name__ == "__main__":
    main()
