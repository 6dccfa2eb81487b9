"""Running a study: trials as run folders, pruning on each evaluation (a training-events listener), the SQLite
study that a rerun continues, the best config and its retraining."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import yaml

from domainfit.config import dump_yaml
from domainfit.errors import ConfigError, DomainfitError
from domainfit.io.atomic import write_text_atomic
from domainfit.io.run_folder import contained
from domainfit.training.events import StopTraining, evaluation_listener
from domainfit.training.run_dir import RESUME_FREE_KEYS, RunLock, read_status
from domainfit.tune.config import TuneConfig, import_optuna, is_number, param_overrides
from domainfit.tune.report import format_tune_report, format_verdict, plot_study

log = logging.getLogger(__name__)

STUDY_NAME = "domainfit-tune"
# Settings a rerun may change without mixing two studies: where runs write and how fast they report (the
# run folder's own list, less the keys that change what a trial trains).
_RERUN_FREE_KEYS = tuple(k for k in RESUME_FREE_KEYS if k not in ("train.epochs", "train.early_stopping_patience"))


def run_tune(cfg: TuneConfig, *, retrain: bool = True) -> dict[str, Any]:
    """Run (or continue) the study, write best.yaml, retrain it (unless ``retrain`` is False), and report.

    Returns:
        The summary written to ``tune.json``: trials, default and best validation scores, the retrained
        best's metrics.
    """
    optuna = import_optuna()
    out = Path(cfg.output_dir)
    _check_output_dir(out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out)
    try:
        lock.acquire()
    except ConfigError as e:
        raise ConfigError(
            "another domainfit tune is running this study",
            path=out,
            key="output_dir",
            fix="wait for it, or give this one another output_dir.",
        ) from e
    try:
        study = _open_study(optuna, cfg, out)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            # we hold the lock, so a running trial belongs to a killed command: carry on from its checkpoint
            log.info("tune: resuming trial %d, interrupted by the last run", trial.number)
            _run_trial(study, optuna.trial.Trial(study, trial._trial_id), cfg, out)
        while len(_done(study, optuna)) < cfg.trials:
            _run_trial(study, study.ask(), cfg, out)
        summary = _finish(study, optuna, cfg, out, retrain=retrain)
    finally:
        lock.release()
    return summary


def _check_output_dir(out: Path, cfg: TuneConfig) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(
            "output_dir is a file, not a folder", path=out, key="output_dir", fix="choose a folder path for output_dir."
        )
    if (out / "trials").is_dir() and any((out / "trials").iterdir()) and not (out / "study.db").is_file():
        raise ConfigError(
            "output_dir holds trial folders but no study.db, so the study they belong to is lost",
            path=out,
            key="output_dir",
            fix="choose another output_dir (or delete this one).",
        )


def _settings(cfg: TuneConfig) -> dict[str, Any]:
    """What makes two runs of ``domainfit tune`` the same study (compared when one continues another)."""
    from domainfit.tasks import load_run_config

    run_config = yaml.safe_load(dump_yaml(load_run_config(cfg.config, cfg.overrides)))
    flat = {k: v for k, v in _flatten(run_config).items() if not k.startswith(_RERUN_FREE_KEYS)}
    return {
        "run_config": flat,
        "metric": cfg.metric,
        "space": {
            k: {"kind": p.kind, "low": p.low, "high": p.high, "log": p.log, "step": p.step, "choices": p.choices}
            for k, p in cfg.space.items()
        },
        "sampler": cfg.sampler,
        "pruner": cfg.pruner,
        "enqueue": cfg.enqueue,
    }


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _open_study(optuna: Any, cfg: TuneConfig, out: Path) -> Any:
    from sqlalchemy.exc import SQLAlchemyError

    db = out / "study.db"
    if cfg.sampler["name"] == "tpe":
        sampler = optuna.samplers.TPESampler(
            seed=cfg.sampler["seed"], n_startup_trials=cfg.sampler.get("startup_trials", 10)
        )
    else:
        sampler = optuna.samplers.RandomSampler(seed=cfg.sampler["seed"])
    if cfg.pruner["name"] == "median":
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=cfg.pruner["startup_trials"], n_warmup_steps=cfg.pruner["warmup_evals"]
        )
    else:
        pruner = optuna.pruners.NopPruner()
    settings = json.loads(json.dumps(_settings(cfg)))  # as it reads back from the database
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}")
        direction = "maximize" if cfg.direction == "max" else "minimize"
        study = optuna.create_study(
            storage=storage,
            study_name=STUDY_NAME,
            load_if_exists=True,
            sampler=sampler,
            pruner=pruner,
            direction=direction,
        )
    except (SQLAlchemyError, RuntimeError, ValueError) as e:  # not a database, or one from another optuna
        raise DomainfitError(
            f"cannot open the study database ({type(e).__name__}: {str(e)[:300]})",
            path=db,
            fix="delete it to start afresh, or choose another output_dir.",
        ) from e
    saved = study.user_attrs.get("domainfit_tune")
    if (saved is None and study.trials) or (saved is not None and saved != settings):
        changed = sorted(k for k in settings if (saved or {}).get(k) != settings[k])
        if "run_config" in changed:
            keys = sorted(
                k
                for k in set(settings["run_config"]) | set((saved or {}).get("run_config", {}))
                if (saved or {}).get("run_config", {}).get(k) != settings["run_config"].get(k)
            )
            changed[changed.index("run_config")] = f"run config ({', '.join(keys[:5])})"
        raise ConfigError(
            f"this study was started under other settings ({', '.join(changed) or 'unknown'}); "
            "continuing it would mix two searches",
            path=db,
            key="output_dir",
            fix="rerun with the settings it started with, or give the new search another output_dir.",
        )
    if saved is None:
        study.set_user_attr("domainfit_tune", settings)
    if not study.trials:
        # trial 0: the run config as it is
        study.enqueue_trial(cfg.default_params, user_attrs={"default": True})
        for point in cfg.enqueue:
            study.enqueue_trial(point)
    return study


def _done(study: Any, optuna: Any) -> list[Any]:
    states = optuna.trial.TrialState
    return study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.FAIL))


def _run_trial(study: Any, trial: Any, cfg: TuneConfig, out: Path) -> None:
    """Train one trial's run folder, reporting each evaluation; tell Optuna how it ended."""
    from domainfit.tasks import load_run_config
    from domainfit.training import train

    optuna = import_optuna()
    params = {key: param.suggest(trial) for key, param in cfg.space.items()}
    run_dir = out / "trials" / f"{trial.number:03d}"
    try:
        run_cfg = load_run_config(cfg.config, [*cfg.overrides, *param_overrides(params), f"output.dir={run_dir}"])
    except ConfigError as e:  # a combination the run config's cross-field checks refuse: a point to avoid
        log.warning("tune: trial %d is not a valid run config, skipped: %s", trial.number, e)
        trial.set_user_attr("error", str(e))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    trial.set_user_attr("run_dir", str(run_dir))
    status = read_status(run_dir)
    pruning = _PruningListener(trial, cfg, prune=cfg.pruner["name"] != "none")
    if not (status and status.get("status") == "finished" and (run_dir / "metrics.json").is_file()):
        log.info("tune: trial %d %s -> %s", trial.number, params, run_dir)
        try:
            with evaluation_listener(pruning):
                train(run_cfg, resume=status is not None)
        except StopTraining:  # raised by the listener: the run folder says interrupted, its checkpoint kept
            log.info("tune: trial %d pruned at evaluation %d", trial.number, len(pruning.reported))
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return
        # the user's Ctrl-C (KeyboardInterrupt) goes up: the trial stays running, the next command resumes it
    results = json.loads(contained(out, run_dir.relative_to(out), "metrics.json").read_text(encoding="utf-8"))
    pruning.report_history(results.get("history") or [])
    value = (results.get("validation") or {}).get(cfg.metric)
    if not is_number(value):
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        scores = ", ".join(k for k, v in results["validation"].items() if is_number(v))
        raise ConfigError(
            f"the run's validation scores hold no {cfg.metric!r}",
            path=cfg.source,
            key="metric",
            fix=f"choose one of: {scores}.",
        )
    trial.set_user_attr("validation", {k: v for k, v in results["validation"].items() if is_number(v)})
    study.tell(trial, float(value))
    log.info(
        "tune: trial %d: validation %s %.4f (best so far: trial %d, %.4f)",
        trial.number,
        cfg.metric,
        value,
        study.best_trial.number,
        study.best_value,
    )


