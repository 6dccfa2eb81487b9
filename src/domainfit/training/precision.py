"""Choosing the compute precision: measured, not assumed.

On GPUs bf16 autocast is the safe fast default where supported. On CPUs it depends on the chip: with AMX
tiles (Sapphire Rapids and later) a bf16 matmul runs several times faster than fp32, while on AVX-512-only
chips it can be slower. So ``precision: auto`` on a CPU times one matmul of a transformer layer's shape in
both precisions (~0.1 s) and takes bf16 only when it is clearly faster. Weights, gradients and the optimizer
stay fp32 either way (autocast), so accuracy is kept; ``benchmarks/bench_train.py`` checks it.

A timing is noisy, so the choice is made once and then kept: once per machine (cached in
``$DOMAINFIT_CACHE_DIR`` or ``~/.cache/domainfit/precision.json``, keyed by CPU model, its bf16 instructions,
torch version and thread count), so two runs with the same seed compute alike; and once per run (``run.json``'s
``mixed_precision``), so a resumed run never switches precision half-way.
"""

from __future__ import annotations

import functools
import json
import logging
import platform
import time
from pathlib import Path

import torch

from domainfit.io.atomic import write_text_atomic
from domainfit.io.cache import cache_dir
from domainfit.training.distributed import process_state, use_cpu

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


def resolve_precision(precision: str, device: torch.device, run_dir: Path | None = None) -> str:
    """Map the config's ``precision`` to Accelerate's ``mixed_precision`` ("no", "bf16", "fp16").

    Args:
        precision: the config value (auto, fp32, bf16, fp16).
        device: where the run computes.
        run_dir: a run being resumed: its recorded choice is kept (``run.json``'s ``mixed_precision``).
    """
    if precision != "auto":
        return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]
    if run_dir is not None:
        recorded = _recorded_choice(run_dir)
        if recorded is not None:
            log.info("precision auto: %s, as recorded when this run started (run.json)", _name(recorded))
            return recorded
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":
        return _cpu_choice()
    return "no"


def _name(choice: str) -> str:
    return "bf16 autocast" if choice == "bf16" else precision_label(choice)


def precision_label(choice: str) -> str:
    """How metrics.json names Accelerate's ``mixed_precision`` choice: ``"fp32"`` for ``"no"``, else as it is."""
    return "fp32" if choice == "no" else choice


def _recorded_choice(run_dir: Path) -> str | None:
    try:
        value = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8")).get("mixed_precision")
    except (OSError, ValueError, AttributeError):
        return None
    return value if value in ("no", "bf16", "fp16") else None


BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of the instructions a bf16 matmul runs on


def _machine_key(cpuinfo: str | None = None) -> str:
    """The cache key of this machine's choice: CPU model, the kernels torch runs (its CPU capability) and the
    bf16 instructions present, torch version, threads.

    The model name alone is not enough: a virtual machine may report only "AMD EPYC", for hosts with and
    without bf16 instructions (measured: bf16 4.1x fp32 on one, 0.02x on another), and a choice kept for the
    one would be wrong, or ruinously slow, on the other.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    model, flags = None, None
    for line in cpuinfo.splitlines():  # the first processor's entries
        name, _, value = (part.strip() for part in line.partition(":"))
        if name == "model name" and model is None:
            model = value
        elif name in ("flags", "Features") and flags is None:
            flags = set(value.split())
    cpu = model or platform.processor() or platform.machine()
    bf16 = "+".join(f for f in BF16_FLAGS if f in (flags or ())) or "no bf16 instructions"
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{cpu} ({capability}, {bf16}) | torch {torch.__version__} | {torch.get_num_threads()} threads"


def _cpu_choice() -> str:
    """bf16 or fp32 for this CPU: measured the first time, then read from the cache."""
    path = cache_dir() / "precision.json"
    key = _machine_key()
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    entry = cached.get(key) if isinstance(cached, dict) else None
    if isinstance(entry, dict) and entry.get("choice") in ("no", "bf16"):
        log.info(
            "precision auto: %s (bf16 matmul measured %.1fx fp32 on this machine on %s; delete %s to measure again)",
            _name(entry["choice"]),
            entry.get("speedup", float("nan")),
            entry.get("measured", "?"),
            path,
        )
        return entry["choice"]
    speedup = cpu_bf16_speedup()
    choice = "bf16" if speedup >= 1.3 else "no"
    log.info(
        "precision auto: bf16 matmul is %.1fx fp32 on this CPU -> %s (kept for later runs in %s)",
        speedup,
        _name(choice),
        path,
    )
    cached = cached if isinstance(cached, dict) else {}
    cached[key] = {"choice": choice, "speedup": round(speedup, 3), "measured": time.strftime("%Y-%m-%d")}
    try:
        write_text_atomic(path, json.dumps(cached, indent=1))
    except OSError as e:  # a read-only home: measure again next time, nothing else changes
        log.warning("could not keep the precision choice in %s (%s)", path, e)
    return choice


def create_accelerator(mixed_precision: str, grad_accum_steps: int = 1):
    """An ``accelerate.Accelerator`` for one run.

    ``train()``/``pretrain()`` may run several times in one process (pipelines, ablations, tests) with different
    precisions; Accelerate keeps one global state, so a single-process run starts from a fresh one (a
    distributed launch's state is left alone).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration

    if AcceleratorState._shared_state and process_state().num_processes == 1:
        AcceleratorState._reset_state()
    # cpu=True where several processes run without an accelerator: Accelerate joins them (gloo) only then.
    # split_batches: the processes split each global batch (data/batching.py), so one optimizer step is one
    # schedule step; without it Accelerate steps the schedule once per process, ending it N times too early.
    return Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=grad_accum_steps,
        cpu=use_cpu(),
        dataloader_config=DataLoaderConfiguration(split_batches=True),
    )
