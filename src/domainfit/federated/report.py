"""report.md of a federated run: the sites, the round table (global and per-site scores), the traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from domainfit.config import RunConfig
from domainfit.config.federate import STRATEGY_KEYS, FederateConfig
from domainfit.io.atomic import write_text_atomic

# the columns of the round table, in this order, when the task reports them
ROUND_METRICS = ("accuracy", "f1_macro", "loss")


def strategy_settings(fed: FederateConfig) -> str:
    """The settings the chosen strategy reads, e.g. `` (server momentum 0.9, server learning rate 0.01)``."""
    values = {key: getattr(fed, key) for key in STRATEGY_KEYS} | {"server_learning_rate": fed.server_step_size}
    shown = [
        f"{key.replace('proximal_', '').replace('_', ' ')} {values[key]}"
        for key, readers in STRATEGY_KEYS.items()
        if fed.strategy in readers
    ]
    return f" ({', '.join(shown)})" if shown else ""


def _megabytes(n: float) -> str:
    return f"{n / 1e6:.3f} MB"


def _kept_sentence(kept: dict[str, Any]) -> str:
    if kept["by"] == "last round":
        why = f" ({kept['why']})" if kept.get("why") else ""
        return f"Kept: the model after the last round, round {kept['kept_round']}{why}."
    return (
        f"Kept: the model of round **{kept['kept_round']}**, the best {kept['by']}: {kept['value']:.4f}. "
        "The held-out scores never choose, as `domainfit train` keeps its best epoch on validation."
    )


def write_report(path: Path, fed: FederateConfig, cfg: RunConfig, results: dict[str, Any]) -> None:
    """Write ``report.md`` from metrics.json's dict ``results``."""
    rounds = sorted(results["global"], key=int)
    shown = [m for m in ROUND_METRICS if any(m in results["global"][r] for r in rounds)]
    names = list(results["sites"])
    main = shown[0] if shown else None
    validation = results.get("global_validation", {})
    kept = results.get("selection", {"kept_round": int(rounds[-1]) if rounds else 0, "by": "last round"})
    chooser = cfg.train.best_metric
    lines = [
        f"# domainfit federate: {Path(fed.output_dir).name}",
        "",
        f"- strategy: **{fed.strategy}**" + strategy_settings(fed),
        f"- rounds: {fed.rounds}, local epochs: {fed.local_epochs}, share of sites per round: {fed.fraction_fit}",
        f"- model: {cfg.model.name}, peft: {cfg.peft.method}, task: {cfg.task}"
        + (f", precision: {results['precision']}" if results.get("precision") else ""),
        "",
        "## Sites",
        "",
        "| site | file | training examples | scored on |",
        "|---|---|---|---|",
    ]
    for name, site in results["sites"].items():
        lines.append(
            f"| {name} | {site['file']} | {site['train_examples']} | {site['held_out']} ({site['held_out_examples']}) |"
        )
    lines += [
        "",
        "## Rounds",
        "",
        (
            "Global: the sites' scores of the global model, averaged weighted by their held-out examples "
            "(a deployed server holds no data). "
            if results.get("global_score") == "sites_weighted_mean"
            else "Global: the global model on every site's held-out split pooled (round 0: before training). "
        )
        + f"Per site: the global model's {main} on that site's held-out split after the round.",
        "",
    ]
    header = [
        "round",
        *[f"global {m}" for m in shown],
        *([f"validation {chooser}"] if validation else []),
        *[f"{n} {main}" for n in names],
        "sites trained",
        "bytes sent",
    ]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rounds:
        glob = results["global"][r]
        per_site = results["sites_eval"].get(r, {})
        trained = results["sites_train"].get(r, {})
        traffic = results["traffic"].get(r)
        row = [
            r,
            *[f"{glob[m]:.4f}" if m in glob else "" for m in shown],
            *([f"{validation[r][chooser]:.4f}" if chooser in validation.get(r, {}) else ""] if validation else []),
            *[f"{per_site[n][main]:.4f}" if n in per_site and main in per_site[n] else "" for n in names],
            ", ".join(sorted(trained)) or "-",
            _megabytes(traffic["sent"]) if traffic else "-",
        ]
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    lines += ["", _kept_sentence(kept)]
    ex = results["exchanged"]
    sent = sum(t["sent"] for t in results["traffic"].values())
    full = sum(t["full_weights"] for t in results["traffic"].values())
    lines += [
        "",
        "## Traffic",
        "",
        f"Exchanged each message: {ex['tensors']} tensors, {_megabytes(ex['bytes_per_message'])} "
        f"({ex['share_percent']}% of the full weights, {_megabytes(ex['full_weights_bytes_per_message'])}; "
        f"peft: {ex['peft']}"
        + ("; LoRA A matrices frozen, only B and the head travel (FFA-LoRA)" if ex.get("lora_a_frozen") else "")
        + ").",
        f"All rounds, both ways: {_megabytes(sent)} sent; full weights would have been {_megabytes(full)}.",
    ]
    epsilons = {
        r: {n: m["epsilon"] for n, m in per.items() if "epsilon" in m} for r, per in results["sites_train"].items()
    }
    if results.get("dp"):
        dp = results["dp"]
        lines += [
            "",
            "## Differential privacy",
            "",
            f"DP-SGD at every site (Opacus): noise multiplier {dp['noise_multiplier']}, per-example clipping "
            f"{dp['max_grad_norm']}; epsilon spent at delta {dp['delta']} "
            "after the last round it trained in:",
            "",
        ]
        last: dict[str, float] = {}
        for r in sorted(epsilons, key=int):
            last.update(epsilons[r])
        lines += [f"- {name}: epsilon {eps:.3f}" for name, eps in sorted(last.items())]
    write_text_atomic(path, "\n".join(lines) + "\n")
