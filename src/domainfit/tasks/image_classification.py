"""Image classification: one label per image (a steel-surface defect type, a crop disease, a pest).

    domainfit train src/domainfit/configs/neu_defects.yaml
    domainfit predict runs/neu-defects-effnet/model images/ --output predictions.csv

Images come from a class-per-folder tree, a CSV of path,label, or file names plus a regex
(:mod:`domainfit.data.images`); byte-identical copies are removed and the rest split stratified and seeded by
:mod:`domainfit.data.splits`, like texts. The model is the packaged EfficientNet-Lite0 (``model.name:
efficientnet-lite0``) or any Hugging Face ``AutoModelForImageClassification`` (hub id or folder), trained with
cross-entropy by the same loop as text. Training batches are augmented in :meth:`collate`; evaluation batches
never are. The report adds a grid of the test images the model got wrong (:mod:`domainfit.evaluation.image_report`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from domainfit.config import RunConfig
from domainfit.data.image_transforms import Augmentation, ImagePreprocessing
from domainfit.data.images import ImageExample, open_rgb, read_image_examples, resolve_layout
from domainfit.data.labels import LabelMap
from domainfit.data.splits import make_splits
from domainfit.metrics.classification import classification_metrics
from domainfit.models import efficientnet_lite
from domainfit.models.folder import write_folder_settings
from domainfit.models.loading import load_pretrained
from domainfit.objectives import create_objective
from domainfit.tasks.base import TASKS, Features, Task, TaskData
from domainfit.tasks.trust import ClassifierTrust, check_evaluation_config
from domainfit.version import __version__

log = logging.getLogger(__name__)

BUILTIN_IMAGE_MODELS = {
    "efficientnet-lite0": (
        "EfficientNet-Lite0, ImageNet-1k, 4.65M params, 224x224 (packaged, offline; domainfit[vision])"
    ),
}


@dataclass
class ImageInputs:
    """What the loop carries in its ``tokenizer`` slot for an image task: pixels preprocessing and augmentation.

    Attributes:
        preprocessing: size, mean and std the model expects.
        augment: training augmentation, None when switched off.
        channels_last: hand convolution models NHWC tensors.
        hf_processor: the Hugging Face image processor, saved with the model (None for built-ins).
    """

    preprocessing: ImagePreprocessing
    augment: Augmentation | None
    channels_last: bool = False
    hf_processor: Any = None


def read_images(cfg: RunConfig, path: str) -> list[ImageExample]:
    """Read one image source (folder or CSV) with the layout options of ``cfg.image``."""
    return read_image_examples(
        path,
        layout=cfg.image.layout,
        filename_pattern=cfg.image.filename_pattern,
        path_column=cfg.image.path_column,
        label_column=cfg.data.label_column,
    )


def collate_images(items: list[dict[str, Any]], inputs: ImageInputs, *, train: bool) -> dict[str, torch.Tensor]:
    """Decode, (augment,) resize and normalise a batch: ``pixel_values`` (batch, 3, size, size), ``labels`` (batch,)."""
    prep = inputs.preprocessing
    arrays = [
        prep.train_array(open_rgb(it["path"]), inputs.augment) if train else prep.eval_array(open_rgb(it["path"]))
        for it in items
    ]
    pixel_values = torch.from_numpy(np.stack(arrays))  # (batch, 3, size, size)
    if inputs.channels_last:
        pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
    return {"pixel_values": pixel_values, "labels": torch.tensor([it["labels"] for it in items])}


@TASKS.register("image-classification")
class ImageClassificationTask(Task):
    """Single-label classification of images with a pretrained CNN or vision transformer and a new head."""

    name = "image-classification"
    sections = frozenset({"image", "evaluation"})
    word_embeddings = False
    calibrates = True  # temperature and abstention threshold on validation (tasks/trust.py)

    def __init__(self) -> None:
        self.shipped: tuple[nn.Module, ImageInputs, TaskData] | None = None  # for the report's image grid
        self.last_logits: torch.Tensor | None = None
        self.trust = ClassifierTrust()

    def check_own_config(self, cfg: RunConfig, source: Path | None = None) -> None:
        # the image layouts (folders, CSV, file names) carry no group column yet
        check_evaluation_config(cfg, source, groups_supported=False)

    def load_data(self, cfg: RunConfig) -> TaskData:
        self.trust = ClassifierTrust(cfg.evaluation)
        data = cfg.data
        info: dict[str, Any] = {
            "files": {"train": data.train},
            "layout": resolve_layout(data.train, cfg.image.layout, cfg.image.filename_pattern),
        }
        train = read_images(cfg, data.train)
        given = {}
        for name in ("validation", "test"):
            path = getattr(data, name)
            if path:
                given[name] = read_images(cfg, path)
                info["files"][name] = path
        # dedup key: the file's SHA-256, so byte-identical copies count once
        splits = make_splits(train, given, data, info, stratify=data.stratify, what="images")
        label_map = LabelMap.from_examples(splits["train"], path=data.train)
        for name in ("validation", "test"):
            if name in splits:
                label_map.check(splits[name], info["files"].get(name, data.train))
        info["counts"] = {name: len(examples) for name, examples in splits.items()}
        return TaskData(splits=splits, labels=label_map.labels, info=info)

    def build(self, cfg: RunConfig, data: TaskData) -> tuple[nn.Module, ImageInputs]:
        augment = Augmentation.from_config(cfg.image)
        if cfg.model.name in BUILTIN_IMAGE_MODELS:
            size = cfg.image.image_size or efficientnet_lite.IMAGE_SIZE
            model = efficientnet_lite.create_efficientnet_lite0(data.labels, image_size=size, dropout=cfg.model.dropout)
            prep = ImagePreprocessing(size=size, mean=efficientnet_lite.MEAN, std=efficientnet_lite.STD)
            processor = None
        else:
            model, processor, prep = _load_hf_image_model(cfg, data.labels)
        if cfg.image.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model, ImageInputs(prep, augment, channels_last=cfg.image.channels_last, hf_processor=processor)

    def encode(self, examples: list[ImageExample], inputs: ImageInputs, cfg: RunConfig, data: TaskData) -> Features:
        # images are decoded per batch (cheap next to a CNN step, and memory stays flat); every file was
        # already decoded once by load_data, so a bad one cannot stop a run half-way
        label_ids = {label: i for i, label in enumerate(data.labels)}
        items = [{"path": e.path, "labels": label_ids[e.label]} for e in examples]
        return Features(items=items, lengths=[1] * len(items))

    def collate(
        self, items: list[dict[str, Any]], inputs: ImageInputs, *, train: bool = False
    ) -> dict[str, torch.Tensor]:
        return collate_images(items, inputs, train=train)

    def create_objective(self, cfg: RunConfig, data: TaskData) -> nn.Module:
        return create_objective("cross-entropy")

    def compute_metrics(self, logits: torch.Tensor, labels: torch.Tensor, data: TaskData) -> dict[str, Any]:
        # the loop scores the reported split (test, else validation) last: the report's image grid reuses these
        self.last_logits = logits
        metrics = classification_metrics(labels.tolist(), logits.argmax(-1).tolist(), data.labels)
        metrics.update(self.trust.metrics(logits, labels, None, len(data.labels)))
        return metrics

    def calibrate(self, logits: torch.Tensor, labels: torch.Tensor, data: TaskData) -> None:
        """Temperature and abstention threshold from the best weights' validation logits."""
        data.info["calibration"] = self.trust.fit(logits, labels)

    def save(self, model: nn.Module, inputs: ImageInputs, cfg: RunConfig, data: TaskData, out_dir: Path) -> None:
        model.save_pretrained(out_dir)
        if inputs.hf_processor is not None:
            inputs.hf_processor.save_pretrained(out_dir)
        backbone = efficientnet_lite.ARCHITECTURE if cfg.model.name in BUILTIN_IMAGE_MODELS else "transformers"
        meta = {
            "task": self.name,
            "labels": data.labels,
            "base_model": cfg.model.name,
            "backbone": backbone,
            **inputs.preprocessing.to_dict(),
            "resize": "whole image to image_size x image_size, bilinear",
            "channels_last": inputs.channels_last,
            "domainfit_version": __version__,
            **self.trust.model_settings(),
        }
        write_folder_settings(out_dir, meta)
        self.shipped = (model, inputs, data)


