"""One config that chains pretrain -> fine-tune -> evaluate, with an automatic no-pretraining baseline.

    domainfit pipeline src/domainfit/configs/pipeline_phrasebank.yaml

A pipeline names one fine-tuning config, any number of pretraining stages (each a ``domainfit pretrain``
config plus overrides), and variants: a variant fine-tunes from a stage's model (or from the base model) with
its own overrides (e.g. ``joint.enabled=true``), once per seed. The ``baseline`` variant (the same fine-tune,
no pretraining, no overrides) is added unless switched off, so every report shows what pretraining bought.

Each stage and each (variant, seed) run is an ordinary run folder under ``output_dir``; finished ones are
skipped and interrupted ones resume, so a killed pipeline is continued by running the same command again.
``pipeline.json`` records the lineage of every fine-tuned model (which corpus, which pretrained checkpoint)
and ``report.md`` compares variants as mean +- std over seeds.
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domainfit.config.fields import SEED_MAX
from domainfit.config.yaml_files import read_workflow_file
from domainfit.errors import ConfigError, short_repr
from domainfit.io.atomic import write_text_atomic
from domainfit.io.run_folder import contained
from domainfit.training.run_dir import read_status

log = logging.getLogger(__name__)

REPORT_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro")


@dataclass
class Stage:
    """A pretraining stage: a ``domainfit pretrain`` config and overrides."""

    name: str
    config: str
    overrides: list[str] = field(default_factory=list)


@dataclass
class Variant:
    """A fine-tune: from a stage's model (or the base model when ``pretrain`` is None), with overrides."""

    name: str
    pretrain: str | None = None
    overrides: list[str] = field(default_factory=list)


@dataclass
class PipelineConfig:
    finetune: str
    output_dir: str
    finetune_overrides: list[str] = field(default_factory=list)
    stages: dict[str, Stage] = field(default_factory=dict)
    variants: dict[str, Variant] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [42])
    source: Path | None = None


_TOP_KEYS = {"finetune", "finetune_overrides", "pretrain", "variants", "seeds", "baseline", "output_dir"}
# stage and variant names become folder names under output_dir: nothing that could climb out of it
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _check_name(name: Any, path: Path, key: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"the name {str(name)[:80]!r} cannot be used: it becomes a folder name under output_dir",
            path=path,
            key=key,
            fix="use letters, digits, '-', '_' and '.' (no '/', no '..'), at most 64 characters.",
        )


