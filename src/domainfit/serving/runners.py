"""The inference engines: each turns padded int64 inputs into float32 logits (batch, num_labels).

    runner = OnnxRunner(model_dir / "onnx" / "model.onnx", num_threads=None)
    logits = runner(pad_inputs(ids, type_ids, pad_id))

:class:`TorchRunner` runs eager PyTorch (fp32, or bf16 weights), :class:`OnnxRunner` ONNX Runtime on the CPU,
:class:`SplitRunner` one of them for batches and the other for single texts. Which one a folder gets is
chosen in :mod:`domainfit.serving.backends`.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from domainfit.errors import MissingExtraError, ModelError
from domainfit.serving.model_folder import ONNX_DIR, ONNX_FILES


class Runner(Protocol):
    """One inference engine. ``input_names`` are the inputs it takes, out of those ``pad_inputs`` makes."""

    input_names: tuple[str, ...]

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


class RunnerOwner:
    """What a predictor built on one :class:`Runner` (``self._runner``) says and does about it."""

    _runner: Runner

    def close(self) -> None:
        """Stop the model's worker process, if it runs in one (``model_process``); a no-op otherwise."""
        close = getattr(self._runner, "close", None)
        if close is not None:
            close()

    @property
    def model_process_pid(self) -> int | None:
        """The worker process's pid while one runs the model, else None."""
        return getattr(self._runner, "pid", None)


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
                model_dir, dtype=torch.float32, attn_implementation=attn_implementation
            )
        except ValueError:  # this architecture has no such attention implementation
            model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
    except OSError as e:
        raise ModelError(
            f"cannot load the PyTorch model: {e}",
            path=model_dir,
            fix="the folder needs model.safetensors; or use backend='onnx'.",
        ) from e
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
            input_names = tuple(name for name in ("input_ids", "attention_mask", "token_type_ids") if name in accepted)
        self.input_names = input_names

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        feed = {name: torch.from_numpy(inputs[name]) for name in self.input_names}
        with torch.inference_mode():
            logits = self.model(**feed).logits  # (batch, num_labels), or (batch, seq, num_labels) for tokens
        return logits.float().numpy()


def torch_runner(model_dir: Path, num_threads: int | None, *, bf16: bool) -> TorchRunner:
    """The folder's PyTorch model on ``num_threads`` threads, in bf16 weights if ``bf16``."""
    import torch

    if num_threads is not None:
        torch.set_num_threads(num_threads)  # process-wide: torch has one intra-op pool
    model = load_torch_model(model_dir)
    # bf16 weights rather than torch.autocast: autocast re-casts every weight on every call, which made
    # it 1.5x slower than this in benchmarks/bench_inference.py (LayerNorm and softmax still accumulate
    # in fp32 inside torch's bf16 CPU kernels)
    return TorchRunner(model.to(torch.bfloat16) if bf16 else model)


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
            raise ModelError(
                f"onnxruntime cannot load the model: {e}",
                path=model_path,
                fix=f"re-export it: domainfit export {model_path.parent.parent}",
            ) from e
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
        self.input_names = tuple(dict.fromkeys(batches.input_names + single.input_names))  # each takes its own

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return (self.single if len(inputs["input_ids"]) == 1 else self.batches)(inputs)


def import_onnxruntime() -> Any:
    """``import onnxruntime``, or a MissingExtraError that names the extra to install."""
    try:
        import onnxruntime
    except ImportError as e:
        raise MissingExtraError(
            "the ONNX backends need onnxruntime, which is not installed", fix='pip install "domainfit[export]"'
        ) from e
    return onnxruntime


def onnx_path(model_dir: Path, backend: str) -> Path:
    """The ONNX file of ``backend`` ("onnx" or "onnx-int8"); a ModelError if it was not exported."""
    path = model_dir / ONNX_DIR / ONNX_FILES[backend]
    if not path.is_file():
        raise ModelError(
            f"backend {backend!r} needs {ONNX_DIR}/{ONNX_FILES[backend]}, which does not exist",
            path=model_dir,
            fix=f"run `domainfit export {model_dir}` first, or use backend='torch'.",
        )
    return path


def onnx_runner(model_dir: Path, backend: str, num_threads: int | None) -> OnnxRunner:
    """The ONNX Runtime session of ``backend`` ("onnx" or "onnx-int8") of an exported folder."""
    return OnnxRunner(onnx_path(model_dir, backend), num_threads=num_threads)


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads add little to matrix multiplies)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil

        physical = psutil.cpu_count(logical=False) or available
    except ImportError:
        physical = available
    return max(1, min(physical, available))
