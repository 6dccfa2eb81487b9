"""What a study ends with: the verdict against the default config, report.md, and the plots."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

from domainfit.io.atomic import write_atomic
from domainfit.tune.config import TuneConfig, yaml_value


def plot_study(study: Any, optuna: Any, cfg: TuneConfig, out: Path) -> tuple[dict[str, str], dict[str, float] | str]:
    """history.png and importance.png (fANOVA); the importances, or why there are none."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    def save(ax: Any, name: str) -> str:
        figure = ax.figure
        figure.set_size_inches(7, 4.5)
        figure.tight_layout()
        write_atomic(out / name, lambda p: figure.savefig(p, format="png", dpi=120))
        plt.close(figure)
        return name

    plots = {}
    importances: dict[str, float] | str
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        plots["history"] = save(plot_optimization_history(study, target_name=f"validation {cfg.metric}"), "history.png")
        evaluator = FanovaImportanceEvaluator(seed=cfg.sampler["seed"])
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        values = {t.value for t in complete}
        try:
            if len(values) < 2:  # fANOVA would still split the (zero) variance, and name a winner at random
                raise ValueError("fewer than two different scores among the completed trials")
            importances = dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
            plots["importance"] = save(
                plot_param_importances(study, evaluator=evaluator, target_name=f"validation {cfg.metric}"),
                "importance.png",
            )
        except (ValueError, RuntimeError) as e:  # fewer than two completed trials, or no parameter varied
            importances = f"not computed: {e}"
            (out / "importance.png").unlink(missing_ok=True)
    return plots, importances


def format_verdict(summary: dict[str, Any]) -> str:
    """One honest sentence: did the best trial beat the default config's validation score?"""
    metric, best, default = summary["metric"], summary["best"], summary["default"]
    if not default or default["state"] != "complete":
        state = default["state"] if default else "missing"
        return (
            f"The default config (trial 0) did not complete ({state}), so the best trial "
            f"(#{best['number']}, validation {metric} {best['value']:.4f}) has no baseline."
        )
    if best["number"] == 0 or best["value"] == default["value"]:
        return (
            f"No trial beat the default config: its validation {metric} {default['value']:.4f} (trial 0) "
            "is the best of the study."
        )
    gain = best["value"] - default["value"]
    return (
        f"The best trial (#{best['number']}) beat the default config on validation {metric}: "
        f"{best['value']:.4f} vs {default['value']:.4f} ({gain:+.4f}). Validation chose it, so its "
        "validation score flatters it; the retrained best's test score is the one to quote."
    )


def format_tune_report(summary: dict[str, Any]) -> str:
    """report.md of a study: verdict, retrained best, importances, every trial."""
    metric = summary["metric"]
    trials = summary["trials"]
    counts = {s: sum(t["state"] == s for t in trials) for s in ("complete", "pruned", "fail", "running")}
    lines = [
        "# Hyperparameter search",
        "",
        f"Run config `{summary['config']}` (overrides: {summary['overrides'] or 'none'}); {len(trials)} "
        f"trials: {counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed. "
        f"Objective: validation `{metric}` ({'higher' if summary['direction'] == 'max' else 'lower'} is "
        f"better) of the checkpoint each run selects. Sampler {summary['sampler']}, pruner "
        f"{summary['pruner']}.",
        "",
        format_verdict(summary),
        "",
        "## Search space",
        "",
    ]
    lines += [f"- `{k}`: {v}" for k, v in summary["space"].items()]
    lines += [
        "",
        "## Best config",
        "",
        f"Trial {summary['best']['number']}: "
        + ", ".join(f"`{k}={yaml_value(v)}`" for k, v in summary["best"]["params"].items())
        + ". Full resolved run config: `best.yaml`.",
        "",
    ]
    retrained = summary["retrained"]
    if retrained:
        lines += ["| retrained best (`best/`) | validation | test |", "|---|---:|---:|"]
        for name in dict.fromkeys(("accuracy", "f1_macro", metric)):
            if name in (retrained.get("validation") or {}):
                cells = [
                    f"{(retrained.get(split) or {}).get(name, float('nan')):.4f}" for split in ("validation", "test")
                ]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    else:
        lines.append("Not retrained (`--no-retrain`): no test score.")
    lines += ["", "## Parameter importances (fANOVA)", ""]
    importances = summary["importances"]
    if isinstance(importances, dict):
        lines += [f"- `{k}`: {v:.3f}" for k, v in importances.items()]
        lines += ["", "![importances](importance.png)"]
    else:
        lines.append(importances)
    lines += [
        "",
        "## Trials",
        "",
        "![history](history.png)",
        "",
        f"| trial | state | validation {metric} | evaluations | parameters |",
        "|---:|---|---:|---:|---|",
    ]
    for t in trials:
        value = f"{t['value']:.4f}" if t["value"] is not None else "-"
        params = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in t["params"].items())
        label = " (default)" if t["number"] == 0 else ""
        lines.append(f"| {t['number']}{label} | {t['state']} | {value} | {t['evaluations']} | {params} |")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
