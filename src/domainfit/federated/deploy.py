"""A real Flower deployment of ``domainfit federate``: the ServerApp, the ClientApp and the app folder.

    domainfit federate federate.yaml --deploy-app fed-app       # on the server: writes the Flower app
    flower-superlink --insecure --disable-runtime-dependency-installation          # the server
    flower-supernode --insecure --superlink SERVER:9092 \\
        --node-config 'site="helsinki" data="/data/helsinki.csv"'                 # at each site
    flwr run fed-app domainfit                                                    # from the server

The app folder holds ``pyproject.toml`` (``[tool.flwr.app]``), ``domainfit_app.py`` (which only names the
two apps below) and the configs, resolved: ``federate.yaml`` (``labels:`` required, since no site sees the
others' labels) and ``run.yaml``. ``flwr run`` ships the folder to the SuperLink, which hands it to every
SuperNode; domainfit itself is installed on every machine (``pip install "domainfit[federated]"``).

Server (the SuperLink's ServerApp process): builds the model from the run config, runs the loop of the
configured Flower strategy over a :class:`~domainfit.federated.grids.TrafficMeter` around Flower's own grid,
and writes the run folder the simulation writes (``model/``, ``metrics.json``, ``report.md``,
``tensorboard/``); the global score of a round is the sites' held-out scores averaged, weighted by examples,
since the server holds no data.
Site (the SuperNode's ClientApp process, one per message): reads its own file (node config ``data``, else its
entry under ``sites:``), checks it against ``labels``, builds the same model and answers with the handlers of
``federated/apps.py``; what lasts across rounds (its round count, its DP accountant) is kept in Flower's
``context.state``.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import torch
import yaml

from domainfit.config import RunConfig, to_dict
from domainfit.config.core import _read_raw
from domainfit.config.federate import FederateConfig, load_federate_config
from domainfit.data.labels import sort_labels
from domainfit.errors import ConfigError, DomainfitError, short_repr
from domainfit.federated.apps import WEIGHT_KEY, RoundLog, create_strategy, register_handlers
from domainfit.federated.exchange import (
    freeze_lora_a,
    from_record,
    frozen_digest,
    full_weights_bytes,
    import_flower,
    load_trained_state,
    to_record,
    trained_state,
)
from domainfit.federated.report import write_report
from domainfit.federated.rounds import run_rounds
from domainfit.federated.selection import VAL_PREFIX, VAL_WEIGHT_KEY, RoundSelection
from domainfit.federated.simulation import (
    collect_results,
    create_site,
    kept_line,
    load_federated_run_config,
    log_round,
    run_folder,
)
from domainfit.federated.site import Site, use_federation_labels
from domainfit.io.atomic import atomic_dir, write_text_atomic
from domainfit.models.loading import check_max_length
from domainfit.tasks import TaskData, create_task, load_run_config
from domainfit.training.run_dir import finish_run, start_run
from domainfit.training.scaffold import set_up_process

APP_MODULE = "domainfit_app"
NODE_KEYS = {
    "site": "the site's name under sites: in the federate config (required)",
    "data": "the site's training file on this machine (default: its entry under sites:)",
    "model": "the base model's folder on this machine (default: the run config's model.name)",
}
STATE_KEY = "domainfit-site"  # the site's record in Flower's context.state

_APP_MODULE_TEXT = '''"""A domainfit federation's Flower app (domainfit federate CONFIG --deploy-app DIR).

    flwr run DIR <superlink-connection>

The ServerApp and the ClientApp are domainfit's (domainfit.federated.deploy); this folder carries the
resolved configs (federate.yaml, run.yaml) to the SuperLink and every SuperNode. Do not edit: rewrite it.
"""

from pathlib import Path

from domainfit.federated.deploy import create_client_app, create_server_app

server_app = create_server_app(Path(__file__).parent)
client_app = create_client_app(Path(__file__).parent)
'''

_PYPROJECT_TEXT = """# A Flower app written by domainfit federate --deploy-app: rewrite it, do not edit
[project]
name = "{name}"
version = "1.0.0"
description = "domainfit federate: {strategy}, {rounds} rounds, sites {sites}"
license = "Apache-2.0"
# domainfit[federated] {version} is installed on every machine: nothing to install at run time
dependencies = []

[tool.flwr.app]
publisher = "domainfit"

