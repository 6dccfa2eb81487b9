"""CPU cost of one EfficientNet-Lite0 training step on NEU images: decode+augment vs forward+backward, NCHW vs
channels_last (prints a table; no assertions).

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
    for name, train, augment in (("decode+resize (eval)", False, None), ("decode+augment (train)", True, Augmentation(vflip=True))):
        inputs = ImageInputs(prep, augment)
        tick = time.perf_counter()
        for start in range(0, len(items), args.batch):
            collate_images(items[start : start + args.batch], inputs, train=train)
        seconds = time.perf_counter() - tick
        print(f"{name:28} {len(items) / seconds:8.1f} images/s")
    labels = [str(i) for i in range(6)]
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = efficientnet_lite.create_efficientnet_lite0(labels, image_size=args.size)
        inputs = ImageInputs(prep, Augmentation(vflip=True), channels_last=channels_last)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batches = [collate_images(items[s : s + args.batch], inputs, train=True) for s in range(0, len(items), args.batch)]
        model.train()
        for repeat in range(2):  # the first pass warms up the allocator and kernels
            tick = time.perf_counter()
            for batch in batches:
                loss = torch.nn.functional.cross_entropy(model(pixel_values=batch["pixel_values"]).logits, batch["labels"])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            train_s = time.perf_counter() - tick
        model.eval()
        tick = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                model(pixel_values=batch["pixel_values"])
        eval_s = time.perf_counter() - tick
        print(f"{'channels_last' if channels_last else 'NCHW fp32':28} train {len(items) / train_s:6.1f} images/s, "
              f"eval {len(items) / eval_s:6.1f} images/s")


if __name__ == "__main__":
    main()
