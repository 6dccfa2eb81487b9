"""The tune config: a run config, a search space of its keys, trials, metric, sampler, pruner; all checked
before the first trial (every searched key by loading the run config with its bounds)."""

from __future__ import annotations

import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from domainfit.config import RunConfig
from domainfit.config.yaml_files import read_workflow_file
from domainfit.errors import ConfigError, MissingExtraError, short_repr
from domainfit.metrics.classification import metric_direction

_TOP_KEYS = {"config", "overrides", "output_dir", "trials", "metric", "sampler", "pruner", "enqueue", "space"}
_SAMPLERS = {"tpe": {"seed", "startup_trials"}, "random": {"seed"}}
_PRUNERS = {"median": {"startup_trials", "warmup_evals"}, "none": set()}


@dataclass
class Param:
    """One searched config key: a numeric range (``low``/``high``, ``log``, ``step``) or ``choices``."""

    key: str
    kind: str  # "float", "int" or "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list[Any] = field(default_factory=list)

    def suggest(self, trial: Any) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, self.choices)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return any(value == c and type(value) is type(c) for c in self.choices) or (
                isinstance(value, float) and value in self.choices
            )
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"one of {self.choices}"
        scale = ", log scale" if self.log else ""
        step = f", step {self.step}" if self.step else ""
        return f"{self.kind} from {self.low} to {self.high}{scale}{step}"


@dataclass
class TuneConfig:
    config: str
    output_dir: str
    space: dict[str, Param]
    overrides: list[str] = field(default_factory=list)
    trials: int = 20
    metric: str = "f1_macro"
    direction: str = "max"
    sampler: dict[str, Any] = field(default_factory=dict)
    pruner: dict[str, Any] = field(default_factory=dict)
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    default_params: dict[str, Any] = field(default_factory=dict)  # the run config's own values: trial 0
    epochs: int = 1
    source: Path | None = None


def import_optuna() -> Any:
    """The optuna module, or a MissingExtraError naming the extra that installs it."""
    try:
        import optuna
    except ImportError as e:
        raise MissingExtraError(
            f"domainfit tune needs optuna, which is not installed ({e})", fix='pip install "domainfit[tune]"'
        ) from e
    return optuna


