"""Fast prediction from a trained model folder, with PyTorch or ONNX Runtime underneath.

    import domainfit
    predictor = domainfit.load("runs/x/model")              # backend="auto": int8 ONNX when it is safe
    predictor.predict(["Operating profit rose to EUR 13.1 mn ."])
    # [{'label': 'positive', 'score': 0.97,
    #   'probabilities': {'negative': 0.01, 'neutral': 0.02, 'positive': 0.97}}]

Speed comes from three things, in order of effect (see ``benchmarks/bench_inference.py`` for the figures):
batching texts of similar length so each batch is padded only to its own longest text; running an
exported, fused and int8-quantised ONNX graph instead of eager PyTorch; and keeping the per-call path
short (the Rust ``tokenizers`` backend called directly, numpy in and out, no ``pipeline`` machinery).
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from domainfit.data.lengths import SERVING_BATCH_TOKENS, sorted_batches
from domainfit.data.windows import (
    AGGREGATIONS,
    LONG_TEXT_MODES,
    WindowSettings,
    aggregate_by_group,
    special_token_counts,
    window_rows,
)
from domainfit.errors import DomainfitError, MissingExtraError, ModelError
from domainfit.models.folder import SETTINGS_FILE, read_folder_settings
from domainfit.models.loading import check_model_folder, check_tokenizer_files
from domainfit.serving.registry import PREDICTORS
from domainfit.serving.text_cap import cap_texts, check_max_chars, default_max_chars

# "torch-bf16+onnx": batches on bf16 PyTorch (fastest batches), single texts on fp32 ONNX (fastest latency)
SPLIT_BACKEND = "torch-bf16+onnx"
BACKENDS = ("auto", "torch", "torch-bf16", "onnx", "onnx-int8", SPLIT_BACKEND)

ONNX_DIR = "onnx"
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
EXPORT_REPORT = "export.json"
ABSTAIN = "abstain"  # the label of a prediction under min_confidence: route it to a person
# "auto" serves a reduced-precision model (int8 ONNX, bf16 torch) only if it gave the same label as PyTorch
# fp32 on at least this share of the parity texts of `domainfit export`. Accuracy can then move by at most
# 0.5 point on those texts: the project's accuracy budget for a faster backend.
AUTO_MIN_AGREEMENT = 0.995
_MAX_LENGTH_CAP = 512
_NO_TRUNCATION = 1_000_000  # windowed models tokenise whole texts, then cut them into windows
# Texts per batch when the caller does not say. ONNX Runtime runs 20-25% faster on batches of 32 than of
# 64 (activations stay in cache); eager PyTorch prefers 64 (benchmarks/bench_inference.py, 2-core Xeon).
DEFAULT_BATCH_SIZE = {"torch": 64, "torch-bf16": 64, "onnx": 32, "onnx-int8": 32, SPLIT_BACKEND: 64}


# ----------------------------------------------------------------------------------------------------------
# The model folder


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
        raise ModelError("model folder does not exist", path=path,
                         fix="give the model/ folder that `domainfit train` wrote.")
    if not path.is_dir():
        raise ModelError("expected a model folder, found a file", path=path,
                         fix="give the folder that holds config.json, not a file inside it.")
    if not (path / "config.json").is_file():
        raise ModelError("this folder is not a Hugging Face model folder (no config.json)", path=path,
                         fix="give the model/ folder written by `domainfit train` (it holds config.json).")
    check_model_folder(path, key=None)  # no custom code, no pickle weights, intact safetensors
    return path


def read_labels(model_dir: Path) -> list[str]:
    """Label names in output order, from ``config.json``'s ``id2label``."""
    config_path = model_dir / "config.json"
    config = _read_json(config_path)
    if config.get("problem_type") == "multi_label_classification":
        raise ModelError("this is a multi-label model; the Predictor serves single-label classification",
                         path=config_path, key="problem_type")
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise ModelError("config.json has no id2label, so the label names are unknown", path=config_path,
                         key="id2label", fix="save the model with id2label set (domainfit train does this).")
    try:
        return [str(id2label[str(i)]) for i in range(len(id2label))]
    except KeyError as e:
        raise ModelError(f"id2label keys must be 0..{len(id2label) - 1}; found {sorted(id2label)}",
                         path=config_path, key="id2label") from e


