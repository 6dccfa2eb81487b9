"""Export a trained model folder to ONNX (fp32 and int8), and check the exports agree with PyTorch.

    domainfit export runs/x/model     # writes runs/x/model/onnx/{model.onnx, model.int8.onnx, export.json}

Steps: ``torch.onnx.export`` with dynamic batch and sequence axes; ONNX Runtime's transformer fusions
(attention, embedding + LayerNorm, bias + GELU, skip + LayerNorm) for BERT-like encoders, kept only if the
fused graph still matches PyTorch; dynamic int8 quantisation of the weights
(``onnxruntime.quantization.quantize_dynamic``). Then a parity run: PyTorch fp32 and each ONNX model
classify the same texts (and PyTorch in bf16, which needs no file), and ``export.json`` records how often
the labels agree and the largest probability difference. ``domainfit.load(DIR)`` reads that file to
decide whether int8 (or bf16) is safe to serve.

The steps are shared (:class:`ExportJob`, :func:`run_export`): the exporters of the other tasks
(``export/token_classification.py``, ``multi_label.py``, ``image_classification.py``) only say how
their model is fed and what "the same prediction" means for them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from domainfit.errors import DomainfitError, MissingExtraError
from domainfit.export.registry import EXPORTERS
from domainfit.io.atomic import move_atomic, write_text_atomic
from domainfit.serving.backends import AUTO_MIN_AGREEMENT
from domainfit.serving.files import pid_is_alive
from domainfit.serving.model_folder import (
    EXPORT_REPORT,
    ONNX_DIR,
    ONNX_FILES,
    check_model_dir,
    weights_fingerprint,
)
from domainfit.serving.predictor import Predictor, read_text_side
from domainfit.serving.runners import OnnxRunner, Runner, TorchRunner, load_torch_model
from domainfit.serving.tokenizing import FastTokenizer, pad_inputs
from domainfit.version import __version__

# Architectures whose attention ONNX Runtime's "bert" fusion recognises. Others are exported unfused
# (correct, just slower).
_FUSABLE_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "albert")
# A fused fp32 graph must give the same logits as PyTorch up to float rounding; otherwise it is dropped.
_FUSION_TOLERANCE = 1e-3
# work folders are .export-<pid>-<random>: a killed export's folder is removed by the next export
_WORK_PREFIX = ".export-"

# Used when no parity texts are given: short and long, several domains, some numbers and odd tokens.
BUILTIN_PARITY_TEXTS = (
    "Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the corresponding period in 2007 .",
    "The company said that sales in the fourth quarter fell by 12 % year on year .",
    "Net sales are expected to remain at the same level as in 2008 .",
    "Shares in the bank dropped sharply after it announced a profit warning.",
    "The board proposes a dividend of EUR 0.50 per share.",
    "Analysts expect the merger to be completed by the end of the year, pending regulatory approval.",
    "Patient is a 67-year-old male presenting with chest pain radiating to the left arm.",
    "No acute distress. Lungs clear to auscultation bilaterally. Heart regular rate and rhythm.",
    "MRI of the lumbar spine shows mild degenerative disc disease at L4-L5 without stenosis.",
    "Discharged home in stable condition with follow-up in two weeks.",
    "The delivery was late and the package arrived damaged; I want a refund.",
    "Great service, friendly staff, would definitely recommend!",
    "I am not sure whether this is good or bad news.",
    "ok",
    "Terrible.",
    "The quick brown fox jumps over the lazy dog.",
    "Revenue grew 4.2% to $1.3bn while margins narrowed on higher input costs and a stronger dollar.",
    "The contract, valued at approximately EUR 2 million, covers the supply of equipment and maintenance "
    "services for five years, and the first deliveries are scheduled for the second half of next year, "
    "according to a statement released by the company on Tuesday morning before markets opened.",
    "Lab results: WBC 11.2, Hb 13.4, platelets 250; CRP elevated at 48 mg/L.",
    "Customer churn decreased for the third consecutive quarter.",
    "The factory will be closed and 150 employees will be laid off.",
    "Nothing much changed in the market today.",
    "Die Umsätze stiegen im dritten Quartal deutlich.",
    "The drug was well tolerated; adverse events were mild and transient.",
)


@dataclass
class ExportJob:
    """One model folder's export, as a task's exporter describes it to :func:`run_export`.

    Attributes:
        model: the PyTorch model in fp32 eval mode; its output has ``.logits``.
        sample: one batch to trace the graph with, numpy arrays by input name in the graph's input order;
            each variable axis must differ from 1 (two texts of different length, two images).
        dynamic_axes: per input name and for "logits": the axes that vary between calls.
        parity: runs a backend over the parity inputs and compares it with PyTorch fp32: returns
            ``label_agreement`` (share of the compared labels that are the same), ``disagreements`` and
            ``max_abs_prob_diff``.
        parity_info: what the parity inputs were, for the report (``{"texts": 24, "source": "built-in"}``).
        model_type: the Hugging Face ``model_type``, which decides whether the attention fusions apply.
        settings: serving settings recorded in the report (``{"max_length": 128}``).
        bf16: also measure PyTorch bf16 parity (for predictors that offer a torch-bf16 backend).
    """

    model: torch.nn.Module
    sample: dict[str, np.ndarray]
    dynamic_axes: dict[str, dict[int, str]]
    parity: Callable[[Runner], dict[str, Any]]
    parity_info: dict[str, Any]
    model_type: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    bf16: bool = False


def export_onnx(
    model_dir: str | Path,
    *,
    quantize: bool = True,
    parity_texts: list[str] | None = None,
    opset: int = 17,
) -> dict[str, Any]:
    """Export ``model_dir`` to ``model_dir/onnx/`` and check the exports against PyTorch.

    Writes ``onnx/model.onnx`` (fp32), ``onnx/model.int8.onnx`` (if ``quantize``) and ``onnx/export.json``
    (the returned report). Each file appears whole or not at all; ``export.json`` is removed first and
    written last, so a failed export never leaves a report that vouches for other files.

    Args:
        model_dir: a trained model folder (``domainfit train`` output, or any ``save_pretrained`` folder of
            a sequence-classification model with its tokenizer).
        quantize: also write the int8 model.
        parity_texts: texts to compare PyTorch and ONNX on; the validation texts are a good choice.
            Default: a built-in set of 24 sentences.
        opset: ONNX opset version.

    Returns:
        The report written to ``export.json``: versions, opset, and per model its file, size and parity.
    """
    path, parity_texts, parity_source = check_text_export(model_dir, parity_texts, opset)

    tokenizer, settings, labels = read_text_side(path)
    model = load_torch_model(path, attn_implementation="eager")  # eager attention: the pattern ORT fuses
    torch_predictor = Predictor(TorchRunner(model), tokenizer, labels, settings, "torch")
    reference = torch_predictor.predict_proba(parity_texts)  # (n, num_labels); also checks the texts

    def parity(runner: Runner) -> dict[str, Any]:
        """Same label per text as PyTorch fp32."""
        probabilities = Predictor(runner, tokenizer, labels, settings, "onnx").predict_proba(parity_texts)
        return label_parity(reference, probabilities)

    job = ExportJob(
        model,
        text_sample(tokenizer, TorchRunner(model).input_names),
        text_dynamic_axes(model),
        parity,
        {"texts": len(parity_texts), "source": parity_source},
        model_type=model.config.model_type,
        settings={"max_length": settings.max_length},
        bf16=True,
    )
    return run_export(path, job, quantize=quantize, opset=opset)


def check_text_export(model_dir: str | Path, parity_texts: list[str] | None, opset: int) -> tuple[Path, list[str], str]:
    """The checks every text exporter makes before loading a model, in order: the folder, the ``export``
    extra, the parity texts, the opset.

    Returns:
        The model folder, the parity texts and where they came from (see :func:`check_parity_texts`).
    """
    path = check_model_dir(model_dir)
    import_export_extra()
    texts, source = check_parity_texts(parity_texts)
    check_opset(opset)
    return path, texts, source


def check_parity_texts(parity_texts: list[str] | None) -> tuple[list[str], str]:
    """The texts to compare on and where they came from ("built-in" when None, else "given")."""
    if parity_texts is None:
        return list(BUILTIN_PARITY_TEXTS), "built-in"
    if not parity_texts:
        raise DomainfitError("parity_texts is empty; give some texts, or None for the built-in set")
    return list(parity_texts), "given"


def check_opset(opset: int) -> None:
    """Fail before any model is loaded if ``opset`` is not one the exporters can write."""
    if not isinstance(opset, int) or isinstance(opset, bool) or opset < 14:
        raise DomainfitError(f"opset must be an integer >= 14 (scaled attention needs it), got {opset!r}")


def text_sample(tokenizer: FastTokenizer, input_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A padded batch of two texts of different length, so no axis is traced as a constant 1."""
    ids, type_ids = tokenizer(["a short text", "a somewhat longer text to export the model with"])
    padded = pad_inputs(ids, type_ids, tokenizer.pad_id)
    return {name: padded[name] for name in input_names}


