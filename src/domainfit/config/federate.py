"""The config of ``domainfit federate``: the run config the sites train, the sites, the rounds, the strategy.

    domainfit federate federate.yaml [key=value ...]

Same loading rules as a run config (strict keys with near-miss hints, typed values, ``dotted.key=value``
overrides); paths are resolved against the current folder first, then the federate file's folder. Keys that
only some strategies read (``proximal_mu``, ``server_tau``, ...) and the ``dp`` settings when DP is off are
refused when set, naming the key, so nothing written is silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domainfit.config.core import _build, _exists, _read_raw
from domainfit.config.fields import SEED_MAX, _f
from domainfit.errors import ConfigError, short_repr


@dataclass
class PrivacyConfig:
    enabled: bool = _f(
        False,
        "DP-SGD (Abadi et al. 2016) at every site through Opacus: each example's gradient is clipped to "
        "max_grad_norm and Gaussian noise is added; the epsilon each site has spent (at delta) is reported "
        "every round.",
    )
    noise_multiplier: float = _f(
        1.0,
        "Noise standard deviation, in units of max_grad_norm (more noise: smaller epsilon, lower accuracy).",
        min_exclusive=0.0,
    )
    max_grad_norm: float = _f(
        1.0,
        "Per-example gradient norm bound (DP-SGD's clipping; replaces train.max_grad_norm).",
        min_exclusive=0.0,
    )
    delta: float = _f(
        1e-5,
        "The delta of (epsilon, delta)-DP that epsilon is reported at (below 1 / examples per site).",
        min_exclusive=0.0,
        max=0.1,
    )


STRATEGIES = ("fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi")  # federated/strategies.py builds each
# the keys only some strategies read: set with another strategy, they are refused (nothing is silently ignored)
SERVER_STEP_DEFAULTS = {"fedavgm": 1.0, "fedadam": 0.01, "fedyogi": 0.01}  # Flower's FedYogi default for both
SERVER_STRATEGIES = tuple(SERVER_STEP_DEFAULTS)  # the strategies with a server step
STRATEGY_KEYS = {
    "proximal_mu": ("fedprox",),
    "server_momentum": SERVER_STRATEGIES,
    "server_learning_rate": SERVER_STRATEGIES,
    "server_tau": ("fedadam", "fedyogi"),
}


@dataclass
class FederateConfig:
    run_config: str = _f(
        "",
        "The run config every site trains with (task, model, peft, train settings); its data.train is "
        "replaced by each site's file.",
    )
    run_overrides: list[str] = _f([], "dotted.key=value overrides of the run config, e.g. ['train.batch_size=16'].")
    sites: dict[str, str] = _f(
        {},
        "Site name -> that site's training file (read with the run config's data options; each site splits "
        "off its own validation and test sets as the run config's data section says). In a deployment the "
        "files are on the sites' machines (a SuperNode may name another with --node-config data=...).",
    )
    labels: list[str] = _f(
        [],
        "The federation's class labels. Required by a deployment (--deploy-app), where no site sees the "
        "others' labels; in the simulation, default: the union of the sites' labels. Ids follow the order "
        "domainfit train uses (numeric if every label is an integer, else alphabetical).",
    )
    rounds: int = _f(
        3, "Federated rounds: the server sends the global weights, sites train, the server averages.", min=1
    )
    local_epochs: int = _f(1, "Passes over its own training data each chosen site makes per round.", min=1)
    strategy: str = _f(
        "fedavg",
        "fedavg (McMahan et al. 2017: average weighted by examples), fedprox (Li et al. 2020: also a "
        "proximal term mu/2 ||w - w_global||^2 in each local loss), fedavgm (Hsu et al. 2019: the server "
        "moves the global weights along the averaged update with momentum), or fedadam / fedyogi (Reddi et al. "
        "2021: the averaged update drives a server-side Adam / Yogi, so each weight moves by about "
        "server_learning_rate per round).",
        choices=STRATEGIES,
    )
    proximal_mu: float = _f(0.01, "FedProx's mu (strategy: fedprox only).", min=0.0)
    server_momentum: float = _f(
        0.9,
        "The server's momentum: FedAvgM's momentum (0 with server_learning_rate 1 is FedAvg), or FedAdam's / "
        "FedYogi's beta_1 (strategies fedavgm, fedadam, fedyogi only).",
        min=0.0,
        max=1.0,
    )
    server_learning_rate: float | None = _f(
        None,
        "The server's step: FedAvgM's step along the averaged update (default 1.0), or FedAdam's / FedYogi's "
        "eta (default 0.01), about how far each weight moves per round (strategies fedavgm, fedadam, fedyogi "
        "only).",
        min_exclusive=0.0,
    )
    server_tau: float = _f(
        1e-3,
        "FedAdam's / FedYogi's tau, added to the root of the second moment: updates much smaller than tau move "
        "their weight less than server_learning_rate (strategies fedadam, fedyogi only).",
        min_exclusive=0.0,
    )
    freeze_lora_a: bool = _f(
        False,
        "FFA-LoRA (Sun et al. 2024): LoRA's A matrices stay at their shared random start and only B (and the "
        "head) train and travel, so averaging B averages the sites' updates BA exactly (averaging A and B "
        "separately does not) and half the LoRA bytes stay home. Needs peft.method: lora in the run config.",
    )
    fraction_fit: float = _f(
        1.0,
        "Share of the sites that train in a round, drawn afresh each round with seed.",
        min_exclusive=0.0,
        max=1.0,
    )
    min_fit_sites: int = _f(1, "At least this many sites train in a round.", min=1)
    seed: int = _f(
        42,
        "Seed for choosing the sites of each round (the run config's train.seed seeds the model and batches).",
        max=SEED_MAX,
    )
    output_dir: str = _f(
        "runs/federated",
        "Run folder: model/ (the global model), metrics.json, report.md, tensorboard/, federate.yaml.",
    )
    overwrite: bool = _f(False, "Allow writing into an output folder that already holds a finished federated run.")
    dp: PrivacyConfig = field(
        default_factory=PrivacyConfig,
        metadata={"help": "Optional differential privacy (DP-SGD at every site)."},
    )

    @property
    def server_step_size(self) -> float:
        """``server_learning_rate``, or the chosen strategy's default when it is not set."""
        if self.server_learning_rate is not None:
            return self.server_learning_rate
        return SERVER_STEP_DEFAULTS.get(self.strategy, 1.0)


