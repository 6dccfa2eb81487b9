"""CPU cost of one EfficientNet-Lite0 training step on NEU images: decode+augment vs forward+backward, NCHW vs
channels_last vs bf16 autocast (prints a table; no assertions). Speeds are per CPU-second of this process
(``time.process_time``), so a busy shared machine does not distort them; run single-threaded.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_image_cpu.py [--data DIR] [--size 224] [--images 32]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from domainfit.data.image_transforms import Augmentation, ImagePreprocessing
from domainfit.models import efficientnet_lite
from domainfit.tasks.image_classification import ImageInputs, collate_images


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/datasets/neu_det_surface_defects/IMAGES")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    files = sorted(Path(args.data).glob("*.jpg"))[: args.images]
    items = [{"path": str(p), "labels": i % 6} for i, p in enumerate(files)]
    prep = ImagePreprocessing(args.size, efficientnet_lite.MEAN, efficientnet_lite.STD)
    print(f"threads {torch.get_num_threads()}, {len(items)} images, size {args.size}, batch {args.batch}")
    for name, train, augment in (
        ("decode+resize (eval)", False, None),
        ("decode+augment (train)", True, Augmentation(vflip=True)),
    ):
        inputs = ImageInputs(prep, augment)
        tick = time.process_time()
        for start in range(0, len(items), args.batch):
            collate_images(items[start : start + args.batch], inputs, train=train)
        seconds = time.process_time() - tick
        print(f"{name:28} {len(items) / seconds:8.1f} images per CPU-second")
    labels = [str(i) for i in range(6)]
    for name, channels_last, bf16 in (
        ("NCHW fp32", False, False),
        ("channels_last fp32", True, False),
        ("channels_last bf16 autocast", True, True),
    ):
        torch.manual_seed(0)
        model = efficientnet_lite.create_efficientnet_lite0(labels, image_size=args.size)
        inputs = ImageInputs(prep, Augmentation(vflip=True), channels_last=channels_last)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batches = [
            collate_images(items[s : s + args.batch], inputs, train=True) for s in range(0, len(items), args.batch)
        ]
        model.train()
        for repeat in range(2):  # the first pass warms up the allocator and kernels
            wall, cpu = time.perf_counter(), time.process_time()
            for batch in batches:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = model(pixel_values=batch["pixel_values"]).logits
                loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        model.eval()
        eval_cpu = time.process_time()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for batch in batches:
                model(pixel_values=batch["pixel_values"])
        eval_cpu = time.process_time() - eval_cpu
        print(
            f"{name:28} train {len(items) / cpu:6.1f} images per CPU-second ({len(items) / wall:5.1f}/s wall), "
            f"eval {len(items) / eval_cpu:6.1f} per CPU-second"
        )


if __name__ == "__main__":
    main()