def text_dynamic_axes(model: torch.nn.Module, logits_axes: dict[int, str] | None = None) -> dict[str, dict[int, str]]:
    """Batch and sequence axes of the text inputs the model takes; ``logits_axes`` default: batch only."""
    names = TorchRunner(model).input_names
    return {name: {0: "batch", 1: "sequence"} for name in names} | {"logits": logits_axes or {0: "batch"}}


def run_export(path: Path, job: ExportJob, *, quantize: bool, opset: int) -> dict[str, Any]:
    """The shared steps of every exporter: trace, check, fuse (kept only if it still matches PyTorch),
    quantise to int8 (the recipe that keeps the labels), measure parity, write ``onnx/export.json`` last.

    Returns:
        The report written to ``export.json``.
    """
    onnx, ort = import_export_extra()
    out_dir = path / ONNX_DIR
    out_dir.mkdir(exist_ok=True)
    (out_dir / EXPORT_REPORT).unlink(missing_ok=True)
    (out_dir / ONNX_FILES["onnx-int8"]).unlink(missing_ok=True)  # never leave an int8 file from older weights

    report: dict[str, Any] = {
        "domainfit_version": __version__,
        "torch_version": _version("torch"),
        "onnx_version": onnx.__version__,
        "onnxruntime_version": ort.__version__,
        "opset": opset,
        "exporter": None,
        "fusion": None,
        "quantization": None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "weights_sha256": weights_fingerprint(path),
        **job.settings,
        "parity": job.parity_info,
        "models": {},
    }

    def parity_of(model_path: Path) -> dict[str, Any]:
        """Parity of an ONNX model against PyTorch fp32."""
        return job.parity(OnnxRunner(model_path, num_threads=None))

    # the process id in the name tells a later export whether this folder's writer is still running
    with tempfile.TemporaryDirectory(prefix=f"{_WORK_PREFIX}{os.getpid()}-", dir=out_dir) as work_dir:
        work = Path(work_dir)
        exported = work / "exported.onnx"
        report["exporter"] = _torch_export(job.model, job.sample, job.dynamic_axes, exported, opset)
        onnx.checker.check_model(str(exported))

        fp32 = exported
        fused = work / "fused.onnx"
        fusion = _fuse(job.model_type, job.model, exported, fused)
        if fusion["applied"]:
            fused_diff = _max_logit_diff(fused, job.model, job.sample)
            if fused_diff <= _FUSION_TOLERANCE:
                fp32 = fused
            else:
                fusion = {
                    "applied": False,
                    "reason": f"fused graph differs from PyTorch (max logit diff "
                    f"{fused_diff:.2e}); kept the plain export",
                }
        report["fusion"] = fusion
        move_atomic(fp32, out_dir / ONNX_FILES["onnx"])
        report["models"]["onnx"] = _model_entry(out_dir, "onnx", parity_of(out_dir / ONNX_FILES["onnx"]))

        if quantize:
            int8, report["quantization"], parity = _quantize(out_dir / ONNX_FILES["onnx"], work, parity_of)
            move_atomic(int8, out_dir / ONNX_FILES["onnx-int8"])
            report["models"]["onnx-int8"] = _model_entry(out_dir, "onnx-int8", parity)

    if job.bf16:
        # bf16 needs no file (the weights are cast at load) but "auto" needs to know it keeps the labels
        bf16 = job.parity(TorchRunner(copy.deepcopy(job.model).to(torch.bfloat16)))
        report["models"]["torch-bf16"] = {"file": None, "size_mb": None, **bf16}

    write_text_atomic(out_dir / EXPORT_REPORT, json.dumps(report, indent=2) + "\n")
    remove_stale_work_dirs(out_dir)
    _print_report(path, report)
    return report


