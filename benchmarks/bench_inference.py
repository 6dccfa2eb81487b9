"""Inference speed and accuracy: transformers.pipeline vs the domainfit Predictor backends, on one CPU.

    .venv/bin/python benchmarks/bench_inference.py --model-dir runs/phrasebank-minilm/model \\
        --data ../shared/datasets/financial_phrasebank/split_seed42/test.csv

For each engine it measures, on the labelled file: throughput over the whole file (sentences/s, median of
``--repeats`` runs after a warm-up run), accuracy against the file's labels, and the latency of one
sentence per call (p50/p95 over ``--latency-calls`` calls cycling through the file, after a warm-up).
The engines take turns, so a change of load on the machine during the run hits them all alike.
Baselines are ``transformers.pipeline("text-classification", model=DIR)`` with its default settings
(one text at a time) and with ``batch_size=32``. A folder that was not exported yet (or was retrained
since) is exported first, with the file's texts as parity texts. Prints a Markdown table and the
machine; ``--json`` also saves the numbers.

Timings on a shared machine are noisy: the report says how many cores other processes kept busy during
the run, so a reader can tell a quiet run from a busy one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from domainfit.serving import load
from domainfit.serving.backends import DEFAULT_BATCH_SIZE, resolve_backend
from domainfit.serving.model_folder import ONNX_DIR, export_is_current, read_export_report, read_settings
from domainfit.serving.runners import physical_cores

PREDICTOR_BACKENDS = ("torch", "torch-bf16", "onnx", "onnx-int8", "torch-bf16+onnx")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, help="trained model folder")
    parser.add_argument("--data", type=Path, help="labelled CSV (text and label columns)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument(
        "--threads", type=int, default=physical_cores(), help="CPU threads (default: all physical cores)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="Predictor batch size (default: the backend's own, 32 ONNX / 64 torch)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the file (the median is reported)")
    parser.add_argument("--latency-calls", type=int, default=200, help="timed single-sentence calls")
    parser.add_argument("--warmup-calls", type=int, default=20, help="untimed single-sentence calls first")
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["pipeline", "pipeline-bs32", *PREDICTOR_BACKENDS],
        choices=["pipeline", "pipeline-bs32", *PREDICTOR_BACKENDS],
    )
    parser.add_argument(
        "--parity-data",
        type=Path,
        help="CSV whose texts the export's parity check uses if the folder must be exported "
        "first (default: --data's texts; a validation file keeps test texts out of it)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--report", type=Path, help="measure nothing: print the tables of a --json file again")
    args = parser.parse_args(argv)
    if args.report:
        print_report(json.loads(args.report.read_text(encoding="utf-8")))
        return 0
    if args.model_dir is None or args.data is None:
        parser.error("--model-dir and --data are required (unless --report)")
    if args.repeats < 3 or args.latency_calls < 200:
        print("note: fewer than 3 repeats or 200 latency calls: figures are rough", file=sys.stderr)

    texts, gold = read_labelled_csv(args.data, args.text_column, args.label_column)
    parity_texts = (
        read_labelled_csv(args.parity_data, args.text_column, args.label_column)[0] if args.parity_data else texts
    )
    export_if_needed(args.model_dir, parity_texts)
    others = OtherProcessesMeter()

    import torch

    torch.set_num_threads(args.threads)
    engines = [create_engine(name, args, texts) for name in args.engines]
    results = measure(engines, texts, gold, args)

    machine = machine_info(args.threads, others.cores_used())
    report = {
        "model_dir": str(args.model_dir),
        "data": str(args.data),
        "sentences": len(texts),
        "auto_backend": resolve_backend(args.model_dir.expanduser(), "auto"),
        "machine": machine,
        "results": results,
        "export": read_export_report(args.model_dir.expanduser()),
    }
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def read_labelled_csv(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or text_column not in rows[0] or label_column not in rows[0]:
        sys.exit(f"{path}: expected columns {text_column!r} and {label_column!r}")
    return [r[text_column] for r in rows], [r[label_column] for r in rows]


def export_if_needed(model_dir: Path, texts: list[str]) -> None:
    report = read_export_report(model_dir)
    complete = report is not None and {"onnx", "onnx-int8", "torch-bf16"} <= set(report["models"])
    if complete and export_is_current(model_dir, report):
        return
    from domainfit.export import export_onnx

    print(f"{model_dir / ONNX_DIR} is missing or stale: exporting first", file=sys.stderr)
    export_onnx(model_dir, parity_texts=texts)


@dataclass
class Engine:
    """One way of classifying the file: a full pass, and one sentence per call."""

    name: str
    batch: int
    predict_all: Callable[[], list[str]]  # labels for every text of the file, in order
    predict_one: Callable[[str], object]


def create_engine(name: str, args: argparse.Namespace, texts: list[str]) -> Engine:
    if name.startswith("pipeline"):
        from transformers import pipeline

        pipe = pipeline("text-classification", model=str(args.model_dir), device="cpu")
        # the pipeline does not know the folder's text_prefix: add it, or its accuracy would be unfair
        prefix = read_settings(args.model_dir.expanduser(), pipe.tokenizer.model_max_length).text_prefix
        inputs = [prefix + t for t in texts]
        kwargs = {"batch_size": 32} if name == "pipeline-bs32" else {}
        return Engine(
            name,
            kwargs.get("batch_size", 1),
            lambda: [r["label"] for r in pipe(inputs, **kwargs)],
            lambda text: pipe(prefix + text),
        )
    predictor = load(args.model_dir, backend=name, num_threads=args.threads)
    return Engine(
        name,
        args.batch_size or DEFAULT_BATCH_SIZE[name],
        lambda: [r["label"] for r in predictor.predict(texts, batch_size=args.batch_size)],
        lambda text: predictor.predict([text]),
    )


def measure(engines: list[Engine], texts: list[str], gold: list[str], args: argparse.Namespace) -> list[dict]:
    """Accuracy, throughput and single-sentence latency of each engine.

    The engines take turns (every repeat and every block of latency calls goes round all of them), so
    a change in the machine's load during the run hits all engines alike instead of the last one.
    """
    accuracies, rates = {}, {e.name: [] for e in engines}
    times = {e.name: [] for e in engines}
    for engine in engines:  # warm-up, and the accuracy
        print(f"warming up {engine.name} ...", file=sys.stderr, flush=True)
        accuracies[engine.name] = accuracy(engine.predict_all(), gold)
        for i in range(args.warmup_calls):
            engine.predict_one(texts[i % len(texts)])
    for repeat in range(args.repeats):
        print(f"throughput pass {repeat + 1}/{args.repeats} ...", file=sys.stderr, flush=True)
        for engine in engines:
            start = time.perf_counter()
            engine.predict_all()
            rates[engine.name].append(len(texts) / (time.perf_counter() - start))
    blocks = 4
    print(f"{args.latency_calls} single-sentence calls each ...", file=sys.stderr, flush=True)
    for block in range(blocks):
        calls = range(block * args.latency_calls // blocks, (block + 1) * args.latency_calls // blocks)
        for engine in engines:
            for i in calls:
                text = texts[i % len(texts)]
                start = time.perf_counter()
                engine.predict_one(text)
                times[engine.name].append((time.perf_counter() - start) * 1000)
    return [
        {
            "engine": e.name,
            "batch": e.batch,
            "sentences_per_s": statistics.median(rates[e.name]),
            "accuracy": accuracies[e.name],
            "p50_ms": float(np.percentile(times[e.name], 50)),
            "p95_ms": float(np.percentile(times[e.name], 95)),
        }
        for e in engines
    ]


def accuracy(predictions: list[str], gold: list[str]) -> float:
    return sum(p == g for p, g in zip(predictions, gold)) / len(gold)


class OtherProcessesMeter:
    """How many cores other processes kept busy since this was created: machine-wide busy CPU time
    (/proc/stat) minus this process's own (all threads). Linux only; None elsewhere."""

    def __init__(self) -> None:
        self._start = (time.perf_counter(), self._busy_seconds(), self._own_seconds())

    @staticmethod
    def _busy_seconds() -> float | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def cores_used(self) -> float | None:
        wall0, busy0, own0 = self._start
        busy1 = self._busy_seconds()
        if busy0 is None or busy1 is None:
            return None
        others = (busy1 - busy0) - (self._own_seconds() - own0)
        return max(0.0, others / (time.perf_counter() - wall0))


