"""ONNX export of an image-classification folder (a Hugging Face image model or the packaged
EfficientNet-Lite0), checked against PyTorch on the class of each parity image.

    domainfit export runs/neu-defects-effnet/model                           # generated parity images
    domainfit export runs/neu-defects-effnet/model --parity-data images/val  # or your own

The graph maps ``pixel_values`` (batch, 3, size, size) to (batch, num_labels) logits; the batch axis is
free, the image size is the one the model was trained at (``domainfit.json``). Decoding, resizing and
normalising stay in :class:`~domainfit.serving.image_predictor.ImagePredictor`. Parity: the class of
each parity image must be PyTorch fp32's; without images of your own, 16 generated ones (noise,
gradients, blocks, blurred noise; seeded) are used, which test the arithmetic but not your classes:
real images from the validation set are the better check.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from domainfit.errors import DomainfitError
from domainfit.export.onnx import ExportJob, check_opset, import_export_extra, label_parity, run_export
from domainfit.export.registry import EXPORTERS
from domainfit.serving.image_predictor import (
    ImagePredictor,
    ImageTorchRunner,
    load_image_model,
    read_image_settings,
)
from domainfit.serving.model_folder import check_model_dir
from domainfit.serving.runners import Runner

TASK = "image-classification"
GENERATED_IMAGES = 16


def export_image_classifier(
    model_dir: str | Path, *, quantize: bool = True, parity_images: Sequence[Any] | None = None, opset: int = 17
) -> dict[str, Any]:
    """Export an image-classification folder to ``model_dir/onnx/``; check each image's class against PyTorch.

    Args:
        model_dir: a ``domainfit train`` output folder of task image-classification.
        quantize: also write the int8 model.
        parity_images: image paths or PIL images to compare on. Default: :func:`generated_images`.
        opset: ONNX opset version.

    Returns:
        The report written to ``onnx/export.json``.
    """
    path = check_model_dir(model_dir)
    import_export_extra()
    check_opset(opset)
    _, labels, preprocessing = read_image_settings(path)
    if parity_images is None:
        images, source = generated_images(preprocessing.size), "generated"
    else:
        images, source = list(parity_images), "given"
        if not images:
            raise DomainfitError("parity_images is empty; give some images, or None for generated ones")
    model = load_image_model(path, attn_implementation="eager")  # NCHW: the graph takes plain tensors
    predictor = ImagePredictor(ImageTorchRunner(model), labels, preprocessing)
    reference = predictor.predict_proba(images)  # (n, num_labels); also checks the images

    def parity(runner: Runner) -> dict[str, Any]:
        """Same class per image as PyTorch fp32."""
        return label_parity(reference, predictor.with_runner(runner, "onnx").predict_proba(images))

    size = preprocessing.size
    sample = {"pixel_values": np.random.default_rng(0).standard_normal((2, 3, size, size), dtype=np.float32)}
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)  # the EfficientNet config is a plain dict: no fusions
    job = ExportJob(
        model,
        sample,
        {"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
        parity,
        {"images": len(images), "source": source, "compared": "class per image"},
        model_type=model_type,
        settings={"image_size": size},
    )
    return run_export(path, job, quantize=quantize, opset=opset)


def generated_images(size: int, count: int = GENERATED_IMAGES, seed: int = 0) -> list[Any]:
    """``count`` seeded RGB images of ``size`` x ``size``: uniform noise, colour gradients, coloured blocks
    and blurred noise in turn, so the parity check sees both flat and busy inputs."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        elif kind == 1:
            ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)[None, :, None]  # (1, size, 1)
            start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            pixels = np.broadcast_to(start + (end - start) * ramp, (size, size, 3)).astype(np.uint8)
        elif kind == 2:
            pixels = np.full((size, size, 3), rng.integers(0, 256, 3), dtype=np.uint8)
            for _ in range(4):
                top, left = rng.integers(0, size, 2)
                pixels[top : top + size // 3, left : left + size // 3] = rng.integers(0, 256, 3)
        else:
            noise = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            pixels = np.asarray(noise.filter(ImageFilter.GaussianBlur(radius=max(1, size // 16))))
        images.append(Image.fromarray(np.ascontiguousarray(pixels)))
    return images


EXPORTERS.register(TASK, export_image_classifier)