def read_settings(model_dir: Path, tokenizer_max_length: int | None) -> ServingSettings:
    """Read ``domainfit.json``; a missing file or key takes the default (plain Hugging Face folders work)."""
    path = model_dir / SETTINGS_FILE
    data = read_folder_settings(model_dir)
    task = data.get("task", "text-classification")
    if task != "text-classification":
        raise ModelError(f"this folder holds a {task!r} model; the Predictor serves 'text-classification'",
                         path=path, key="task")
    default_length = min(tokenizer_max_length or _MAX_LENGTH_CAP, _MAX_LENGTH_CAP)
    max_length = data.get("max_length", default_length)
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
        raise ModelError(f"max_length must be an integer >= 2, found {max_length!r}", path=path,
                         key="max_length")
    prefix = data.get("text_prefix", "")
    if not isinstance(prefix, str):
        raise ModelError(f"text_prefix must be a string, found {prefix!r}", path=path, key="text_prefix")
    temperature, min_confidence = read_confidence_settings(data, path)
    return ServingSettings(task=task, max_length=max_length, text_prefix=prefix,
                           windows=_read_window_settings(data, path, max_length), temperature=temperature,
                           min_confidence=min_confidence)


def read_confidence_settings(data: dict[str, Any], path: Path) -> tuple[float, float | None]:
    """domainfit.json's ``temperature`` (default 1.0) and ``min_confidence`` (default None: never abstain)."""
    temperature = data.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ModelError(f"temperature must be a number > 0, found {temperature!r}", path=path,
                         key="temperature", fix="retrain, or set it to 1.0 (no scaling).")
    min_confidence = data.get("min_confidence")
    check_min_confidence(min_confidence, path=path, key="min_confidence")
    return float(temperature), (None if min_confidence is None else float(min_confidence))


def check_min_confidence(value: Any, *, path: Path | None = None, key: str | None = None) -> None:
    """A confidence threshold is None or a number from 0 to 1."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise DomainfitError(f"min_confidence must be a number from 0 to 1, found {value!r}", path=path,
                             key=key, fix="e.g. --min-confidence 0.8 (answers below 0.8 confidence become "
                             "'abstain').")


def apply_abstention(results: list[dict[str, Any]], min_confidence: float | None) -> list[dict[str, Any]]:
    """Replace the label of each result whose ``score`` is under ``min_confidence`` by :data:`ABSTAIN`."""
    if min_confidence is None:
        return results
    for result in results:
        if result["score"] < min_confidence:
            result["label"] = ABSTAIN
    return results


def _read_window_settings(data: dict[str, Any], path: Path, max_length: int) -> WindowSettings | None:
    """The training run's ``long_text`` settings (absent: truncate, as before windows existed)."""
    mode = data.get("long_text", "truncate")
    if mode not in LONG_TEXT_MODES:
        raise ModelError(f"long_text must be one of {', '.join(LONG_TEXT_MODES)}, found {mode!r}", path=path,
                         key="long_text")
    if mode == "truncate":
        return None
    stride, how = data.get("window_stride"), data.get("window_aggregation", "mean")
    if stride is not None and (not isinstance(stride, int) or isinstance(stride, bool) or stride < 1):
        raise ModelError(f"window_stride must be a positive integer or null, found {stride!r}", path=path,
                         key="window_stride")
    if how not in AGGREGATIONS:
        raise ModelError(f"window_aggregation must be one of {', '.join(AGGREGATIONS)}, found {how!r}", path=path,
                         key="window_aggregation")
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
    return _read_json(path) if path.is_file() else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"cannot read JSON: {e}", path=path) from e
    if not isinstance(data, dict):
        raise ModelError(f"expected a JSON object, found {type(data).__name__}", path=path)
    return data


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads add little to matrix multiplies)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or available
    except ImportError:
        physical = available
    return max(1, min(physical, available))


# ----------------------------------------------------------------------------------------------------------
# Tokenising: the Rust backend, called directly