def machine_info(threads: int, others_cores: float | None) -> dict:
    import onnxruntime
    import torch
    import transformers

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "other_processes_cores": None if others_cores is None else round(others_cores, 2),
    }


def print_report(report: dict) -> None:
    results = {r["engine"]: r for r in report["results"]}
    base = results.get("pipeline")
    names = {
        "pipeline": "transformers pipeline (default)",
        "pipeline-bs32": "transformers pipeline, batch_size=32",
        "torch": "domainfit torch fp32",
        "torch-bf16": "domainfit torch bf16",
        "onnx": "domainfit onnx fp32",
        "onnx-int8": "domainfit onnx int8",
        "torch-bf16+onnx": "domainfit torch bf16 batches + onnx fp32 single",
    }
    print(f"\n{report['sentences']} sentences from {report['data']}; model {report['model_dir']}\n")
    print("| engine | batch | sentences/s | × pipeline | accuracy | p50 ms (1 sentence) | p95 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for engine, r in results.items():
        ratio = f"{r['sentences_per_s'] / base['sentences_per_s']:.1f}×" if base else "-"
        print(
            f"| {names[engine]} | {r['batch']} | {r['sentences_per_s']:.1f} | {ratio} "
            f"| {r['accuracy']:.2%} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} |"
        )
    m = report["machine"]
    print(
        f"\nMachine: {m['cpu']}, {m['physical_cores']} physical / {m['logical_cores']} logical cores, "
        f"{m['threads']} threads; Python {m['python']}, torch {m['torch']}, "
        f"transformers {m['transformers']}, "
        f"onnxruntime {m['onnxruntime']}."
    )
    others = m["other_processes_cores"]
    if others is not None:
        print(f"Other processes kept {others:.2f} of the {m['logical_cores']} cores busy during the measurements.")
    if others is not None and others > 0.25:
        print(
            "WARNING: the machine was not quiet. With every core given to inference threads, figures "
            "for the multi-threaded engines (torch above all) are pessimistic and noisy: re-run when "
            "the machine is quiet, or compare at --threads 1."
        )
    print(f"backend='auto' picks: {report['auto_backend']}")
    export = report["export"] or {}
    for backend, parity in export.get("models", {}).items():
        print(
            f"export parity {backend}: label agreement {parity['label_agreement']:.2%} with torch fp32 on "
            f"{export['parity']['texts']} texts, max |prob diff| {parity['max_abs_prob_diff']:.2e}"
        )
    if base and "torch" in results:
        print("\nTargets (>= 4× pipeline sentences/s, accuracy within 0.5 point of torch fp32, p50 <= 5ms):")
        for engine in PREDICTOR_BACKENDS:
            if engine in results:
                r = results[engine]
                speed = r["sentences_per_s"] / base["sentences_per_s"] >= 4
                acc = abs(r["accuracy"] - results["torch"]["accuracy"]) <= 0.005
                lat = r["p50_ms"] <= 5
                print(
                    f"  {engine:<15} speed {'yes' if speed else 'NO'}, accuracy {'yes' if acc else 'NO'}, "
                    f"latency {'yes' if lat else 'NO'}"
                )


if __name__ == "__main__":
    sys.exit(main())
