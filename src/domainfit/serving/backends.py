"""Which inference backend serves a model folder: the names, the "auto" choice, and the runner of each.

    backend = resolve_backend(model_dir, "auto")   # e.g. "onnx-int8" when its parity report allows
    runner = create_runner(model_dir, backend, num_threads=None)

"auto" picks a faster, reduced-precision backend only where ``domainfit export`` measured that it gives the
same labels as PyTorch fp32 (``onnx/export.json``); the order comes from ``benchmarks/bench_inference.py``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from domainfit.errors import DomainfitError, MissingExtraError, ModelError
from domainfit.serving.model_folder import (
    ONNX_DIR,
    ONNX_FILES,
    export_is_current,
    read_export_report,
    weights_fingerprint,
)
from domainfit.serving.registry import RUNNER_KINDS
from domainfit.serving.runners import (
    OnnxRunner,
    Runner,
    SplitRunner,
    import_onnxruntime,
    onnx_path,
    torch_runner,
)

# "torch-bf16+onnx": batches on bf16 PyTorch (fastest batches), single texts on fp32 ONNX (fastest latency)
SPLIT_BACKEND = "torch-bf16+onnx"
BACKENDS = ("auto", "torch", "torch-bf16", "onnx", "onnx-int8", SPLIT_BACKEND)
# "auto" serves a reduced-precision model (int8 ONNX, bf16 torch) only if it gave the same label as PyTorch
# fp32 on at least this share of the parity texts of `domainfit export`. Accuracy can then move by at most
# 0.5 point on those texts: the project's accuracy budget for a faster backend.
AUTO_MIN_AGREEMENT = 0.995
# Texts per batch when the caller does not say. ONNX Runtime runs 20-25% faster on batches of 32 than of
# 64 (activations stay in cache); eager PyTorch prefers 64 (benchmarks/bench_inference.py, 2-core Xeon).
# the backends whose batches run eager PyTorch (Python-side work in every layer, under the GIL)
EAGER_TORCH_BACKENDS = ("torch", "torch-bf16", SPLIT_BACKEND)
DEFAULT_BATCH_SIZE = {"torch": 64, "torch-bf16": 64, "onnx": 32, "onnx-int8": 32, SPLIT_BACKEND: 64}
# What one model call costs beyond its tokens, in padded tokens: where a length-sorted batch is cut
# (domainfit.data.lengths.sorted_batches(call_cost=...)). benchmarks/bench_batch_cuts.py fitted 8.3 ms per call
# + 37 us per padded token offline (MiniLM, bf16, 2 cores): about 230 tokens; int8 ONNX served 0.75 of offline
# with 230, 0.64 cut every 32 rows. Inside the server eager PyTorch pays more per call (its Python-side work
# holds the GIL against the event loop): 800 served 1.22x the texts/s of 230 (bf16). BENCHMARKS.md "Serving".
CALL_COST = {"torch": 800, "torch-bf16": 800, "onnx": 230, "onnx-int8": 230, SPLIT_BACKEND: 800}

_RUNNERS: dict[str, Callable[[Path, int | None], Runner]] = {
    "torch": lambda d, n: torch_runner(d, n, bf16=False),
    "torch-bf16": lambda d, n: torch_runner(d, n, bf16=True),
    "onnx": lambda d, n: OnnxRunner(onnx_path(d, "onnx"), num_threads=n),
    "onnx-int8": lambda d, n: OnnxRunner(onnx_path(d, "onnx-int8"), num_threads=n),
    SPLIT_BACKEND: lambda d, n: SplitRunner(
        torch_runner(d, n, bf16=True), OnnxRunner(onnx_path(d, "onnx"), num_threads=n)
    ),
}


def create_runner(model_dir: Path, backend: str, num_threads: int | None) -> Runner:
    """The runner of a concrete ``backend`` (one :func:`resolve_backend` returned) for ``model_dir``."""
    return _RUNNERS[backend](model_dir, num_threads)


RUNNER_KINDS.register("sequence", create_runner)  # text and multi-label classifiers: (batch, labels)


def cpu_has_native_bf16() -> bool:
    """True if this CPU computes bf16 matrix products in hardware (AVX512-BF16 or AMX); elsewhere bf16
    is emulated and slower than fp32."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # these probes are private and may move; then do not count on bf16
        return False


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
        has_fp32_onnx = has_ort and (model_dir / ONNX_DIR / ONNX_FILES["onnx"]).is_file()
        return SPLIT_BACKEND if has_fp32_onnx else "torch-bf16"
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
        raise DomainfitError(
            f"backend {backend!r} is not available for {what}.{hint}", fix=f"use one of: {', '.join(offered)}."
        )
    resolved = resolve_backend(model_dir, backend)
    if backend != "auto" and resolved in (*ONNX_FILES, SPLIT_BACKEND):  # "auto" has checked already
        check_export_current(model_dir, resolved)
    return resolved


def check_export_current(model_dir: Path, backend: str) -> None:
    """A ModelError if the ``backend`` ONNX model was exported from other weights than those in the folder."""
    report = read_export_report(model_dir)
    if report is not None and not export_is_current(model_dir, report):
        raise ModelError(
            f"the {backend} model in {ONNX_DIR}/ was exported from other weights than the "
            "ones now in the folder (the model was retrained after export)",
            path=model_dir,
            fix=f"run `domainfit export {model_dir}` again.",
        )
