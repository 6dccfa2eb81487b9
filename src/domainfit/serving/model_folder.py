"""What a trained model folder tells the serving side: its labels, its settings, its ONNX export.

    path = check_model_dir("runs/x/model")          # a Hugging Face folder, checked before anything loads
    settings = read_settings(path, tokenizer_max_length=512)
    report = read_export_report(path)               # onnx/export.json, or None if never exported

``domainfit.json`` (written by ``domainfit train``) holds the task, ``max_length``, the text prefix, the
long-text windows and the fitted temperature; a plain Hugging Face folder without it gets the defaults.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainfit.data.windows import AGGREGATIONS, LONG_TEXT_MODES, WindowSettings
from domainfit.errors import ModelError
from domainfit.models.folder import SETTINGS_FILE, read_folder_settings
from domainfit.models.loading import check_model_folder
from domainfit.serving.confidence import check_min_confidence

ONNX_DIR = "onnx"
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
EXPORT_REPORT = "export.json"
_MAX_LENGTH_CAP = 512


@dataclass(frozen=True)
class ServingSettings:
    """How texts are turned into model inputs; read from ``domainfit.json`` (defaults if absent)."""

    task: str
    max_length: int
    text_prefix: str
    windows: WindowSettings | None = None  # long texts: overlapping windows, logits aggregated per text
    temperature: float = 1.0  # probabilities = softmax(logits / temperature), fitted on validation
    min_confidence: float | None = None  # below it the label is ABSTAIN (evaluation.target_accuracy)


def check_model_dir(model_dir: str | Path) -> Path:
    """Return ``model_dir`` as a Path after checking it is a Hugging Face model folder."""
    path = Path(model_dir).expanduser()
    if not path.exists():
        raise ModelError(
            "model folder does not exist", path=path, fix="give the model/ folder that `domainfit train` wrote."
        )
    if not path.is_dir():
        raise ModelError(
            "expected a model folder, found a file",
            path=path,
            fix="give the folder that holds config.json, not a file inside it.",
        )
    if not (path / "config.json").is_file():
        raise ModelError(
            "this folder is not a Hugging Face model folder (no config.json)",
            path=path,
            fix="give the model/ folder written by `domainfit train` (it holds config.json).",
        )
    check_model_folder(path, key=None)  # no custom code, no pickle weights, intact safetensors
    return path


def read_labels(model_dir: Path) -> list[str]:
    """Label names in output order, from ``config.json``'s ``id2label``."""
    config_path = model_dir / "config.json"
    config = read_json(config_path)
    if config.get("problem_type") == "multi_label_classification":
        raise ModelError(
            "this is a multi-label model; the Predictor serves single-label classification",
            path=config_path,
            key="problem_type",
        )
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise ModelError(
            "config.json has no id2label, so the label names are unknown",
            path=config_path,
            key="id2label",
            fix="save the model with id2label set (domainfit train does this).",
        )
    try:
        return [str(id2label[str(i)]) for i in range(len(id2label))]
    except KeyError as e:
        raise ModelError(
            f"id2label keys must be 0..{len(id2label) - 1}; found {sorted(id2label)}", path=config_path, key="id2label"
        ) from e


def read_settings(model_dir: Path, tokenizer_max_length: int | None) -> ServingSettings:
    """Read ``domainfit.json``; a missing file or key takes the default (plain Hugging Face folders work)."""
    path = model_dir / SETTINGS_FILE
    data = read_folder_settings(model_dir)
    task = data.get("task", "text-classification")
    if task != "text-classification":
        raise ModelError(
            f"this folder holds a {task!r} model; the Predictor serves 'text-classification'", path=path, key="task"
        )
    default_length = min(tokenizer_max_length or _MAX_LENGTH_CAP, _MAX_LENGTH_CAP)
    max_length = data.get("max_length", default_length)
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
        raise ModelError(f"max_length must be an integer >= 2, found {max_length!r}", path=path, key="max_length")
    prefix = data.get("text_prefix", "")
    if not isinstance(prefix, str):
        raise ModelError(f"text_prefix must be a string, found {prefix!r}", path=path, key="text_prefix")
    temperature, min_confidence = read_confidence_settings(data, path)
    return ServingSettings(
        task=task,
        max_length=max_length,
        text_prefix=prefix,
        windows=_read_window_settings(data, path, max_length),
        temperature=temperature,
        min_confidence=min_confidence,
    )


def read_confidence_settings(data: dict[str, Any], path: Path) -> tuple[float, float | None]:
    """domainfit.json's ``temperature`` (default 1.0) and ``min_confidence`` (default None: never abstain)."""
    temperature = data.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ModelError(
            f"temperature must be a number > 0, found {temperature!r}",
            path=path,
            key="temperature",
            fix="retrain, or set it to 1.0 (no scaling).",
        )
    min_confidence = data.get("min_confidence")
    check_min_confidence(min_confidence, path=path, key="min_confidence")
    return float(temperature), (None if min_confidence is None else float(min_confidence))


def _read_window_settings(data: dict[str, Any], path: Path, max_length: int) -> WindowSettings | None:
    """The training run's ``long_text`` settings (absent: truncate, as before windows existed)."""
    mode = data.get("long_text", "truncate")
    if mode not in LONG_TEXT_MODES:
        raise ModelError(
            f"long_text must be one of {', '.join(LONG_TEXT_MODES)}, found {mode!r}", path=path, key="long_text"
        )
    if mode == "truncate":
        return None
    stride, how = data.get("window_stride"), data.get("window_aggregation", "mean")
    if stride is not None and (not isinstance(stride, int) or isinstance(stride, bool) or stride < 1):
        raise ModelError(
            f"window_stride must be a positive integer or null, found {stride!r}", path=path, key="window_stride"
        )
    if how not in AGGREGATIONS:
        raise ModelError(
            f"window_aggregation must be one of {', '.join(AGGREGATIONS)}, found {how!r}",
            path=path,
            key="window_aggregation",
        )
    return WindowSettings(max_length, stride, how)


def weights_fingerprint(model_dir: Path) -> str | None:
    """sha256 over the PyTorch weight files, so an ONNX export can tell it came from these weights.

    None when the folder ships without PyTorch weights (an ONNX-only deployment).
    """
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def read_export_report(model_dir: Path) -> dict[str, Any] | None:
    """The parity report written by ``domainfit export``, or None if the folder was not exported."""
    path = model_dir / ONNX_DIR / EXPORT_REPORT
    return read_json(path) if path.is_file() else None


def export_is_current(model_dir: Path, report: dict[str, Any]) -> bool:
    """True if the export report was made from the PyTorch weights now in the folder (or the folder
    holds no PyTorch weights to compare with)."""
    current = weights_fingerprint(model_dir)
    return current is None or report.get("weights_sha256") == current


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object read from ``path``, with a ModelError when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"cannot read JSON: {e}", path=path) from e
    if not isinstance(data, dict):
        raise ModelError(f"expected a JSON object, found {type(data).__name__}", path=path)
    return data