class FastTokenizer:
    """Texts -> token ids, unpadded and truncated to ``max_length``: the ids the training tokenizer gives.

    Calls the Rust ``tokenizers`` backend directly (a private copy, so the caller's tokenizer keeps its
    settings); a tokenizer without one (a slow, Python-only tokenizer) is called through transformers.
    """

    def __init__(self, hf_tokenizer: Any, max_length: int) -> None:
        self.max_length = max_length
        self.pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
        self._hf = hf_tokenizer
        self._backend = None
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is not None:
            from tokenizers import Tokenizer

            self._backend = Tokenizer.from_str(backend.to_str())
            self._backend.no_padding()
            self._backend.enable_truncation(max_length)

    def __call__(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Return (input ids, token type ids) per text."""
        if self._backend is not None:
            if len(texts) == 1:  # encode_batch's thread hand-off costs more than one short text
                encodings = [self._backend.encode(texts[0])]
            else:
                encodings = self._backend.encode_batch(list(texts))
            return [e.ids for e in encodings], [e.type_ids for e in encodings]
        out = self._hf(list(texts), truncation=True, max_length=self.max_length, return_token_type_ids=True)
        ids = out["input_ids"]
        return ids, out.get("token_type_ids") or [[0] * len(x) for x in ids]


def load_hf_tokenizer(model_dir: Path) -> Any:
    """The folder's tokenizer through ``AutoTokenizer``, with a ModelError if it cannot be loaded."""
    from transformers import AutoTokenizer

    check_tokenizer_files(model_dir, key=None)
    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the tokenizer: {e}", path=model_dir,
                         fix="save the tokenizer next to the model (tokenizer.save_pretrained(DIR)).") from e


def pad_inputs(ids: list[list[int]], type_ids: list[list[int]], pad_id: int) -> dict[str, np.ndarray]:
    """Right-pad one batch to its own longest row; int64 arrays of shape (batch, seq)."""
    length = max(len(x) for x in ids)
    input_ids = np.full((len(ids), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(ids), length), dtype=np.int64)
    token_type_ids = np.zeros((len(ids), length), dtype=np.int64)
    for row, (x, t) in enumerate(zip(ids, type_ids)):
        input_ids[row, : len(x)] = x
        attention_mask[row, : len(x)] = 1
        token_type_ids[row, : len(t)] = t
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


# ----------------------------------------------------------------------------------------------------------
# Backends: each turns padded int64 inputs into float32 logits (batch, num_labels)


class Runner(Protocol):
    """One inference engine. ``input_names`` are the inputs it takes, out of those ``pad_inputs`` makes."""

    input_names: tuple[str, ...]

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


def load_torch_model(model_dir: Path, *, attn_implementation: str = "sdpa") -> Any:
    """The folder's ``AutoModelForSequenceClassification`` in fp32 eval mode.

    ``attn_implementation`` falls back to the model's default when the architecture lacks it.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    from domainfit.models.peft import load_adapted_model

    adapted = load_adapted_model(model_dir, attn_implementation=attn_implementation)  # PEFT adapter folders
    if adapted is not None:
        return adapted.float().eval()
    try:
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                model_dir, dtype=torch.float32, attn_implementation=attn_implementation)
        except ValueError:  # this architecture has no such attention implementation
            model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
    except OSError as e:
        raise ModelError(f"cannot load the PyTorch model: {e}", path=model_dir,
                         fix="the folder needs model.safetensors; or use backend='onnx'.") from e
    return model.eval()


class TorchRunner:
    """Eager PyTorch in the model's own dtype (fp32, or bf16 for the torch-bf16 backend).

    Args:
        model: a model whose output has ``.logits``.
        input_names: the inputs to feed it; default: those of ``pad_inputs`` its ``forward`` takes.
    """

    def __init__(self, model: Any, input_names: tuple[str, ...] | None = None) -> None:
        import torch

        self._torch = torch
        self.model = model
        if input_names is None:
            accepted = inspect.signature(model.forward).parameters
            input_names = tuple(name for name in ("input_ids", "attention_mask", "token_type_ids")
                                if name in accepted)
        self.input_names = input_names

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        feed = {name: torch.from_numpy(inputs[name]) for name in self.input_names}
        with torch.inference_mode():
            logits = self.model(**feed).logits  # (batch, num_labels), or (batch, seq, num_labels) for tokens
        return logits.float().numpy()


def _torch_runner(model_dir: Path, num_threads: int | None, *, bf16: bool) -> TorchRunner:
    import torch

    if num_threads is not None:
        torch.set_num_threads(num_threads)  # process-wide: torch has one intra-op pool
    model = load_torch_model(model_dir)
    # bf16 weights rather than torch.autocast: autocast re-casts every weight on every call, which made
    # it 1.5x slower than this in benchmarks/bench_inference.py (LayerNorm and softmax still accumulate
    # in fp32 inside torch's bf16 CPU kernels)
    return TorchRunner(model.to(torch.bfloat16) if bf16 else model)


def cpu_has_native_bf16() -> bool:
    """True if this CPU computes bf16 matrix products in hardware (AVX512-BF16 or AMX); elsewhere bf16
    is emulated and slower than fp32."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # these probes are private and may move; then do not count on bf16
        return False