# site names become TensorBoard tags and report rows: short, no path characters
_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def load_federate_config(
    path: str | Path, overrides: list[str] | None = None, *, deployed: bool = False
) -> FederateConfig:
    """Read and check a federate YAML (see the module docstring).

    Args:
        path: the federate file.
        overrides: ``dotted.key=value`` strings, e.g. ``rounds=5`` or ``dp.enabled=true``.
        deployed: read for a real deployment (``federated/deploy.py``): the sites' files are on the sites'
            machines, so they are not looked for here, and ``labels`` is required.

    Returns:
        The checked config; ``run_config`` is a resolved path that exists, and so is every site's file
        unless ``deployed``.
    """
    path = Path(path)
    raw = _read_raw(path, overrides)
    cfg = _build(FederateConfig, raw, prefix="", source=path)
    if not cfg.run_config:
        raise ConfigError(
            "no run config given",
            path=path,
            key="run_config",
            fix="run_config: path/to/train.yaml (the config each site trains with).",
        )
    cfg.run_config = _existing(cfg.run_config, path, "run_config", "config file")
    if len(cfg.sites) < 2:
        raise ConfigError(
            f"federated training needs at least two sites, found {len(cfg.sites)}",
            path=path,
            key="sites",
            fix="under sites:, one line per site: its name, a colon, its training file (see docs/federated.md).",
        )
    for name, data in cfg.sites.items():
        key = f"sites.{name}"
        if not _SITE_NAME.fullmatch(name) or ".." in name:
            raise ConfigError(
                f"the site name {short_repr(name, 80)} cannot be used",
                path=path,
                key=key,
                fix="use letters, digits, '-', '_' and '.' (no '/', no '..'), at most 64 characters.",
            )
        if not deployed:
            cfg.sites[name] = _existing(data, path, key, "data file")
    _check_labels(cfg, path, deployed)
    for key, readers in STRATEGY_KEYS.items():
        if key in raw and cfg.strategy not in readers:
            raise ConfigError(
                f"{key} is read by strategy {' / '.join(readers)} only, but strategy is {cfg.strategy!r}, "
                "so it would be ignored",
                path=path,
                key=key,
                fix=f"set strategy: {readers[0]}, or remove {key}.",
            )
    if cfg.min_fit_sites > len(cfg.sites):
        raise ConfigError(
            f"min_fit_sites is {cfg.min_fit_sites} but there are only {len(cfg.sites)} sites",
            path=path,
            key="min_fit_sites",
            fix=f"set min_fit_sites to at most {len(cfg.sites)}.",
        )
    dp_raw: Any = raw.get("dp") or {}
    extra_dp = sorted(set(dp_raw) - {"enabled"})
    if not cfg.dp.enabled and extra_dp:
        raise ConfigError(
            "differential privacy is off, so this setting would be ignored",
            path=path,
            key=f"dp.{extra_dp[0]}",
            fix="set dp.enabled: true, or remove the dp settings.",
        )
    return cfg


def _check_labels(cfg: FederateConfig, source: Path, deployed: bool) -> None:
    if deployed and not cfg.labels:
        raise ConfigError(
            "a deployment needs the federation's labels: no site sees the others' data",
            path=source,
            key="labels",
            fix="list every class, e.g. labels: [negative, neutral, positive].",
        )
    seen: set[str] = set()
    for label in cfg.labels:
        if not str(label).strip() or label in seen:
            raise ConfigError(
                f"the label {short_repr(label, 80)} is {'listed twice' if label in seen else 'empty'}",
                path=source,
                key="labels",
                fix="list each class once, by the name the sites' files use.",
            )
        seen.add(label)


def _existing(value: str, source: Path, key: str, what: str) -> str:
    """``value`` as a path that exists: as given, else relative to the federate file's folder."""
    p = Path(value)
    if not p.is_absolute() and not _exists(p) and _exists(source.parent / p):
        p = source.parent / p
    if not _exists(p) or p.is_dir():
        raise ConfigError(
            f"{what} {short_repr(value)} not found",
            path=source,
            key=key,
            fix="give a path relative to the current folder or to this federate file.",
        )
    return str(p)