[tool.flwr.app.components]
serverapp = "{module}:server_app"
clientapp = "{module}:client_app"
"""


def write_app(fed: FederateConfig, source: str | Path, app_dir: str | Path, overrides: list[str]) -> Path:
    """Write the Flower app folder of a deployment (module docstring) after checking both configs.

    Args:
        fed: the federate config, loaded with ``deployed=True``.
        source: the federate file (its raw keys are copied, so the app's file reloads the same way).
        app_dir: the folder to write; refused when it exists and is not an app this function wrote.
        overrides: the ``key=value`` overrides ``fed`` was loaded with.

    Returns:
        The app folder.
    """
    from domainfit import __version__

    import_flower()
    source, app_dir = Path(source), Path(app_dir)
    cfg = load_federated_run_config(fed, source)  # the run config's task checks, before anything is written
    if app_dir.exists() and not (app_dir / f"{APP_MODULE}.py").is_file():
        raise DomainfitError(
            f"{app_dir} exists and is not a Flower app written by domainfit",
            fix="give --deploy-app a new folder (or one an earlier --deploy-app wrote, to replace it).",
        )
    raw = _read_raw(source, overrides)
    raw.update(run_config="run.yaml", run_overrides=[], output_dir=str(Path(fed.output_dir).resolve()))
    with atomic_dir(app_dir) as tmp:
        (tmp / f"{APP_MODULE}.py").write_text(_APP_MODULE_TEXT, encoding="utf-8")
        (tmp / "federate.yaml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
        (tmp / "run.yaml").write_text(
            yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        (tmp / "pyproject.toml").write_text(
            _PYPROJECT_TEXT.format(
                name="domainfit-" + "".join(c if c.isalnum() else "-" for c in Path(fed.output_dir).name),
                strategy=fed.strategy,
                rounds=fed.rounds,
                sites=", ".join(fed.sites),
                version=__version__,
                module=APP_MODULE,
            ),
            encoding="utf-8",
        )
    return app_dir


def load_app_configs(app_dir: Path, run_overrides: list[str] | None = None) -> tuple[FederateConfig, RunConfig]:
    """The federate and run configs an app folder carries (``run_overrides`` apply to the run config)."""
    fed = load_federate_config(
        app_dir / "federate.yaml", [f"run_config={json.dumps(str(app_dir / 'run.yaml'))}"], deployed=True
    )
    cfg = load_run_config(fed.run_config, run_overrides or [])
    cfg.output.dir, cfg.output.overwrite = fed.output_dir, fed.overwrite
    return fed, cfg


def create_server_app(app_dir: str | Path) -> Any:
    """The Flower ``ServerApp`` of a deployment: runs :func:`serve` on the SuperLink's grid."""
    import_flower()
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        serve(Path(app_dir), grid)

    return app


def create_client_app(app_dir: str | Path) -> Any:
    """The Flower ``ClientApp`` of a deployment: the site its SuperNode's node config names."""
    import_flower()
    from flwr.clientapp import ClientApp

    app = ClientApp()
    register_handlers(app, lambda context: build_site(Path(app_dir), context), after=keep_site_state)
    return app


def build_site(app_dir: Path, context: Any) -> tuple[Site, torch.nn.Module, torch.device]:
    """This SuperNode's site, from its node config, with what earlier rounds left in ``context.state``."""
    node = dict(context.node_config)
    fed, _ = load_app_configs(app_dir)
    unknown = sorted(set(node) - set(NODE_KEYS))
    if unknown or not isinstance(node.get("site"), str) or node["site"] not in fed.sites:
        what = (
            f"unknown node config key(s) {unknown}"
            if unknown
            else f"the node config names site {short_repr(node.get('site'), 80)}, not one of {list(fed.sites)}"
        )
        raise ConfigError(
            what,
            key="--node-config",
            fix='start the SuperNode with --node-config \'site="NAME" data="/path/file.csv"\' ('
            + "; ".join(f"{k}: {v}" for k, v in NODE_KEYS.items())
            + ").",
        )
    name = node["site"]
    data_file = str(Path(str(node.get("data", fed.sites[name]))).expanduser().resolve())
    overrides = [f"data.train={json.dumps(data_file)}"]
    if "model" in node:
        overrides.append(f"model.name={json.dumps(str(node['model']))}")
    fed, cfg = load_app_configs(app_dir, overrides)
    task = create_task(cfg.task)
    data = task.load_data(cfg)
    use_federation_labels(data, sort_labels(fed.labels), data_file)
    set_up_process(cfg.train)
    model, tokenizer = task.build(cfg, data)
    check_max_length(getattr(model, "config", None), cfg.model.max_length)
    if fed.freeze_lora_a:
        freeze_lora_a(model)  # the same A as the server's: the train handler checks its digest
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    site = create_site(name, data_file, fed, cfg, task, tokenizer, data, device)
    if STATE_KEY in context.state:
        record = context.state[STATE_KEY]
        site.rounds_trained = int(record["rounds-trained"])
        if site.privacy is not None and "dp-steps" in record:
            site.privacy.accountant.history = [
                (float(noise), float(rate), int(steps))
                for noise, rate, steps in zip(record["dp-noise"], record["dp-rate"], record["dp-steps"])
            ]
    return site, model, device


def keep_site_state(site: Site, context: Any) -> None:
    """Keep what the next message's process needs (each message is handled by a new ClientApp process)."""
    from flwr.app import ConfigRecord

    record: dict[str, Any] = {"rounds-trained": site.rounds_trained}
    history = site.privacy.accountant.history if site.privacy is not None else []
    if history:  # Opacus's RDP accountant: (noise multiplier, sample rate, steps) per stretch of steps
        record["dp-noise"] = [float(h[0]) for h in history]
        record["dp-rate"] = [float(h[1]) for h in history]
        record["dp-steps"] = [int(h[2]) for h in history]
    context.state[STATE_KEY] = ConfigRecord(record)


def serve(app_dir: Path, grid: Any) -> dict[str, Any]:
    """The server's side of a deployed run: every round over ``grid``, then the run folder.

    Returns:
        metrics.json's dict.
    """
    fed, cfg = load_app_configs(app_dir)
    task = create_task(cfg.task)
    with run_folder(cfg, app_dir / "federate.yaml", can_resume=False) as out:
        return _serve(fed, cfg, task, grid, out)


def _serve(fed: FederateConfig, cfg: RunConfig, task: Any, grid: Any, out: Path) -> dict[str, Any]:
    from flwr.app import ConfigRecord

    from domainfit.federated.grids import TrafficMeter

    labels = list(sort_labels(fed.labels))
    data = TaskData(splits={"train": []}, labels=labels, info={})  # the server sees labels, no examples
    set_up_process(cfg.train)  # threads and seed, before the new head's weights are drawn
    model, tokenizer = task.build(cfg, data)
    check_max_length(getattr(model, "config", None), cfg.model.max_length)
    train_config = {"local-epochs": fed.local_epochs, "num-rounds": fed.rounds}
    if fed.freeze_lora_a:
        freeze_lora_a(model)
        train_config["frozen-digest"] = frozen_digest(model)  # each site checks its own A against it
    start_run(
        out,
        cfg,
        resume=False,
        extra={"task": cfg.task, "labels": labels, "federated": True, "deployed": True, "sites": fed.sites},
    )
    write_text_atomic(out / "federate.yaml", yaml.safe_dump(to_dict(fed), sort_keys=False, allow_unicode=True))

    from torch.utils.tensorboard import SummaryWriter

    round_log = RoundLog()
    full_bytes = full_weights_bytes(model)
    strategy = create_strategy(fed, round_log)
    selection = RoundSelection(cfg.train.best_metric)
    tb = SummaryWriter(str(out / "tensorboard"))

    def close_round(server_round: int, arrays: Any) -> None:
        """After each round's evaluation: the global score (the sites' scores, weighted), logged."""
        if server_round == 0:
            return None  # no data at the server: nothing to score the initial weights on
        per_site = round_log.sites_eval.get(server_round, {})
        silent = sorted(set(fed.sites) - set(per_site))
        if silent:
            raise DomainfitError(
                f"round {server_round}: site(s) {silent} sent no scores (their ClientApp failed)",
                fix="read that SuperNode's log, fix its node config or data file, and run again.",
            )
        round_log.global_eval[server_round] = _weighted_mean(per_site)
        selection.observe(server_round, per_site, arrays)
        log_round(tb, round_log, server_round, selection)
        return None

    logging.getLogger("flwr").setLevel(logging.WARNING)  # its per-round banners; the report has the numbers
    random.seed(fed.seed)  # Flower samples each round's sites with the random module
    try:
        arrays = run_rounds(
            strategy,
            TrafficMeter(grid, round_log, full_bytes),
            to_record(trained_state(model)),
            first_round=1,
            num_rounds=fed.rounds,
            train_config=ConfigRecord(train_config),
            evaluate_fn=close_round,
        )
    finally:
        tb.close()
    load_trained_state(model, from_record(selection.arrays if selection.arrays is not None else arrays))

    sites_info = {name: _site_info(name, fed, round_log) for name in fed.sites}
    results = collect_results(fed, cfg, sites_info, round_log, model, full_bytes, selection)
    results["global_score"] = "sites_weighted_mean"
    with atomic_dir(out / "model") as tmp:
        task.save(model.cpu(), tokenizer, cfg, data, tmp)
    write_text_atomic(out / "metrics.json", json.dumps(results, indent=1, ensure_ascii=False))
    write_report(out / "report.md", fed, cfg, results)
    finish_run(out)
    print(kept_line(results))  # into the ServerApp's log (flwr run --stream, flwr log)
    return results


def _weighted_mean(per_site: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each held-out metric averaged over the sites, weighted by their held-out examples (``num-examples``);
    the validation scores (``val_*``) are weighed by ``federated/selection.py``."""
    total = sum(m[WEIGHT_KEY] for m in per_site.values())
    first = next(iter(per_site.values()))
    names = [k for k in first if k not in (WEIGHT_KEY, VAL_WEIGHT_KEY) and not k.startswith(VAL_PREFIX)]
    return {k: sum(m[k] * m[WEIGHT_KEY] for m in per_site.values()) / max(total, 1) for k in names}


def _site_info(name: str, fed: FederateConfig, round_log: RoundLog) -> dict[str, Any]:
    """metrics.json's entry for a site, from what its replies said (a site that never trained: None)."""
    trained = [per[name][WEIGHT_KEY] for _, per in sorted(round_log.sites_train.items()) if name in per]
    scored = [per[name][WEIGHT_KEY] for _, per in sorted(round_log.sites_eval.items()) if name in per]
    return {
        "file": fed.sites[name],
        "train_examples": int(trained[-1]) if trained else None,
        "held_out": round_log.held_out.get(name),
        "held_out_examples": int(scored[-1]) if scored else None,
    }