class OnnxRunner:
    """ONNX Runtime on the CPU."""

    def __init__(self, model_path: Path, *, num_threads: int | None) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # one chain of layers: nothing to run side by side, so one pool of threads inside each op
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = num_threads or physical_cores()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors for corrupt or foreign files
            raise ModelError(f"onnxruntime cannot load the model: {e}", path=model_path,
                             fix=f"re-export it: domainfit export {model_path.parent.parent}") from e
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self._output = [self.session.get_outputs()[0].name]

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = {name: inputs[name] for name in self.input_names}
        return self.session.run(self._output, feed)[0].astype(np.float32, copy=False)


class SplitRunner:
    """One runner for batches, another for single texts: bf16 PyTorch runs batches several times faster than
    ONNX Runtime here, but a single sentence about twice as slowly (``benchmarks/bench_inference.py``)."""

    def __init__(self, batches: Runner, single: Runner) -> None:
        self.batches = batches
        self.single = single

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return (self.single if len(inputs["input_ids"]) == 1 else self.batches)(inputs)


def import_onnxruntime() -> Any:
    """``import onnxruntime``, or a MissingExtraError that names the extra to install."""
    try:
        import onnxruntime
    except ImportError as e:
        raise MissingExtraError("the ONNX backends need onnxruntime, which is not installed",
                                fix='pip install "domainfit[export]"') from e
    return onnxruntime


def _onnx_path(model_dir: Path, backend: str) -> Path:
    path = model_dir / ONNX_DIR / ONNX_FILES[backend]
    if not path.is_file():
        raise ModelError(f"backend {backend!r} needs {ONNX_DIR}/{ONNX_FILES[backend]}, which does not exist",
                         path=model_dir,
                         fix=f"run `domainfit export {model_dir}` first, or use backend='torch'.")
    return path


_RUNNERS: dict[str, Callable[[Path, int | None], Runner]] = {
    "torch": lambda d, n: _torch_runner(d, n, bf16=False),
    "torch-bf16": lambda d, n: _torch_runner(d, n, bf16=True),
    "onnx": lambda d, n: OnnxRunner(_onnx_path(d, "onnx"), num_threads=n),
    "onnx-int8": lambda d, n: OnnxRunner(_onnx_path(d, "onnx-int8"), num_threads=n),
    SPLIT_BACKEND: lambda d, n: SplitRunner(_torch_runner(d, n, bf16=True),
                                            OnnxRunner(_onnx_path(d, "onnx"), num_threads=n)),
}


