"""Grad-CAM heat maps for image classifiers: which regions of the image made the model choose its label.

    explainer = GradCamExplainer(model, labels, preprocessing)
    explainer.explain(["scratches_1.jpg"])
    # [{'image': 'scratches_1.jpg', 'method': 'grad-cam', 'layer': 'network._conv_head', 'size': [224, 224],
    #   'explanations': [{'label': 'scratches', 'probability': 0.99, 'heatmap': [[0.0, 0.01, ...], ...]}]}]

Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization") weights each channel of a convolutional layer's output by the mean gradient of the label's
logit over that channel, sums the channels and keeps the positive part: where the features that raise the
label sit. It runs through Captum's ``LayerGradCam`` on the **last** ``Conv2d`` of the network (the
EfficientNet-Lite head convolution, a ResNet's or ConvNeXt's last stage: the last spatial map before
pooling), is upsampled bilinearly to the model's input size and scaled so its peak is 1 (an all-zero map
stays zero). The map is in the frame of the model's input, the image resized to a square; resizing it back
to the image's own size places it on the image.

A vision transformer's only convolution is its patch embedding, at the input: the map there is a patch-level
gradient x activation, coarser and noisier than a CNN's Grad-CAM. A model without any ``Conv2d`` is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from domainfit.errors import DomainfitError, ModelError
from domainfit.evaluation.explain import check_method, import_captum

IMAGE_METHODS = ("grad-cam",)


def last_conv_layer(model: Any) -> tuple[str, Any]:
    """``(name, module)`` of the last ``torch.nn.Conv2d`` registered in ``model``.

    Modules are registered in the order the networks run them (stem, stages, head), so the last one is the
    final spatial feature map's convolution.

    Raises:
        ModelError: the model has no 2-D convolution.
    """
    from torch import nn

    convs = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not convs:
        raise ModelError(
            f"Grad-CAM needs a convolutional layer; this {type(model).__name__} has none",
            fix="explain a CNN image model (EfficientNet-Lite, ResNet, ConvNeXt, ...).",
        )
    return convs[-1]


def _as_rgb(image: Any) -> Any:
    if isinstance(image, (str, Path)):
        from domainfit.data.images import open_rgb

        return open_rgb(image)
    if hasattr(image, "convert"):  # a PIL image
        return image.convert("RGB")
    raise DomainfitError(f"expected an image path or a PIL image, got {type(image).__name__}")


class GradCamExplainer:
    """Grad-CAM heat maps of an image classifier's predicted label.

    Args:
        model: a PyTorch image classifier called as ``model(pixel_values=x).logits``, (batch, num_labels), fp32.
        labels: label names in output order.
        preprocessing: the model's ``ImagePreprocessing`` (``eval_array``, ``size``), as in prediction.
        temperature: logits are divided by it before the softmax (the folder's fitted temperature).
        layer: the module to explain at; default: :func:`last_conv_layer`.
    """

    def __init__(
        self,
        model: Any,
        labels: Sequence[str],
        preprocessing: Any,
        *,
        temperature: float = 1.0,
        layer: tuple[str, Any] | None = None,
    ) -> None:
        self.model = model.eval()
        self.labels = list(labels)
        self.preprocessing = preprocessing
        self.temperature = temperature
        self.layer_name, self.layer = layer if layer is not None else last_conv_layer(model)

    def _logits(self, pixel_values: Any) -> Any:
        """(batch, num_labels) logits; Captum calls this."""
        return self.model(pixel_values=pixel_values).logits.float()

    def explain(
        self,
        images: Sequence[Any],
        *,
        method: str = "grad-cam",
        n_steps: int | None = None,
    ) -> list[dict[str, Any]]:
        """A heat map of each image's predicted label.

        Args:
            images: file paths or PIL images.
            method: "grad-cam" (the only one).
            n_steps: not used (Grad-CAM takes one backward pass); accepted so every explainer is called alike.

        Returns:
            One dict per image: ``image`` (the path, or "image <i>"), ``method``, ``layer``, ``size`` ([height,
            width] of the map: the model's input) and ``explanations``: one ``{"label", "probability",
            "heatmap"}``, the heat map a list of ``size[0]`` rows of ``size[1]`` floats in [0, 1].
        """
        import torch

        check_method(method, IMAGE_METHODS)
        if isinstance(images, (str, Path)):
            raise DomainfitError("expected a list of images, got one path", fix="wrap it in a list: explain([path]).")
        captum_attr = import_captum()
        grad_cam = captum_attr.LayerGradCam(self._logits, self.layer)
        results = []
        for i, image in enumerate(images):
            name = str(image) if isinstance(image, (str, Path)) else f"image {i}"
            pixels = torch.from_numpy(self.preprocessing.eval_array(_as_rgb(image))).unsqueeze(0)  # (1, 3, S, S)
            with torch.no_grad():
                probs = (self._logits(pixels) / self.temperature).softmax(-1)[0]
            target = int(probs.argmax())
            cam = grad_cam.attribute(pixels, target=target, relu_attributions=True)  # (1, 1, h, w)
            cam = captum_attr.LayerAttribution.interpolate(cam, tuple(pixels.shape[-2:]), "bilinear")
            heatmap = cam[0, 0].detach().float().clamp(min=0).numpy()  # (S, S)
            peak = float(heatmap.max())
            if peak > 0:
                heatmap = heatmap / peak
            results.append(
                {
                    "image": name,
                    "method": method,
                    "layer": self.layer_name,
                    "size": list(heatmap.shape),
                    "explanations": [
                        {
                            "label": self.labels[target],
                            "probability": float(probs[target]),
                            "heatmap": np.round(heatmap, 4).tolist(),
                        }
                    ],
                }
            )
        return results