def _load_hf_image_model(cfg: RunConfig, labels: list[str]) -> tuple[nn.Module, Any, ImagePreprocessing]:
    """A Hugging Face image classifier (hub id or folder) with a new K-class head, its processor and sizes."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    processor = load_pretrained(AutoImageProcessor.from_pretrained, cfg.model.name)
    kwargs: dict[str, Any] = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
        "ignore_mismatched_sizes": True,
    }  # the pretrained head has another class count
    model = load_pretrained(AutoModelForImageClassification.from_pretrained, cfg.model.name, **kwargs)
    return model, processor, preprocessing_from_processor(processor, cfg.image.image_size)


def preprocessing_from_processor(processor: Any, image_size: int | None = None) -> ImagePreprocessing:
    """Size, mean and std from a Hugging Face image processor (crop size if it centre-crops, else its resize size)."""
    size = image_size
    if size is None:
        for spec in (
            getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None,
            getattr(processor, "size", None),
        ):
            size = _side(spec)
            if size:
                break
    mean = tuple(getattr(processor, "image_mean", None) or (0.5, 0.5, 0.5))
    std = tuple(getattr(processor, "image_std", None) or (0.5, 0.5, 0.5))
    return ImagePreprocessing(size=int(size or 224), mean=mean, std=std)


def _side(spec: Any) -> int | None:
    """The square side in a processor's size spec: a dict or a transformers SizeDict, height or shortest_edge."""
    if spec is None:
        return None
    if isinstance(spec, int):
        return spec
    get = spec.get if isinstance(spec, dict) else lambda key: getattr(spec, key, None)
    return get("height") or get("shortest_edge")