class _PruningListener:
    """Reports each evaluation of a trial's run to Optuna (step = its 1-based number) and stops the run, from
    the loop's own thread right after the evaluation's checkpoint, when the pruner says so."""

    def __init__(self, trial: Any, cfg: TuneConfig, *, prune: bool) -> None:
        self.trial, self.cfg, self.prune = trial, cfg, prune
        self.reported = set(trial.storage.get_trial(trial._trial_id).intermediate_values)  # a resumed trial's

    def __call__(self, history: list[dict[str, Any]], last: bool) -> None:
        self.report_history(history)
        # the last evaluation is the end of training: nothing left to save by stopping
        if self.prune and not last and self.trial.should_prune():
            raise StopTraining(f"tune: trial {self.trial.number} pruned by the {self.cfg.pruner['name']} pruner")

    def report_history(self, history: list[dict[str, Any]]) -> None:
        """Report the evaluations of ``history`` (a run's, in order) not yet reported."""
        for number, entry in enumerate(history, start=1):
            value = (entry.get("validation") or {}).get(self.cfg.metric)
            if number in self.reported or not is_number(value) or not math.isfinite(value):
                continue
            self.trial.report(float(value), number)
            self.reported.add(number)


# --------------------------------------------------------------------------------------------------------
# Best config, retraining, report


