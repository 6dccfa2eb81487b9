"""Images -> normalised float arrays, with training-only augmentation, in Pillow + numpy.

    prep = ImagePreprocessing(size=224, mean=(0.5,) * 3, std=(0.5,) * 3)   # EfficientNet-Lite: [-1, 1]
    x = prep.eval_array(image)                    # (3, 224, 224) float32, deterministic
    x = prep.train_array(image, augment)          # random crop, flips, rotation, brightness/contrast

Evaluation resizes the whole image to ``size`` x ``size`` (no centre crop, so a defect at the edge stays in
view). Training applies a random resized crop (Szegedy et al. 2015, Inception: area share in
[``crop_scale_min``, 1], aspect ratio in [3/4, 4/3]), flips, a small rotation and brightness/contrast jitter,
drawing from Python's ``random`` module, whose state the loop seeds and the checkpoints save, so a resumed
run augments exactly like an uninterrupted one.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from domainfit.config import ImageConfig


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation switches (from :class:`~domainfit.config.ImageConfig`)."""

    crop_scale_min: float = 0.7
    hflip: bool = True
    vflip: bool = False
    rotation_degrees: float = 10.0
    brightness: float = 0.2
    contrast: float = 0.2

    @classmethod
    def from_config(cls, image: ImageConfig) -> Augmentation | None:
        """The config's augmentation, or None when ``image.augment`` is off."""
        if not image.augment:
            return None
        return cls(
            crop_scale_min=image.crop_scale_min,
            hflip=image.hflip,
            vflip=image.vflip,
            rotation_degrees=image.rotation_degrees,
            brightness=image.brightness,
            contrast=image.contrast,
        )


@dataclass(frozen=True)
class ImagePreprocessing:
    """How a model wants its pixels: square side, per-channel mean and std on the [0, 1] scale.

    Saved in the model folder's ``domainfit.json`` so prediction needs no training config.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"image_size": self.size, "image_mean": list(self.mean), "image_std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePreprocessing:
        return cls(
            size=int(data["image_size"]),
            mean=tuple(map(float, data["image_mean"])),
            std=tuple(map(float, data["image_std"])),
        )

    def eval_array(self, image: Any) -> np.ndarray:
        """A PIL RGB image -> (3, size, size) float32, normalised; the same every time."""
        from PIL import Image

        resized = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        return self._normalise(np.asarray(resized, dtype=np.float32) / 255.0)

    def train_array(self, image: Any, augment: Augmentation | None) -> np.ndarray:
        """A PIL RGB image -> (3, size, size) float32, randomly augmented (plain ``eval_array`` if None)."""
        from PIL import Image

        if augment is None:
            return self.eval_array(image)
        box = _random_crop_box(image.width, image.height, augment.crop_scale_min)
        # crop and resize in one resampling pass
        out = image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        if augment.hflip and random.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if augment.vflip and random.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        if augment.rotation_degrees:
            angle = random.uniform(-augment.rotation_degrees, augment.rotation_degrees)
            # corners uncovered by the rotation take the image's mean colour, not black
            fill = tuple(int(v) for v in np.asarray(out).reshape(-1, 3).mean(0))
            out = out.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=fill)
        pixels = np.asarray(out, dtype=np.float32) / 255.0  # (H, W, 3) in [0, 1]
        if augment.brightness:
            pixels = pixels * random.uniform(1 - augment.brightness, 1 + augment.brightness)
        if augment.contrast:
            grey = pixels.mean()
            pixels = (pixels - grey) * random.uniform(1 - augment.contrast, 1 + augment.contrast) + grey
        return self._normalise(np.clip(pixels, 0.0, 1.0))

    def _normalise(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W, 3) in [0, 1] -> (3, H, W), (x - mean) / std."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def _random_crop_box(width: int, height: int, scale_min: float) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a random crop covering [scale_min, 1] of the area, aspect in [3/4, 4/3]."""
    area = width * height
    for _ in range(10):
        target = area * random.uniform(scale_min, 1.0)
        aspect = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = math.sqrt(target * aspect)
        h = math.sqrt(target / aspect)
        if w <= width and h <= height:
            left = random.uniform(0, width - w)
            top = random.uniform(0, height - h)
            return (left, top, left + w, top + h)
    return (0.0, 0.0, float(width), float(height))  # the whole image when no sampled crop fits