def load_tune_config(path: str | Path, overrides: list[str] | None = None) -> TuneConfig:
    """Read and check a tune YAML; the run config path is resolved against the tune file's folder.

    Every search-space key is checked by loading the run config with each bound (or choice) as an override,
    so a typo or an out-of-range bound is refused now, naming the key, before any trial trains.

    Args:
        path: the tune YAML.
        overrides: ``key=value`` strings for its top-level keys, e.g. ``trials=30``.

    Returns:
        The checked :class:`TuneConfig`.
    """
    from domainfit.tasks import load_run_config

    path = Path(path)
    raw = read_workflow_file(path, overrides, _TOP_KEYS, kind="tune")
    for key, example in (
        ("config", "config: path/to/train.yaml"),
        ("output_dir", "output_dir: runs/tune"),
        ("space", "space: {train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}}"),
    ):
        if key not in raw:
            raise ConfigError(f"no {key} given", path=path, key=key, fix=example)
    config = _resolve(raw["config"], path)
    run_overrides = raw.get("overrides") or []
    if not isinstance(run_overrides, list) or not all(isinstance(v, str) and "=" in v for v in run_overrides):
        raise ConfigError(
            "expected a list of 'dotted.key=value' strings",
            path=path,
            key="overrides",
            fix="e.g. ['train.epochs=2', 'train.num_threads=1']",
        )
    if not isinstance(raw["output_dir"], str) or not raw["output_dir"]:
        raise ConfigError(f"expected a folder path, found {short_repr(raw['output_dir'])}", path=path, key="output_dir")
    base = load_run_config(config, run_overrides)
    metric = raw.get("metric", base.train.best_metric)
    try:
        direction = metric_direction(metric if isinstance(metric, str) else str(metric), key="metric")
    except ConfigError as e:
        raise ConfigError(e.what, path=path, key="metric", fix=e.fix) from e
    space = raw["space"]
    if not isinstance(space, dict) or not space:
        raise ConfigError(
            f"expected a mapping of config keys to ranges or choices, found {short_repr(space)}",
            path=path,
            key="space",
            fix="e.g. space: {train.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}, "
            "train.batch_size: {choices: [16, 32]}}",
        )
    cfg = TuneConfig(
        config=config,
        output_dir=raw["output_dir"],
        space={},
        overrides=list(run_overrides),
        metric=metric,
        direction=direction,
        epochs=base.train.epochs,
        source=path,
    )
    for key, spec in space.items():
        param = _parse_param(key, spec, path)
        for value in param.choices or (param.low, param.high):  # each bound is a config the key must accept
            try:
                load_run_config(config, [*run_overrides, f"{key}={yaml_value(value)}"])
            except ConfigError as e:
                raise ConfigError(
                    f"search-space key {key!r} with the value {short_repr(value)}: {e.what}",
                    path=path,
                    key=f"space.{key}",
                    fix=e.fix,
                ) from e
        if param.kind != "categorical":
            param.kind = _numeric_kind(key, param, path)
        default = _get_dotted(base, key)
        if not param.contains(default):
            raise ConfigError(
                f"the run config's own value {short_repr(default)} is outside the range "
                f"({param.describe()}); trial 0 runs the run config as it is, to show what the "
                "search gained over it",
                path=path,
                key=f"space.{key}",
                fix="widen the range or add the value to the choices, or set the key in "
                "overrides to a value inside it.",
            )
        cfg.space[key] = param
        cfg.default_params[key] = default
    cfg.trials = _int(raw.get("trials", 20), path, "trials", low=1)
    cfg.sampler = _named(raw.get("sampler") or {"name": "tpe"}, _SAMPLERS, path, "sampler")
    cfg.sampler.setdefault("seed", 42)
    cfg.pruner = _named(raw.get("pruner") or {"name": "median"}, _PRUNERS, path, "pruner")
    if cfg.pruner["name"] == "median":
        cfg.pruner.setdefault("startup_trials", 2)
        cfg.pruner.setdefault("warmup_evals", 0)
    enqueue = raw.get("enqueue") or []
    if not isinstance(enqueue, list) or not all(isinstance(e, dict) and e for e in enqueue):
        raise ConfigError(
            "expected a list of {config key: value} mappings",
            path=path,
            key="enqueue",
            fix="e.g. enqueue: [{train.learning_rate: 3.0e-5}]",
        )
    for i, point in enumerate(enqueue):
        for key, value in point.items():
            if key not in cfg.space or not cfg.space[key].contains(value):
                raise ConfigError(
                    f"{short_repr(key)}: {short_repr(value)} is not a point of the search space",
                    path=path,
                    key=f"enqueue[{i}]",
                    fix=f"use keys of space ({', '.join(cfg.space)}) with values inside their ranges.",
                )
    cfg.enqueue = enqueue
    if cfg.trials < 1 + len(enqueue):
        raise ConfigError(
            f"trials: {cfg.trials} leaves no room for the default trial and {len(enqueue)} enqueued point(s)",
            path=path,
            key="trials",
            fix=f"trials: {1 + len(enqueue)} or more",
        )
    return cfg


def _resolve(value: Any, path: Path) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError("expected a path to a run config (YAML)", path=path, key="config")
    p = Path(value)
    try:
        if not p.is_absolute() and not p.exists() and (path.parent / p).exists():
            p = Path(os.path.relpath((path.parent / p).resolve()))
        found = p.is_file()
    except (OSError, ValueError):  # a name the OS cannot look up (too long, a NUL byte)
        found = False
    if not found:
        raise ConfigError(
            f"run config {short_repr(value)} not found",
            path=path,
            key="config",
            fix="give a path relative to the current folder or to this tune file.",
        )
    return str(p)