def resolve_backend(model_dir: Path, backend: str) -> str:
    """Turn ``backend`` (maybe "auto") into one of the concrete backends, checking the name.

    "auto" reads the parity report that ``domainfit export`` wrote (``onnx/export.json``), if it was made
    from the weights now in the folder, and takes the first of:

    1. onnx-int8, if its labels agreed with PyTorch fp32 on >= ``AUTO_MIN_AGREEMENT`` of the parity texts
       (fastest single-sentence latency, and fast batches);
    2. torch-bf16, if its labels agreed as well and this CPU does bf16 in hardware (fastest batches), as
       ``torch-bf16+onnx`` where the fp32 ONNX model is there (single texts on it: fastest latency, same
       labels as PyTorch fp32);
    3. onnx (fp32, no accuracy change; faster than torch fp32 for one sentence);
    4. torch.

    The order comes from ``benchmarks/bench_inference.py``.
    """
    if backend not in BACKENDS:
        near = difflib.get_close_matches(str(backend), BACKENDS, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise DomainfitError(f"unknown backend {backend!r}.{hint} Valid backends: {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    report = read_export_report(model_dir)
    weights = weights_fingerprint(model_dir)
    # an ONNX-only folder (weights removed for shipping) has nothing to compare against
    if report is None or (weights is not None and report.get("weights_sha256") != weights):
        return "torch"
    models = report.get("models", {})

    def agrees(name: str) -> bool:
        return models.get(name, {}).get("label_agreement", 0.0) >= AUTO_MIN_AGREEMENT

    try:
        import_onnxruntime()
        has_ort = True
    except MissingExtraError:
        has_ort = False
    if has_ort and agrees("onnx-int8") and (model_dir / ONNX_DIR / ONNX_FILES["onnx-int8"]).is_file():
        return "onnx-int8"
    if weights is not None and agrees("torch-bf16") and cpu_has_native_bf16():
        return SPLIT_BACKEND if has_ort and (model_dir / ONNX_DIR / ONNX_FILES["onnx"]).is_file() else "torch-bf16"
    if has_ort and (model_dir / ONNX_DIR / ONNX_FILES["onnx"]).is_file():
        return "onnx"
    return "torch"


def resolve_task_backend(model_dir: Path, backend: str, offered: tuple[str, ...], what: str) -> str:
    """:func:`resolve_backend` for a predictor that offers only the backends ``offered``.

    "auto" picks by the parity report as for text classification (the exporters of tasks without a bf16
    backend measure no bf16 parity, so "auto" never picks it for them); an ONNX backend named explicitly
    is checked to come from the weights now in the folder.
    """
    if backend not in offered:
        near = difflib.get_close_matches(str(backend), offered, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise DomainfitError(f"backend {backend!r} is not available for {what}.{hint}",
                             fix=f"use one of: {', '.join(offered)}.")
    resolved = resolve_backend(model_dir, backend)
    if backend != "auto" and resolved in (*ONNX_FILES, SPLIT_BACKEND):  # "auto" has checked already
        _check_stale(model_dir, resolved)
    return resolved


def onnx_runner(model_dir: Path, backend: str, num_threads: int | None) -> OnnxRunner:
    """The ONNX Runtime session of ``backend`` ("onnx" or "onnx-int8") of an exported folder."""
    return OnnxRunner(_onnx_path(model_dir, backend), num_threads=num_threads)


def export_is_current(model_dir: Path, report: dict[str, Any]) -> bool:
    """True if the export report was made from the PyTorch weights now in the folder (or the folder
    holds no PyTorch weights to compare with)."""
    current = weights_fingerprint(model_dir)
    return current is None or report.get("weights_sha256") == current


def _check_stale(model_dir: Path, backend: str) -> None:
    report = read_export_report(model_dir)
    if report is not None and not export_is_current(model_dir, report):
        raise ModelError(f"the {backend} model in {ONNX_DIR}/ was exported from other weights than the "
                         "ones now in the folder (the model was retrained after export)", path=model_dir,
                         fix=f"run `domainfit export {model_dir}` again.")


# ----------------------------------------------------------------------------------------------------------
# The predictor


class Predictor:
    """Classifies texts with a trained model folder; build it with :func:`load`.

    Attributes:
        labels: label names, in the order of the probability columns.
        backend: the backend in use ("torch", "torch-bf16", "onnx", "onnx-int8" or "torch-bf16+onnx").
        max_length: texts are truncated to this many tokens (special tokens included).
        windows: for models trained with ``long_text: windows``: how long texts are cut and aggregated.
        text_prefix: prepended to every text before tokenising (e.g. "query: " for e5 models).
        temperature: logits are divided by it before the softmax (fitted on validation; labels unchanged).
        min_confidence: :meth:`predict` answers "abstain" when the top probability is below it (None: never).
        max_chars: texts are cut to this many characters before tokenising, so one huge text cannot take
            all the memory (:mod:`domainfit.serving.text_cap`).
    """

    def __init__(self, runner: Runner, tokenizer: FastTokenizer, labels: list[str], settings: ServingSettings,
                 backend: str, max_chars: int | None = None, min_confidence: float | None = None) -> None:
        check_max_chars(max_chars)
        check_min_confidence(min_confidence)
        self._runner = runner
        self._tokenizer = tokenizer
        self.labels = labels
        self.backend = backend
        self.max_length = settings.max_length
        self.text_prefix = settings.text_prefix
        self.windows = settings.windows
        self.temperature = settings.temperature
        self.min_confidence = min_confidence if min_confidence is not None else settings.min_confidence
        self.max_chars = max_chars or default_max_chars(self.max_length, windows=self.windows is not None)

    def __repr__(self) -> str:
        return f"Predictor(backend={self.backend!r}, labels={self.labels}, max_length={self.max_length})"

    def predict_proba(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Class probabilities, shape (len(texts), len(labels)), float32, rows in input order.

        Texts are sorted by token length and batched, each batch padded only to its own longest text,
        so a few long texts do not slow down all the short ones; a batch also stops at
        ``SERVING_BATCH_TOKENS`` padded tokens, so long texts (windows of 512 tokens) go in fewer rows.

        Args:
            texts: the texts to classify.
            batch_size: texts per forward pass; default ``DEFAULT_BATCH_SIZE[backend]`` (32 for the ONNX
                backends, 64 for torch).
        """
        texts = self._check_texts(texts)
        reads = f"{'windows' if self.windows else 'its first'} {self.max_length} tokens"
        texts = cap_texts(texts, self.max_chars, reads=reads)
        if batch_size is None:
            batch_size = DEFAULT_BATCH_SIZE[self.backend]
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise DomainfitError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if self.text_prefix:
            texts = [self.text_prefix + t for t in texts]
        ids, type_ids = self._tokenizer(texts)
        groups = None
        if self.windows is not None:  # long texts -> windows, as in training (domainfit.data.windows)
            ids, type_ids, groups = window_rows(ids, self.windows)
        if len(ids) == 1:  # the latency path: no sorting or scattering
            return _softmax(self._runner(pad_inputs(ids, type_ids, self._tokenizer.pad_id)), self.temperature)
        logits = np.empty((len(ids), len(self.labels)), dtype=np.float32)
        for rows in sorted_batches([len(x) for x in ids], batch_size, SERVING_BATCH_TOKENS):
            inputs = pad_inputs([ids[i] for i in rows], [type_ids[i] for i in rows], self._tokenizer.pad_id)
            logits[rows] = self._runner(inputs)
        if groups is not None:
            logits = aggregate_by_group(logits, groups, self.windows.aggregation)
        return _softmax(logits, self.temperature)

    def predict(self, texts: Sequence[str], batch_size: int | None = None) -> list[dict[str, Any]]:
        """Best label, its probability, and all probabilities, one dict per text in input order.

        ``batch_size`` is as in :meth:`predict_proba`. The label is "abstain" when the probability is under
        ``min_confidence``; the probabilities still show what the model would have said.
        """
        probabilities = self.predict_proba(texts, batch_size=batch_size)
        results = []
        for row in probabilities.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            results.append({"label": self.labels[best], "score": row[best],
                            "probabilities": dict(zip(self.labels, row))})
        return apply_abstention(results, self.min_confidence)

    @staticmethod
    def _check_texts(texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise DomainfitError("expected a list of texts, got one string",
                                 fix="wrap it in a list: predict([text]).")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DomainfitError(f"text {i} is a {type(text).__name__}, not a string: {text!r:.80}")
            if not text.strip():
                raise DomainfitError(f"text {i} is empty or only whitespace: nothing to classify",
                                     fix="drop empty texts before predicting.")
        return texts


def _softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float32; logits (batch, num_labels)."""
    if temperature != 1.0:
        logits = logits / np.float32(temperature)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return exp / exp.sum(axis=1, keepdims=True)


def read_text_side(model_dir: Path) -> tuple[FastTokenizer, ServingSettings, list[str]]:
    """Everything but the network: tokenizer (truncating at the folder's max_length), settings, labels."""
    labels = read_labels(model_dir)
    hf_tokenizer = load_hf_tokenizer(model_dir)
    settings = read_settings(model_dir, getattr(hf_tokenizer, "model_max_length", None))
    if settings.windows is None:
        return FastTokenizer(hf_tokenizer, settings.max_length), settings, labels
    windows = WindowSettings(settings.max_length, settings.windows.stride, settings.windows.aggregation,
                             *special_token_counts(hf_tokenizer))
    windows.check(key="window_stride")
    settings = ServingSettings(settings.task, settings.max_length, settings.text_prefix, windows,
                               settings.temperature, settings.min_confidence)
    return FastTokenizer(hf_tokenizer, _NO_TRUNCATION), settings, labels


def load_text_classifier(path: Path, *, backend: str = "auto", num_threads: int | None = None,
                         max_chars: int | None = None, min_confidence: float | None = None) -> Predictor:
    """A single-label text classifier on the backend :func:`resolve_backend` picks (see :func:`domainfit.serving.load`)."""
    resolved = resolve_backend(path, backend)
    tokenizer, settings, labels = read_text_side(path)
    if backend != "auto" and resolved in (*ONNX_FILES, SPLIT_BACKEND):  # "auto" has checked already
        _check_stale(path, resolved)
    runner = _RUNNERS[resolved](path, num_threads)
    return Predictor(runner, tokenizer, labels, settings, resolved, max_chars, min_confidence)


PREDICTORS.register("text-classification", load_text_classifier)