def remove_stale_work_dirs(out_dir: Path) -> list[Path]:
    """Remove the ``.export-<pid>-*`` work folders of killed exports (their process is gone); return them.

    A folder without a process id (``.export-<random>``, from domainfit before 0.2) counts as stale too.
    """
    removed = []
    for entry in out_dir.glob(f"{_WORK_PREFIX}*"):
        match = re.match(rf"{re.escape(_WORK_PREFIX)}(\d+)-", entry.name)
        if entry.is_dir() and not (match and pid_is_alive(int(match[1]))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def import_export_extra() -> tuple[Any, Any]:
    """``onnx`` and ``onnxruntime``, or a MissingExtraError that names the extra to install."""
    try:
        import onnx
        import onnxruntime
        import onnxruntime.quantization  # noqa: F401
    except ImportError as e:
        raise MissingExtraError(
            f"ONNX export needs onnx and onnxruntime ({e})", fix='pip install "domainfit[export]"'
        ) from e
    return onnx, onnxruntime


def _torch_export(
    model: torch.nn.Module,
    sample: dict[str, np.ndarray],
    dynamic_axes: dict[str, dict[int, str]],
    out_path: Path,
    opset: int,
) -> str:
    """Write the logits graph to ``out_path``; return which exporter made it.

    The TorchScript exporter (``dynamo=False``) is tried first: for BERT-style encoders it is fast, gives
    the requested opset directly, and its graph matches ONNX Runtime's fusion patterns. The
    ``torch.export``-based exporter is the fallback for torch versions or models where it fails.
    """
    names = list(sample)
    args = tuple(torch.from_numpy(sample[name]) for name in names)
    wrapper = _LogitsOnly(model, names).eval()
    errors = []
    for dynamo in (False, True):
        try:
            with warnings.catch_warnings():
                # deprecation and tracer warnings are about the exporter, not the user's model
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    wrapper,
                    args,
                    str(out_path),
                    input_names=names,
                    output_names=["logits"],
                    dynamic_axes=dynamic_axes,
                    opset_version=opset,
                    dynamo=dynamo,
                )
            return "torch.onnx.export(dynamo=True)" if dynamo else "torch.onnx.export(dynamo=False)"
        except Exception as e:  # noqa: BLE001 - any failure: try the other exporter; report both if both fail
            errors.append(f"dynamo={dynamo}: {type(e).__name__}: {e}")
        finally:
            wrapper.eval()  # the exporter restores the wrapper's train mode, switching dropout on in `model`
    raise RuntimeError("both torch.onnx exporters failed:\n" + "\n".join(errors))