def _finish(study: Any, optuna: Any, cfg: TuneConfig, out: Path, *, retrain: bool) -> dict[str, Any]:
    from domainfit.tasks import load_run_config
    from domainfit.training import train

    states = optuna.trial.TrialState
    complete = study.get_trials(deepcopy=False, states=(states.COMPLETE,))
    if not complete:
        raise DomainfitError(
            "no trial completed, so there is no best config",
            path=out / "study.db",
            fix="see the failed trials' run folders under trials/, fix the cause, run again.",
        )
    best = study.best_trial
    default = next((t for t in study.trials if t.number == 0), None)
    best_cfg = load_run_config(
        cfg.config, [*cfg.overrides, *param_overrides(best.params), f"output.dir={out / 'best'}"]
    )
    write_text_atomic(
        out / "best.yaml", f"# domainfit tune: trial {best.number} of {cfg.source}\n" + dump_yaml(best_cfg)
    )
    retrained = None
    if retrain:
        best_cfg = load_run_config(out / "best.yaml")
        status = read_status(out / "best")
        finished = status and status.get("status") == "finished" and (out / "best" / "metrics.json").is_file()
        same = (out / "best" / "config.yaml").is_file() and _same_run(out / "best" / "config.yaml", best_cfg)
        if not (finished and same):
            log.info("tune: retraining the best config (trial %d) -> %s", best.number, out / "best")
            best_cfg.output.overwrite = status is not None and not same  # an earlier best of a shorter study
            train(best_cfg, resume=status is not None and same)
        retrained = json.loads(contained(out, "best", "metrics.json").read_text(encoding="utf-8"))
    summary = {
        "config": cfg.config,
        "overrides": cfg.overrides,
        "metric": cfg.metric,
        "direction": cfg.direction,
        "sampler": cfg.sampler,
        "pruner": cfg.pruner,
        "space": {k: p.describe() for k, p in cfg.space.items()},
        "trials": [
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": t.params,
                "evaluations": len(t.intermediate_values),
                "run_dir": t.user_attrs.get("run_dir"),
            }
            for t in study.trials
            if t.state != states.WAITING
        ],
        "default": ({"number": 0, "state": default.state.name.lower(), "value": default.value} if default else None),
        "best": {"number": best.number, "value": best.value, "params": best.params},
        "retrained": {k: retrained.get(k) for k in ("validation", "test")} if retrained else None,
    }
    summary["plots"], summary["importances"] = plot_study(study, optuna, cfg, out)
    write_text_atomic(out / "tune.json", json.dumps(summary, indent=1, ensure_ascii=False))
    write_text_atomic(out / "report.md", format_tune_report(summary))
    print(format_verdict(summary))
    return summary


def _same_run(saved_config: Path, cfg: Any) -> bool:
    saved = _flatten(yaml.safe_load(saved_config.read_text(encoding="utf-8")) or {})
    now = _flatten(yaml.safe_load(dump_yaml(cfg)))
    return {k: v for k, v in saved.items() if not k.startswith("output.")} == {
        k: v for k, v in now.items() if not k.startswith("output.")
    }