def _parse_param(key: Any, spec: Any, path: Path) -> Param:
    where = {"path": path, "key": f"space.{key}"}
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+", key):
        raise ConfigError(
            f"{short_repr(key)} is not a dotted config key",
            **where,
            fix="use the run config's keys, e.g. train.learning_rate (see `domainfit config`).",
        )
    if key.startswith("output."):
        raise ConfigError(
            "where a trial writes is not a hyperparameter",
            **where,
            fix="remove it; trials go to output_dir/trials/NNN.",
        )
    if not isinstance(spec, dict) or set(spec) - {"low", "high", "log", "step", "choices"}:
        raise ConfigError(
            f"expected {{low: A, high: B[, log: true][, step: S]}} or {{choices: [...]}}, found {short_repr(spec)}",
            **where,
            fix="e.g. {low: 1.0e-5, high: 1.0e-3, log: true}",
        )
    if "choices" in spec:
        choices = spec["choices"]
        if (
            set(spec) != {"choices"}
            or not isinstance(choices, list)
            or not choices
            or not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices)
        ):
            raise ConfigError(
                "choices: expected a non-empty list of numbers, strings, booleans or null (and no low/high beside it)",
                **where,
                fix="e.g. {choices: [16, 32]}",
            )
        if len({json.dumps(c) for c in choices}) < len(choices):
            raise ConfigError(f"choices {short_repr(choices)} repeat a value", **where, fix="list each value once.")
        return Param(key, "categorical", choices=choices)
    low, high, step = spec.get("low"), spec.get("high"), spec.get("step")
    numbers = [v for v in (low, high, step) if v is not None]
    if (
        low is None
        or high is None
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers)
    ):
        raise ConfigError(
            f"expected numbers low and high, found {short_repr(spec)}", **where, fix="e.g. {low: 0.0, high: 0.2}"
        )
    if not low < high:
        raise ConfigError(f"low ({low}) must be below high ({high})", **where, fix="swap them or widen the range.")
    log_scale = spec.get("log", False)
    if not isinstance(log_scale, bool) or (log_scale and low <= 0):
        raise ConfigError("log: expected true or false, and true only with low above 0", **where)
    if step is not None and (step <= 0 or log_scale):
        raise ConfigError("step: expected a number above 0, and not together with log: true", **where)
    return Param(key, "float", low=low, high=high, log=log_scale, step=step)


def _numeric_kind(key: str, param: Param, path: Path) -> str:
    """'int' or 'float', from the run config field's type: a float field searched over {low: 0, high: 1}
    must not be sampled as the integers 0 and 1."""
    node: Any = RunConfig
    for part in key.split("."):  # the key was checked against the config already: every part exists
        node = typing.get_type_hints(node)[part]
    options = typing.get_args(node) if typing.get_origin(node) in (typing.Union, types.UnionType) else (node,)
    if float in options:
        return "float"
    if int in options:
        if not all(isinstance(v, int) for v in (param.low, param.high, param.step) if v is not None):
            raise ConfigError(
                f"{key} takes whole numbers, but the range is {param.low}..{param.high}"
                f"{f' step {param.step}' if param.step else ''}",
                path=path,
                key=f"space.{key}",
                fix="give integer low/high (and step).",
            )
        return "int"
    raise ConfigError(
        f"{key} is not a number, so it has no range",
        path=path,
        key=f"space.{key}",
        fix="list its values instead: {choices: [...]}.",
    )


def _get_dotted(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _int(value: Any, path: Path, key: str, *, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"expected a whole number of at least {low}, found {short_repr(value)}", path=path, key=key)
    return value


def _named(raw: Any, kinds: dict[str, set[str]], path: Path, key: str) -> dict[str, Any]:
    """``{name: ..., option: ...}`` with only the options that ``name`` uses (an ignored one is refused)."""
    if not isinstance(raw, dict) or raw.get("name") not in kinds:
        raise ConfigError(
            f"expected {{name: {' | '.join(kinds)}, ...}}, found {short_repr(raw)}",
            path=path,
            key=key,
            fix=f"e.g. {key}: {{name: {next(iter(kinds))}}}",
        )
    extra = sorted(set(raw) - {"name"} - kinds[raw["name"]])
    if extra:
        raise ConfigError(
            f"{raw['name']} does not use {', '.join(extra)}",
            path=path,
            key=f"{key}.{extra[0]}",
            fix=f"options of {raw['name']}: {', '.join(sorted(kinds[raw['name']])) or 'none'}.",
        )
    for option in set(raw) - {"name"}:
        _int(raw[option], path, f"{key}.{option}", low=0)
    return dict(raw)


def yaml_value(value: Any) -> str:
    """An override's value as YAML (``1.0e-05``: PyYAML reads ``1e-05``, what ``str`` gives, as a string)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def param_overrides(params: dict[str, Any]) -> list[str]:
    return [f"{key}={yaml_value(value)}" for key, value in params.items()]


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
