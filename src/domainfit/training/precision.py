"""Choosing the compute precision: measured, not assumed.

On GPUs bf16 autocast is the safe fast default where supported. On CPUs it depends on the chip: with AMX
tiles (Sapphire Rapids and later) a bf16 matmul runs several times faster than fp32, while on AVX-512-only
chips it can be slower. So ``precision: auto`` on a CPU times one matmul of a transformer layer's shape in
both precisions (~0.1 s) and takes bf16 only when it is clearly faster. Weights, gradients and the optimizer
stay fp32 either way (autocast), so accuracy is kept; ``benchmarks/bench_train.py`` checks it.
"""

from __future__ import annotations

import functools
import logging
import time

import torch

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def cpu_bf16_speedup(m: int = 1024, k: int = 384, n: int = 1536, repeats: int = 5) -> float:
    """fp32 time / bf16 time for an (m, k) @ (k, n) matmul on this CPU (median of ``repeats``).

    Its random inputs come from a generator of its own: the run's seeded global stream (dropout masks) must
    not depend on whether an earlier run in the same process already made this (cached) measurement.
    """
    generator = torch.Generator().manual_seed(0)

    def median_seconds(dtype: torch.dtype) -> float:
        a = torch.randn(m, k, generator=generator).to(dtype)
        b = torch.randn(k, n, generator=generator).to(dtype)
        for _ in range(2):
            a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(4):
                a @ b
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    return median_seconds(torch.float32) / median_seconds(torch.bfloat16)


def resolve_precision(precision: str, device: torch.device) -> str:
    """Map the config's ``precision`` to Accelerate's ``mixed_precision`` ("no", "bf16", "fp16")."""
    if precision != "auto":
        return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        speedup = cpu_bf16_speedup()
        choice = "bf16" if speedup >= 1.3 else "no"
        log.info("precision auto: bf16 matmul is %.1fx fp32 on this CPU -> %s", speedup, "bf16 autocast" if choice == "bf16" else "fp32")
        return choice
    return "no"


def create_accelerator(mixed_precision: str, grad_accum_steps: int = 1):
    """An ``accelerate.Accelerator`` for one run.

    ``train()``/``pretrain()`` may run several times in one process (pipelines, ablations, tests) with different
    precisions; Accelerate keeps one global state, so a single-process run starts from a fresh one (a
    distributed launch's state is left alone).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    if AcceleratorState._shared_state and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum_steps)