def load_pipeline_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read and check a pipeline YAML; config paths inside are resolved against the pipeline file's folder.

    ``overrides`` (``key=value``) set top-level scalars such as ``output_dir`` or ``seeds=[42,43]``.
    """
    path = Path(path)
    raw = read_workflow_file(path, overrides, _TOP_KEYS, kind="pipeline")
    base = path.parent

    def resolve(value: str, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigError("expected a path to a YAML config", path=path, key=key)
        p = Path(value)
        try:
            if not p.is_absolute() and not p.exists() and (base / p).exists():
                p = Path(os.path.relpath((base / p).resolve()))  # tidy: no "a/../../b" in reports
            found = p.is_file()
        except (OSError, ValueError):  # a name the OS cannot look up (too long, a NUL byte)
            found = False
        if not found:
            raise ConfigError(
                f"config file {short_repr(value)} not found",
                path=path,
                key=key,
                fix="give a path relative to the current folder or to this pipeline file.",
            )
        return str(p)

    def str_list(value: Any, key: str) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
            raise ConfigError(
                "expected a list of 'dotted.key=value' strings",
                path=path,
                key=key,
                fix="e.g. ['train.epochs=3', 'joint.enabled=true']",
            )
        return list(value)

    if "finetune" not in raw:
        raise ConfigError("no fine-tuning config given", path=path, key="finetune", fix="finetune: path/to/train.yaml")
    if "output_dir" not in raw:
        raise ConfigError("no output folder given", path=path, key="output_dir", fix="output_dir: runs/my-pipeline")
    cfg = PipelineConfig(
        finetune=resolve(raw["finetune"], "finetune"),
        output_dir=str(raw["output_dir"]),
        finetune_overrides=str_list(raw.get("finetune_overrides"), "finetune_overrides"),
        source=path,
    )
    for section, example in (("pretrain", "{dapt: {config: pretrain.yaml}}"), ("variants", "{dapt: {pretrain: dapt}}")):
        if not isinstance(raw.get(section) or {}, dict):
            raise ConfigError(
                f"expected a mapping of named entries, found {short_repr(raw[section])}",
                path=path,
                key=section,
                fix=f"e.g. {section}: {example} (see docs/pretraining.md).",
            )
    for name, stage in (raw.get("pretrain") or {}).items():
        key = f"pretrain.{name}"
        _check_name(name, path, key)
        if not isinstance(stage, dict) or set(stage) - {"config", "overrides"}:
            raise ConfigError("expected {config: pretrain.yaml, overrides: [...]}", path=path, key=key)
        cfg.stages[name] = Stage(
            name, resolve(stage.get("config"), f"{key}.config"), str_list(stage.get("overrides"), f"{key}.overrides")
        )
    if raw.get("baseline", True):
        cfg.variants["baseline"] = Variant("baseline")
    for name, variant in (raw.get("variants") or {}).items():
        key = f"variants.{name}"
        _check_name(name, path, key)
        variant = variant or {}
        if not isinstance(variant, dict) or set(variant) - {"pretrain", "overrides"}:
            raise ConfigError("expected {pretrain: STAGE or null, overrides: [...]}", path=path, key=key)
        stage = variant.get("pretrain")
        if stage is not None and (not isinstance(stage, str) or stage not in cfg.stages):
            raise ConfigError(
                f"unknown pretraining stage {short_repr(stage)}",
                path=path,
                key=f"{key}.pretrain",
                fix=f"use one of: {', '.join(cfg.stages) or '(none defined under pretrain:)'}, or null.",
            )
        if name in cfg.variants:
            raise ConfigError(
                f"variant {name!r} is defined twice ('baseline' is added automatically)",
                path=path,
                key=key,
                fix="rename it, or set baseline: false.",
            )
        cfg.variants[name] = Variant(name, stage, str_list(variant.get("overrides"), f"{key}.overrides"))
    seeds = raw.get("seeds", [42])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= SEED_MAX for s in seeds)
    ):
        raise ConfigError(
            f"expected a non-empty list of integer seeds from 0 to {SEED_MAX}, found {short_repr(seeds)}",
            path=path,
            key="seeds",
            fix="seeds: [42, 43, 44]",
        )
    cfg.seeds = seeds
    if not cfg.variants:
        raise ConfigError("nothing to run: no variants and baseline: false", path=path, key="variants")
    # Check every config now (strict keys, overrides), before hours of pretraining.
    from domainfit.config import load_pretrain_config
    from domainfit.tasks import load_run_config as load_config

    for stage in cfg.stages.values():
        load_pretrain_config(stage.config, stage.overrides)
    for variant in cfg.variants.values():
        load_config(cfg.finetune, cfg.finetune_overrides + variant.overrides)
    return cfg


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run (or continue) every stage and every (variant, seed) fine-tune; write pipeline.json and report.md."""
    from domainfit.config import load_config, load_pretrain_config
    from domainfit.training.loop import train
    from domainfit.training.pretrain import pretrain

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages: dict[str, dict[str, Any]] = {}
    for stage in cfg.stages.values():
        if not any(v.pretrain == stage.name for v in cfg.variants.values()):
            continue
        run_dir = out / "pretrain" / stage.name
        pcfg = load_pretrain_config(stage.config, stage.overrides + [f"output.dir={run_dir}"])
        if not _finished(run_dir):
            log.info("pipeline: pretraining stage %s -> %s", stage.name, run_dir)
            pretrain(pcfg, resume=_started(run_dir))
        metrics = json.loads(contained(out, run_dir.relative_to(out), "metrics.json").read_text(encoding="utf-8"))
        stages[stage.name] = {
            "config": stage.config,
            "overrides": stage.overrides,
            "model": str(run_dir / "model"),
            "lineage": _read_json(run_dir / "model" / "domainfit.json"),
            "perplexity": {k: metrics.get(k) for k in ("before", "after") if k in metrics},
        }
    runs: list[dict[str, Any]] = []
    for variant in cfg.variants.values():
        for seed in cfg.seeds:
            run_dir = out / variant.name / f"seed{seed}"
            overrides = cfg.finetune_overrides + variant.overrides + [f"train.seed={seed}", f"output.dir={run_dir}"]
            if variant.pretrain is not None:
                overrides.append(f"model.name={stages[variant.pretrain]['model']}")
            rcfg = load_config(cfg.finetune, overrides)
            if not _finished(run_dir):
                log.info("pipeline: fine-tune %s seed %d -> %s", variant.name, seed, run_dir)
                train(rcfg, resume=_started(run_dir))
            metrics = json.loads(contained(out, run_dir.relative_to(out), "metrics.json").read_text(encoding="utf-8"))
            runs.append(
                {
                    "variant": variant.name,
                    "seed": seed,
                    "dir": str(run_dir),
                    "model": rcfg.model.name,
                    "pretrain": variant.pretrain,
                    "overrides": variant.overrides,
                    "test": _numbers(metrics.get("test") or metrics.get("validation") or {}),
                }
            )
    summary = summarise(runs)
    result = {
        "finetune": cfg.finetune,
        "finetune_overrides": cfg.finetune_overrides,
        "seeds": cfg.seeds,
        "stages": stages,
        "runs": runs,
        "summary": summary,
    }
    write_text_atomic(out / "pipeline.json", json.dumps(result, indent=1, ensure_ascii=False))
    write_text_atomic(out / "report.md", format_pipeline_report(result))
    print(format_summary_table(summary))
    return result


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean, sample std and n per variant and metric (test split), in the order variants first appear."""
    summary: dict[str, dict[str, Any]] = {}
    for run in runs:
        entry = summary.setdefault(run["variant"], {"n": 0, "values": {}})
        entry["n"] += 1
        for name, value in run["test"].items():
            entry["values"].setdefault(name, []).append(value)
    for entry in summary.values():
        values = entry.pop("values")
        entry["mean"] = {k: statistics.fmean(v) for k, v in values.items()}
        entry["std"] = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in values.items()}
    return summary


def format_summary_table(summary: dict[str, dict[str, Any]]) -> str:
    metrics = [m for m in REPORT_METRICS if any(m in e["mean"] for e in summary.values())]
    base = summary.get("baseline")
    lines = [
        "| variant | seeds | "
        + " | ".join(f"test {m}" for m in metrics)
        + (" | macro-F1 vs baseline |" if base else " |"),
        "|---|---:|" + "---:|" * len(metrics) + ("---:|" if base else ""),
    ]
    for name, e in summary.items():
        cells = [f"{e['mean'][m]:.4f} +- {e['std'][m]:.4f}" if m in e["mean"] else "-" for m in metrics]
        if base and "f1_macro" in e["mean"] and "f1_macro" in base["mean"]:
            cells.append(f"{100 * (e['mean']['f1_macro'] - base['mean']['f1_macro']):+.2f} pt")
        elif base:
            cells.append("-")
        lines.append(f"| {name} | {e['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_pipeline_report(result: dict[str, Any]) -> str:
    lines = [
        "# Pipeline report",
        "",
        f"Fine-tuning config: `{result['finetune']}` (overrides: {result['finetune_overrides'] or 'none'}); "
        f"seeds {result['seeds']}. Test split; mean +- sample standard deviation over seeds.",
        "",
        format_summary_table(result["summary"]),
        "",
    ]
    if result["stages"]:
        lines += [
            "## Pretraining stages",
            "",
            "| stage | held-out perplexity before | after | corpus |",
            "|---|---:|---:|---|",
        ]
        for name, s in result["stages"].items():
            ppl = s["perplexity"]
            corpus = ", ".join(
                f"`{c.get('path', c)}`" if isinstance(c, dict) else f"`{c}`"
                for c in (s["lineage"].get("lineage", {}).get("corpus") or s["lineage"].get("corpus") or [])
            )
            lines.append(f"| {name} | {_ppl(ppl.get('before'))} | {_ppl(ppl.get('after'))} | {corpus or '-'} |")
        lines.append("")
    lines += ["## Lineage", "", "| variant | seed | started from | run folder |", "|---|---:|---|---|"]
    for run in result["runs"]:
        origin = (
            f"pretraining stage `{run['pretrain']}`: `{run['model']}`"
            if run["pretrain"]
            else f"`{run['model']}` (no pretraining)"
        )
        lines.append(f"| {run['variant']} | {run['seed']} | {origin} | `{run['dir']}` |")
    return "\n".join(lines) + "\n"


def _ppl(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("perplexity")
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _finished(run_dir: Path) -> bool:
    status = read_status(run_dir)
    return bool(status and status.get("status") == "finished" and (run_dir / "metrics.json").is_file())


def _started(run_dir: Path) -> bool:
    """An unfinished run is continued (``resume``; from step 0 if it died before its first checkpoint)."""
    return read_status(run_dir) is not None


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
