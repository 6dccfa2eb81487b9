"""Classify image files with a trained image model folder (EfficientNet-Lite or a Hugging Face image model).

    domainfit predict runs/neu-defects-effnet/model photo1.jpg photo2.jpg folder/ --output predictions.csv

    import domainfit
    predictor = domainfit.load("runs/neu-defects-effnet/model")    # dispatched here by domainfit.json's task
    predictor.predict(["scratches_1.jpg"])
    # [{'label': 'scratches', 'score': 0.99, 'probabilities': {'crazing': 0.001, ...}}]

Everything needed to preprocess comes from the folder's ``domainfit.json`` (image size, mean, std), so no
training config is needed. Images are decoded with Pillow and resized as in evaluation (no augmentation).
After ``domainfit export`` the ONNX backends serve it too ("auto" picks int8 or fp32 ONNX when the export
gave PyTorch's class on every parity image).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from domainfit.data.image_transforms import ImagePreprocessing
from domainfit.data.images import IMAGE_EXTENSIONS, open_rgb
from domainfit.errors import DataError, DomainfitError, ModelError
from domainfit.models.folder import SETTINGS_FILE, folder_task, read_folder_settings
from domainfit.serving.backends import resolve_task_backend
from domainfit.serving.confidence import apply_abstention, check_min_confidence
from domainfit.serving.model_folder import ONNX_FILES, read_confidence_settings
from domainfit.serving.model_process import runner_for
from domainfit.serving.registry import PREDICTORS, RUNNER_KINDS
from domainfit.serving.runners import Runner, RunnerOwner, TorchRunner, onnx_runner

DEFAULT_BATCH_SIZE = 32
BACKENDS = ("auto", "torch", "onnx", "onnx-int8")
INPUT_NAMES = ("pixel_values",)


class ImagePredictor(RunnerOwner):
    """Labels images with a trained model; build it with :func:`load_image_predictor` or ``domainfit.load``.

    Attributes:
        labels: label names, in the order of the probability columns.
        backend: "torch" (fp32), "onnx" or "onnx-int8".
        preprocessing: the image size, mean and std the model was trained with.
        temperature: logits are divided by it before the softmax (fitted on validation; labels unchanged).
        min_confidence: :meth:`predict` answers "abstain" when the top probability is below it (None: never).
    """

    def __init__(
        self,
        runner: Runner,
        labels: list[str],
        preprocessing: ImagePreprocessing,
        *,
        backend: str = "torch",
        temperature: float = 1.0,
        min_confidence: float | None = None,
    ) -> None:
        check_min_confidence(min_confidence)
        self._runner = runner
        self.temperature = temperature
        self.min_confidence = min_confidence
        self.labels = labels
        self.preprocessing = preprocessing
        self.backend = backend

    def __repr__(self) -> str:
        return f"ImagePredictor(backend={self.backend!r}, labels={self.labels}, image_size={self.preprocessing.size})"

    def with_runner(self, runner: Runner, backend: str) -> ImagePredictor:
        """The same predictor on another backend (the exporter compares backends with it)."""
        return ImagePredictor(
            runner,
            self.labels,
            self.preprocessing,
            backend=backend,
            temperature=self.temperature,
            min_confidence=self.min_confidence,
        )

    def predict_proba(self, images: Sequence[Any], batch_size: int | None = None) -> np.ndarray:
        """Class probabilities, shape (len(images), len(labels)), float32, rows in input order.

        Args:
            images: file paths (str or Path) or PIL images.
            batch_size: images per forward pass (default 32).
        """
        if isinstance(images, (str, Path)):
            raise DomainfitError("expected a list of images, got one path", fix="wrap it in a list: predict([path]).")
        batch_size = batch_size or DEFAULT_BATCH_SIZE
        images = list(images)
        out = np.zeros((len(images), len(self.labels)), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            arrays = [self.preprocessing.eval_array(_as_rgb(image)) for image in images[start : start + batch_size]]
            # (batch, 3, size, size) -> (batch, num_labels); the fitted temperature scales the logits
            logits = self._runner({"pixel_values": np.stack(arrays)})
            out[start : start + len(arrays)] = _softmax(logits / self.temperature)
        return out

    def predict(self, images: Sequence[Any], batch_size: int | None = None) -> list[dict[str, Any]]:
        """Best label, its probability and all probabilities, one dict per image in input order."""
        results = []
        for row in self.predict_proba(images, batch_size=batch_size).tolist():
            best = max(range(len(row)), key=row.__getitem__)
            results.append(
                {"label": self.labels[best], "score": row[best], "probabilities": dict(zip(self.labels, row))}
            )
        return apply_abstention(results, self.min_confidence)


class ImageTorchRunner(TorchRunner):
    """PyTorch on ``pixel_values``; hands a channels-last model NHWC tensors, as in training."""

    def __init__(self, model: Any, *, channels_last: bool = False) -> None:
        super().__init__(model, INPUT_NAMES)
        self.channels_last = channels_last

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        pixel_values = torch.from_numpy(inputs["pixel_values"])  # (batch, 3, size, size)
        if self.channels_last:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(pixel_values=pixel_values).logits.float().numpy()  # (batch, num_labels)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return exp / exp.sum(axis=1, keepdims=True)


def _as_rgb(image: Any) -> Any:
    if isinstance(image, (str, Path)):
        return open_rgb(image)
    if hasattr(image, "convert"):  # a PIL image
        return image.convert("RGB")
    raise DomainfitError(f"expected an image path or a PIL image, got {type(image).__name__}")


def expand_image_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders replaced by the image files under them (recursively, sorted)."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not found:
                raise DataError(
                    f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in this folder",
                    path=path,
                    fix="give image files or a folder that holds them.",
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError("does not exist", path=path, fix="give image files or a folder of images.")
    return files


def load_image_predictor(
    model_dir: str | Path,
    *,
    backend: str = "auto",
    num_threads: int | None = None,
    min_confidence: float | None = None,
    model_process: str = "off",
) -> ImagePredictor:
    """Load an image model folder written by ``domainfit train`` (task image-classification).

    Args:
        model_dir: the run's model/ folder.
        backend: one of ``BACKENDS``. "auto" serves the int8 ONNX model if ``domainfit export`` found it
            gives PyTorch's class on its parity images, else the fp32 ONNX model if exported, else
            PyTorch fp32.
        num_threads: CPU threads (process-wide for torch).
        min_confidence: answer "abstain" under this top probability (default: the folder's, if any).
        model_process: as for :func:`domainfit.load` (the PyTorch backend in a worker process under "auto").
    """
    model_dir = Path(model_dir)
    settings, labels, preprocessing = read_image_settings(model_dir)
    temperature, saved_min_confidence = read_confidence_settings(settings, model_dir / SETTINGS_FILE)
    trust = {
        "temperature": temperature,
        "min_confidence": saved_min_confidence if min_confidence is None else min_confidence,
    }
    resolved = resolve_task_backend(model_dir, backend, BACKENDS, "image models")
    runner = runner_for(model_dir, resolved, num_threads, model_process, kind="image")
    return ImagePredictor(runner, labels, preprocessing, backend=resolved, **trust)


def create_image_runner(model_dir: Path, backend: str, num_threads: int | None) -> Runner:
    """The runner of a resolved image ``backend``: ``pixel_values`` (batch, 3, size, size) -> logits."""
    if backend in ONNX_FILES:
        return onnx_runner(model_dir, backend, num_threads)
    if num_threads is not None:
        import torch

        torch.set_num_threads(num_threads)
    channels_last = bool(read_folder_settings(model_dir).get("channels_last", False))
    return ImageTorchRunner(load_image_model(model_dir, channels_last=channels_last), channels_last=channels_last)


def read_image_settings(model_dir: Path) -> tuple[dict[str, Any], list[str], ImagePreprocessing]:
    """The folder's ``domainfit.json``, its labels and its preprocessing (size, mean, std)."""
    settings_path = model_dir / SETTINGS_FILE
    settings = read_folder_settings(model_dir)
    try:
        preprocessing = ImagePreprocessing.from_dict(settings)
        labels = [str(label) for label in settings["labels"]]
        read_confidence_settings(settings, settings_path)  # checked here, with the other settings
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(
            f"cannot read the image settings: {e}",
            path=settings_path,
            fix="give the model/ folder written by `domainfit train` (its domainfit.json names "
            "labels, image_size, image_mean and image_std).",
        ) from e
    return settings, labels, preprocessing


def load_image_model(model_dir: Path, *, channels_last: bool = False, attn_implementation: str = "sdpa") -> Any:
    """The folder's PyTorch model in fp32 eval mode: the packaged EfficientNet-Lite or a Hugging Face
    ``AutoModelForImageClassification``."""
    import torch

    from domainfit.models.efficientnet_lite import is_efficientnet_dir, load_efficientnet_dir

    if is_efficientnet_dir(model_dir):
        model = load_efficientnet_dir(model_dir)
    else:
        from transformers import AutoModelForImageClassification

        try:
            try:
                model = AutoModelForImageClassification.from_pretrained(
                    model_dir, dtype=torch.float32, attn_implementation=attn_implementation
                )
            except ValueError:  # a CNN, or an architecture without this attention implementation
                model = AutoModelForImageClassification.from_pretrained(model_dir, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise ModelError(
                f"cannot load the image model: {e}",
                path=model_dir,
                fix="the folder needs config.json and model.safetensors.",
            ) from e
        model = model.eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def is_image_model_dir(model_dir: str | Path) -> bool:
    """True if ``model_dir``'s domainfit.json says it holds an image-classification model."""
    try:
        return folder_task(model_dir) == "image-classification"
    except ModelError:
        return False  # not an image folder; the text predictor reports what is wrong with it


def predict_images_command(
    model_dir: str | Path,
    inputs: Sequence[str],
    output: str | None,
    *,
    batch_size: int | None = None,
    backend: str = "auto",
    min_confidence: float | None = None,
) -> None:
    """``domainfit predict MODEL_DIR IMAGES...``: a CSV (path, label, score, p_<label>...) or lines on the terminal."""
    import csv

    from domainfit.serving.files import check_output_file, write_output

    files = expand_image_inputs(inputs)  # checked before the model is loaded
    out = check_output_file(output) if output is not None else None
    predictor = load_image_predictor(model_dir, backend=backend, min_confidence=min_confidence)
    results = predictor.predict(files, batch_size=batch_size)
    if output is None:
        for path, r in zip(files, results):
            print(f"{path}\t{r['label']}\t{r['score']:.4f}")
        return
    with write_output(out, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "score", *[f"p_{label}" for label in predictor.labels]])
        for path, r in zip(files, results):
            writer.writerow(
                [
                    str(path),
                    r["label"],
                    f"{r['score']:.6f}",
                    *[f"{r['probabilities'][label]:.6f}" for label in predictor.labels],
                ]
            )
    print(f"{len(results)} predictions ({predictor.backend}) -> {out}")


PREDICTORS.register("image-classification", load_image_predictor)
RUNNER_KINDS.register("image", create_image_runner)  # pixel_values -> (batch, labels)
