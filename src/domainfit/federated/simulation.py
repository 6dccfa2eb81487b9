"""``domainfit federate``: N sites simulated on one machine, rounds driven by Flower's own strategy loop.

    domainfit federate federate.yaml [--resume] [key=value ...]

Every site's file is read, checked and split as ``domainfit train`` would (all of them before the model is
loaded, so a bad file fails at once); the label list is ``labels:``, else the union over sites, so class ids
agree everywhere.
One model is built from the run config; an in-process Flower grid delivers each message to its site in turn,
so a site's handlers are exactly those a deployed SuperNode runs (``federated/apps.py``). Each round the
server sends the global trained weights (LoRA matrices and head under ``peft.method: lora``), the chosen sites
train ``local_epochs`` and reply, the Flower strategy combines the replies weighted by examples, every
site scores the new global model on its held-out split, and the server scores it on all of them pooled.

The run folder holds the global model (``model/``, a normal model folder), ``metrics.json`` (per round: per
site and global metrics, bytes sent against full weights, epsilon under DP), ``report.md`` with the round
table, ``tensorboard/``, and the configs (``federate.yaml``, ``config.yaml``). While it runs, ``checkpoints/``
holds the last round's state, from which ``--resume`` continues a stopped federation (``federated/rounds.py``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from domainfit.config import RunConfig, to_dict
from domainfit.config.federate import FederateConfig
from domainfit.data.labels import sort_labels
from domainfit.errors import ConfigError
from domainfit.federated.apps import RoundLog, create_strategy, numeric
from domainfit.federated.exchange import (
    freeze_lora_a,
    from_record,
    full_weights_bytes,
    import_flower,
    load_trained_state,
    to_record,
    trained_state,
)
from domainfit.federated.report import ROUND_METRICS, write_report
from domainfit.federated.rounds import RoundCheckpoints, run_rounds
from domainfit.federated.selection import RoundSelection
from domainfit.federated.site import Site, autocast, pooled_features, site_config, use_federation_labels
from domainfit.io.atomic import atomic_dir, write_text_atomic
from domainfit.models.loading import check_max_length
from domainfit.objectives.fedprox import ProximalObjective
from domainfit.tasks import Task, TaskData, create_task, load_run_config
from domainfit.training.loop import evaluate
from domainfit.training.precision import precision_label, resolve_precision
from domainfit.training.run_dir import (
    changed_settings,
    check_resume_config,
    finish_run,
    open_run_folder,
    start_run,
)
from domainfit.training.scaffold import set_up_process

log = logging.getLogger(__name__)


def load_federated_run_config(fed: FederateConfig, source: Path) -> RunConfig:
    """The run config every site trains with, checked against its task; writes go to ``fed.output_dir``."""
    first_site = next(iter(fed.sites.values()))
    # data.train is each site's own file; the first stands in so the run config's own checks can run
    cfg = load_run_config(fed.run_config, [*fed.run_overrides, f"data.train={json.dumps(first_site)}"])
    cfg.output.dir, cfg.output.overwrite = fed.output_dir, fed.overwrite
    check_freeze_lora_a(fed, cfg, source)
    return cfg


def check_freeze_lora_a(fed: FederateConfig, cfg: RunConfig, source: Path) -> None:
    """Refuse ``freeze_lora_a`` for a run config that trains no LoRA matrices."""
    if fed.freeze_lora_a and cfg.peft.method != "lora":
        raise ConfigError(
            f"freeze_lora_a freezes LoRA's A matrices, but the run config's peft.method is {cfg.peft.method!r}",
            path=source,
            key="freeze_lora_a",
            fix=f"set peft.method: lora in {fed.run_config}, or remove freeze_lora_a.",
        )


def run_federation(fed: FederateConfig, source: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """Run every round and write the run folder (see the module docstring). Returns metrics.json's dict.

    ``resume`` continues a stopped federation in ``output_dir`` after its last finished round
    (``federated/rounds.py``); one stopped before its first round ended starts again from round 1.
    """
    import_flower()  # before anything is read: a missing extra is the first thing to know
    source = Path(source)
    cfg = load_federated_run_config(fed, source)
    task = create_task(cfg.task)
    with run_folder(cfg, source, resume=resume) as out:
        return _federate(fed, cfg, task, out, resume=resume and resumable(out, fed, cfg))


@contextlib.contextmanager
def run_folder(cfg: RunConfig, source: Path, *, resume: bool = False, can_resume: bool = True) -> Iterator[Path]:
    """``open_run_folder``, with its complaints about the folder naming the federate file's keys (and not
    suggesting ``--resume`` where there is none: ``can_resume`` false, the deployed server)."""
    try:
        with open_run_folder(cfg, resume=resume) as out:
            yield out
    except ConfigError as e:
        if e.key not in ("output.dir", "output.overwrite"):
            raise
        fix = (e.fix or "").replace("output.overwrite", "overwrite").replace("output.dir", "output_dir")
        if not can_resume:
            fix = fix.replace("add --resume to continue it, or ", "")
        raise ConfigError(
            e.what,
            path=source,
            key=e.key.replace("output.", "output_" if e.key == "output.dir" else ""),
            fix=fix,
        ) from e


def _load_sites_data(fed: FederateConfig, cfg: RunConfig, task: Task) -> tuple[dict[str, TaskData], list[str]]:
    """Every site's checked splits, and the federation's labels (``labels:``, else the union over sites)."""
    datas = {name: task.load_data(site_config(cfg, path)) for name, path in fed.sites.items()}
    labels = sort_labels(fed.labels or set().union(*(d.labels for d in datas.values())))
    for name, data in datas.items():
        use_federation_labels(data, labels, fed.sites[name])
    return datas, list(labels)


def warn_on_label_skew(datas: dict[str, TaskData], class_weights: Any, threshold: float = 0.2) -> list[str]:
    """Warn about each site whose label shares differ from the pooled ones by more than ``threshold`` (total
    variation distance) while ``regularization.class_weights`` is none: under such skew each site's update pulls
    the global model towards its own majority label, and FedAvg on PhraseBank dealt this way predicted one label
    for every sentence (docs/federated.md). Single-label tasks only. Returns the sites warned about."""
    if class_weights != "none":
        return []
    counts = {
        name: Counter(e.label for e in data.splits.get("train", []) if isinstance(getattr(e, "label", None), str))
        for name, data in datas.items()
    }
    pooled = sum(counts.values(), Counter())
    total = sum(pooled.values())
    skewed = []
    for name, count in counts.items():
        n = sum(count.values())
        if not n or not total:
            continue
        distance = 0.5 * sum(abs(count[k] / n - pooled[k] / total) for k in pooled)
        if distance > threshold:
            top, k = count.most_common(1)[0]
            skewed.append(name)
            log.warning(
                "site %s: its labels differ from the federation's (%.0f%% %r against %.0f%% over all sites; "
                "total variation %.2f): set regularization.class_weights: balanced in the run config, or the "
                "global model may learn the sites' majority labels only (docs/federated.md, label skew)",
                name,
                100 * k / n,
                top,
                100 * pooled[top] / total,
                distance,
            )
    return skewed


# federate keys that may change when a federation resumes: where it writes
RESUME_FREE_FEDERATE_KEYS = ("output_dir", "overwrite")


def resumable(out: Path, fed: FederateConfig, cfg: RunConfig) -> bool:
    """Whether the stopped federation in ``out`` has a round checkpoint to resume from, under the same settings
    (the federate config and the run config it started with). One that stopped before its first round ended
    has its partial folders cleared and starts again (False)."""
    if RoundCheckpoints(out).latest() is None:
        log.warning("%s: the federation stopped before its first round ended; starting it again from round 1", out)
        for sub in ("checkpoints", "tensorboard"):
            shutil.rmtree(out / sub, ignore_errors=True)
        return False
    command = f"domainfit federate {out / 'federate.yaml'} --resume"
    try:
        check_resume_config(out, cfg, command=command)
    except ConfigError as e:  # the same complaint, in the federate file's words
        fix = (e.fix or "").replace("output.overwrite=true", "overwrite: true")
        raise ConfigError(e.what, path=e.path, key=e.key, fix=fix) from e
    changed = changed_settings(out / "federate.yaml", to_dict(fed), RESUME_FREE_FEDERATE_KEYS)
    if changed:
        raise ConfigError(
            "the federation started with other settings than these, so resuming would mix two runs: "
            + "; ".join(changed),
            path=out / "federate.yaml",
            fix=f"resume with the settings it started with: `{command}` (its saved config), or start afresh "
            "with overwrite: true.",
        )
    return True


def _federate(fed: FederateConfig, cfg: RunConfig, task: Task, out: Path, *, resume: bool = False) -> dict[str, Any]:
    from flwr.app import ConfigRecord, MetricRecord

    from domainfit.federated.grids import LocalGrid, TrafficMeter

    datas, labels = _load_sites_data(fed, cfg, task)
    warn_on_label_skew(datas, cfg.regularization.class_weights)
    set_up_process(cfg.train)  # threads and seed, before the new head's weights are drawn
    pooled = TaskData(splits={"train": [e for d in datas.values() for e in d.splits["train"]]}, labels=labels, info={})
    model, tokenizer = task.build(cfg, pooled)
    check_max_length(getattr(model, "config", None), cfg.model.max_length)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    if fed.freeze_lora_a:
        freeze_lora_a(model)  # before the first exchange: only B and the head travel
    mixed_precision = site_precision(fed, cfg, device, run_dir=out if resume else None)
    sites = [
        create_site(name, fed.sites[name], fed, cfg, task, tokenizer, data, device, mixed_precision)
        for name, data in datas.items()
    ]
    start_run(
        out,
        cfg,
        resume=resume,
        extra={
            "task": cfg.task,
            "labels": labels,
            "federated": True,
            "sites": {s.name: fed.sites[s.name] for s in sites},
            "mixed_precision": mixed_precision,
        },
    )
    write_text_atomic(out / "federate.yaml", yaml.safe_dump(to_dict(fed), sort_keys=False, allow_unicode=True))

    from torch.utils.tensorboard import SummaryWriter

    round_log = RoundLog()
    full_bytes = full_weights_bytes(model)
    grid = TrafficMeter(LocalGrid(sites, model, device), round_log, full_bytes)
    strategy = create_strategy(fed, round_log)
    everyone = pooled_features(sites)
    selection = RoundSelection(cfg.train.best_metric)
    checkpoints = RoundCheckpoints(out)
    federation = {"strategy": strategy, "round_log": round_log, "selection": selection, "sites": sites}
    resumed = checkpoints.load(**federation) if resume else None  # last: it restores the random generators too
    # a resumed run's TensorBoard drops what the stopped one logged after its last checkpoint
    tb = SummaryWriter(str(out / "tensorboard"), purge_step=resumed.last_round + 1 if resumed else None)

    def evaluate_globally(server_round: int, arrays: Any) -> Any:
        """The server's score of the global model: all sites' held-out splits pooled; logged per round."""
        load_trained_state(model, from_record(arrays))
        with autocast(device, mixed_precision):
            scores = evaluate(
                model,
                sites[0].objective,
                everyone,
                task,
                tokenizer,
                pooled,
                cfg.train.eval_batch_size,
                device,
                max_tokens=cfg.train.eval_batch_tokens,
            )
        metrics = numeric(scores)
        round_log.global_eval[server_round] = metrics
        selection.observe(server_round, round_log.sites_eval.get(server_round, {}), arrays)  # sites scored first
        log_round(tb, round_log, server_round, selection)
        return MetricRecord(metrics)

    logging.getLogger("flwr").setLevel(logging.WARNING)  # its per-round banners; the report has the numbers
    if resumed is None:
        random.seed(fed.seed)  # Flower samples each round's sites with the random module
    try:
        arrays = run_rounds(
            strategy,
            grid,
            to_record(trained_state(model)) if resumed is None else resumed.arrays,
            first_round=resumed.last_round + 1 if resumed else 1,
            num_rounds=fed.rounds,
            train_config=ConfigRecord({"local-epochs": fed.local_epochs, "num-rounds": fed.rounds}),
            evaluate_fn=evaluate_globally,
            end_round=lambda server_round, arrays: checkpoints.save(server_round, arrays, **federation),
        )
    finally:
        tb.close()
    load_trained_state(model, from_record(selection.arrays if selection.arrays is not None else arrays))

    sites_info = {
        s.name: {
            "file": fed.sites[s.name],
            "train_examples": s.num_train,
            "held_out": s.held_out,
            "held_out_examples": len(s.features[s.held_out]),
        }
        for s in sites
    }
    results = collect_results(fed, cfg, sites_info, round_log, model, full_bytes, selection)
    results["precision"] = precision_label(mixed_precision)
    with atomic_dir(out / "model") as tmp:
        task.save(model.cpu(), tokenizer, cfg, pooled, tmp)
    write_text_atomic(out / "metrics.json", json.dumps(results, indent=1, ensure_ascii=False))
    write_report(out / "report.md", fed, cfg, results)
    finish_run(out)
    shutil.rmtree(checkpoints.dir, ignore_errors=True)  # a finished federation is not resumed: free the disk
    print(kept_line(results))
    return results


def create_site(
    name: str,
    data_file: str,
    fed: FederateConfig,
    cfg: RunConfig,
    task: Task,
    tokenizer: Any,
    data: TaskData,
    device: torch.device,
    mixed_precision: str | None = None,
) -> Site:
    """A site: its data encoded, its objective (with FedProx's term), its DP-SGD state when ``dp.enabled``,
    its compute precision.

    Args:
        name: the site's name.
        data_file: its training file (``data.train`` of its run config).
        fed: the federate config.
        cfg: the run config every site trains with.
        task: the task.
        tokenizer: the model's tokenizer.
        data: the site's checked splits, with the federation's labels.
        device: where its objective lives.
        mixed_precision: the precision it computes in (:func:`site_precision`; None: chosen here, for this
            machine, as a deployed site does).
    """
    site_cfg = site_config(cfg, data_file)
    features = {split: task.encode(examples, tokenizer, site_cfg, data) for split, examples in data.splits.items()}
    objective = task.create_objective(site_cfg, data)
    if fed.strategy == "fedprox":
        objective = ProximalObjective(objective, mu=fed.proximal_mu)
    privacy = None
    if fed.dp.enabled:
        from domainfit.federated.privacy import SitePrivacy

        privacy = SitePrivacy(fed.dp, num_examples=len(features["train"]), batch_size=cfg.train.batch_size)
    return Site(
        name=name,
        cfg=site_cfg,
        task=task,
        tokenizer=tokenizer,
        data=data,
        features=features,
        objective=objective.to(device),
        privacy=privacy,
        mixed_precision=site_precision(fed, cfg, device) if mixed_precision is None else mixed_precision,
    )


def site_precision(fed: FederateConfig, cfg: RunConfig, device: torch.device, run_dir: Path | None = None) -> str:
    """The sites' compute precision, chosen as ``domainfit train`` chooses it from ``train.precision`` (``auto``:
    measured once per machine; ``run_dir``: a resumed federation keeps its first choice), fp32 under DP-SGD."""
    if fed.dp.enabled:
        if cfg.train.precision not in ("auto", "fp32"):
            log.warning("DP-SGD trains in fp32 (Opacus's per-example gradients); train.precision is not used")
        return "no"
    return resolve_precision(cfg.train.precision, device, run_dir=run_dir)


def log_round(tb: Any, round_log: RoundLog, server_round: int, selection: RoundSelection | None = None) -> None:
    """TensorBoard scalars of one round: global (held-out and validation), per site (training and held-out),
    traffic."""
    for name, value in round_log.global_eval.get(server_round, {}).items():
        tb.add_scalar(f"global/{name}", value, server_round)
    if selection is not None:
        for name, value in selection.validation.get(server_round, {}).items():
            tb.add_scalar(f"global_validation/{name}", value, server_round)
    for kind, per_round in (("train", round_log.sites_train), ("eval", round_log.sites_eval)):
        for site, metrics in per_round.get(server_round, {}).items():
            for name, value in metrics.items():
                tb.add_scalar(f"site_{kind}/{site}/{name}", value, server_round)
    for name, value in round_log.traffic.get(server_round, {}).items():
        tb.add_scalar(f"traffic/{name}", value, server_round)


def collect_results(
    fed: FederateConfig,
    cfg: RunConfig,
    sites_info: dict[str, dict[str, Any]],
    round_log: RoundLog,
    model: torch.nn.Module,
    full_bytes: int,
    selection: RoundSelection,
) -> dict[str, Any]:
    """metrics.json's dict: the settings, each site (``sites_info``: file, train_examples, held_out,
    held_out_examples), the per-round records of ``round_log``, the round kept (``selection``) and its
    held-out scores (``final``), and what one message carries."""
    kept = selection.summary(fed.rounds)
    exchanged = trained_state(model)
    exchanged_bytes = sum(t.numel() * t.element_size() for t in exchanged.values())
    return {
        "strategy": fed.strategy,
        "rounds": fed.rounds,
        "local_epochs": fed.local_epochs,
        "sites": sites_info,
        "selection": kept,
        "final": round_log.global_eval.get(kept["kept_round"], {}),
        "global": {str(r): m for r, m in sorted(round_log.global_eval.items())},
        "global_validation": {str(r): m for r, m in sorted(selection.validation.items())},
        "sites_train": {str(r): m for r, m in sorted(round_log.sites_train.items())},
        "sites_eval": {str(r): m for r, m in sorted(round_log.sites_eval.items())},
        "traffic": {str(r): m for r, m in sorted(round_log.traffic.items()) if r > 0},
        "exchanged": {
            "tensors": len(exchanged),
            "bytes_per_message": exchanged_bytes,
            "full_weights_bytes_per_message": full_bytes,
            "share_percent": round(100 * exchanged_bytes / max(full_bytes, 1), 3),
            "peft": cfg.peft.method,
            "lora_a_frozen": fed.freeze_lora_a,
        },
        "dp": to_dict(fed.dp) if fed.dp.enabled else None,
    }


def kept_line(results: dict[str, Any]) -> str:
    """The line ``federate`` prints at the end: the kept round, why, and its held-out scores."""
    kept, final = results["selection"], results["final"]
    scores = " ".join(f"{k}={final[k]:.4f}" for k in ROUND_METRICS if k in final)
    if kept["by"] == "last round":
        return f"global model after the last round ({kept['why']}): {scores}"
    return f"global model of round {kept['kept_round']} (best validation {kept['metric']}): {scores}"