class _LogitsOnly(torch.nn.Module):
    """Wraps the model so the graph takes positional tensors and returns only the logits."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        # (batch, num_labels), or (batch, seq, num_labels) for token classification
        return self.model(**dict(zip(self.input_names, inputs))).logits


def _fuse(model_type: str | None, model: torch.nn.Module, in_path: Path, out_path: Path) -> dict[str, Any]:
    """Apply ONNX Runtime's transformer fusions; report what was fused (or why not)."""
    if model_type not in _FUSABLE_MODEL_TYPES:
        return {"applied": False, "reason": f"no fusion rules for model type {model_type!r}"}
    config = model.config
    from onnxruntime.transformers.optimizer import optimize_model

    num_heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", 0)
    hidden_size = getattr(config, "hidden_size", None) or getattr(config, "dim", 0)
    # opt_level=0: only the graph-pattern fusions, no hardware-specific rewrites baked into the file
    optimized = optimize_model(
        str(in_path), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0
    )
    fused = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
    if not fused:
        return {"applied": False, "reason": "no fusable patterns found"}
    optimized.save_model_to_file(str(out_path))
    return {"applied": True, "fused_ops": fused}


def _max_logit_diff(onnx_path: Path, model: torch.nn.Module, sample: dict[str, np.ndarray]) -> float:
    expected = TorchRunner(model, tuple(sample))(sample)
    return float(np.abs(expected - OnnxRunner(onnx_path, num_threads=None)(sample)).max())


def _quantize(
    fp32_path: Path, work: Path, parity_of: Callable[[Path], dict[str, Any]]
) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """Dynamic int8 quantisation (int8 weights, per output channel; activations quantised per call).

    Tries the recipes in ``_INT8_RECIPES`` in order and stops at the first whose labels agree with
    PyTorch on at least ``AUTO_MIN_AGREEMENT`` of the parity texts; otherwise keeps the one that
    agreed most. Returns (model path, quantisation report, parity of the kept model).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    shaped = work / "shapes.onnx"
    with _root_logging_untouched():
        # symbolic shape inference knows the fused contrib ops, which plain ONNX shape inference does not
        quant_pre_process(
            str(fp32_path), str(shaped), skip_optimization=True, auto_merge=True
        )  # auto_merge: adapter graphs
    tried, best = [], None
    for recipe, describe, choose_fp32_nodes in _INT8_RECIPES:
        keep_fp32 = choose_fp32_nodes(shaped)
        if keep_fp32 is None:
            continue
        out = work / f"int8-{recipe}.onnx"
        with _root_logging_untouched():
            quantize_dynamic(
                str(shaped), str(out), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep_fp32
            )
        parity = parity_of(out)
        tried.append(
            {
                "recipe": recipe,
                "label_agreement": parity["label_agreement"],
                "max_abs_prob_diff": parity["max_abs_prob_diff"],
            }
        )
        if best is None or parity["label_agreement"] > best[2]["label_agreement"]:
            chosen = {"recipe": recipe, "description": describe, "nodes_kept_fp32": len(keep_fp32)}
            best = (out, chosen, parity)
        if parity["label_agreement"] >= AUTO_MIN_AGREEMENT:
            break
    path, chosen, parity = best
    info = {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "QInt8",
        "per_channel": True,
        **chosen,
        "tried": tried,
    }
    return path, info, parity


def _no_nodes(model_path: Path) -> list[str]:
    """Keep nothing in fp32."""
    return []


def _down_projections(model_path: Path) -> list[str] | None:
    """Names of the MatMuls whose weight maps a wider input to a narrower output: in a transformer, the
    feed-forward output projections (4*hidden -> hidden). Their inputs carry the large activation outliers
    that per-call int8 scaling handles worst (Bondarenko et al., 2021, "Understanding and Overcoming the
    Challenges of Efficient Transformer Quantization"). None if the graph has none."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    names = []
    for node in graph.node:
        weight = shapes.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is not None and len(weight) == 2 and weight[0] > weight[1]:  # (in_features, out_features)
            names.append(node.name)
    return names or None


def _outer_layers(model_path: Path) -> list[str] | None:
    """Names of the matrix products in the first and the last transformer layer, found between the fused
    Attention nodes (ONNX lists nodes in execution order). The first layer sees the raw embeddings and
    the last one feeds the classifier: int8 rounding there moves the logits most. None if the graph has
    no fused attention or fewer than three layers."""
    import onnx

    nodes = onnx.load(str(model_path), load_external_data=False).graph.node
    starts = [i for i, node in enumerate(nodes) if node.op_type == "Attention"]
    if len(starts) < 3:
        return None
    return [
        node.name
        for i, node in enumerate(nodes)
        if node.op_type in ("MatMul", "Attention") and (i < starts[1] or i >= starts[-1])
    ]


def _convolutions(model_path: Path) -> list[str] | None:
    """Names of the convolutions. Dynamic int8 quantises activations per call, which suits matrix products
    over tokens but moves a CNN's feature maps far (EfficientNet-Lite0 kept the class of under half the
    parity images); kept in fp32, only the classifier's matrix product is int8. None if there are none."""
    import onnx

    nodes = onnx.load(str(model_path), load_external_data=False).graph.node
    return [node.name for node in nodes if node.op_type == "Conv"] or None


# (name, description, model path -> nodes to keep in fp32, or None to skip the recipe), fastest first
_INT8_RECIPES: tuple[tuple[str, str, Callable[[Path], list[str] | None]], ...] = (
    ("all-int8", "every MatMul, attention and embedding in int8", _no_nodes),
    ("ffn-output-fp32", "all int8 except the feed-forward output projections", _down_projections),
    ("outer-layers-fp32", "all int8 except the first and the last transformer layer", _outer_layers),
    ("convolutions-fp32", "all int8 except the convolutions", _convolutions),
)


@contextlib.contextmanager
def _root_logging_untouched() -> Iterator[None]:
    """onnxruntime.quantization logs through the root logger, which installs a stderr handler as a side
    effect; remove whatever it adds so the caller's logging setup stays as it was. Its warnings (shape
    inference of padding and index tensors it does not quantise anyway) are not the user's to act on."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)


def _model_entry(out_dir: Path, backend: str, parity: dict[str, Any]) -> dict[str, Any]:
    file = out_dir / ONNX_FILES[backend]
    return {"file": f"{ONNX_DIR}/{file.name}", "size_mb": round(file.stat().st_size / 2**20, 2), **parity}


def label_parity(reference: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """How often the arg-max label of each row (text, image, or token) is the same; rows (n, num_labels)."""
    return parity_entry(reference.argmax(axis=1) == probabilities.argmax(axis=1), reference, probabilities)


def parity_entry(agree: np.ndarray, reference: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """The report's parity fields from whether each compared item agreed, (n,) bool, and the probabilities."""
    return {
        "label_agreement": round(float(agree.mean()), 6),
        "disagreements": int((~agree).sum()),
        "max_abs_prob_diff": float(np.abs(reference - probabilities).max()),
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _print_report(model_dir: Path, report: dict[str, Any]) -> None:
    parity = report["parity"]
    print(
        f"Exported {model_dir / ONNX_DIR} (opset {report['opset']}, {report['exporter']}, "
        f"torch {report['torch_version']}, onnxruntime {report['onnxruntime_version']})"
    )
    what = "images" if "images" in parity else "texts"
    compared = f", {parity['compared']}" if "compared" in parity else ""
    print(f"Parity with PyTorch fp32 on {parity[what]} {parity['source']} {what}{compared}:")
    for backend, result in report["models"].items():
        file = f"{result['file'] or '(no file: cast at load)':<24}"
        size = f"{result['size_mb']:>6.1f} MB" if result["size_mb"] else " " * 9
        print(
            f"  {backend:<10} {file} {size}  label agreement {result['label_agreement']:.2%}  "
            f"max |prob diff| {result['max_abs_prob_diff']:.2e}"
        )


EXPORTERS.register("text-classification", export_onnx)
