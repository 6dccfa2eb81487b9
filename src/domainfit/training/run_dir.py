"""The output folder of a run: refuse to clobber a finished run, record config/version/seed, mark status.

    <output>/
      config.yaml   resolved config          run.json    version, git hash, seed, status, lineage
      checkpoints/  resumable state + best   tensorboard/
      model/        shippable HF folder      metrics.json, report.md, confusion_matrix.png
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from domainfit import __version__
from domainfit.config import RunConfig, dump_yaml
from domainfit.errors import ConfigError
from domainfit.training.atomic import recover_dir, write_text_atomic

log = logging.getLogger(__name__)


def git_revision() -> str | None:
    """The git hash of the domainfit checkout, if running from one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def read_status(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def prepare_run_dir(cfg: RunConfig, *, resume: bool) -> Path:
    """Check the output folder can be used for this run (call before any heavy work)."""
    out = Path(cfg.output.dir)
    recover_dir(out / "model")
    status = read_status(out)
    if resume:
        if status is None:
            raise ConfigError("nothing to resume: no run has been started in this folder", path=out, key="output.dir",
                              fix="run without --resume, or point output.dir at the interrupted run.")
        if status.get("status") == "finished":
            raise ConfigError("this run already finished; there is nothing to resume", path=out, key="output.dir",
                              fix="set output.overwrite=true to train again here, or choose another output.dir.")
        return out
    if status is not None and not cfg.output.overwrite:
        state = status.get("status")
        fix = ("add --resume to continue it, or " if state != "finished" else "") + \
            "set output.overwrite=true to replace it, or choose another output.dir."
        raise ConfigError(f"this folder already holds a {state} run", path=out, key="output.dir", fix=fix)
    if out.exists() and status is None and any(out.iterdir()):
        raise ConfigError("the output folder exists and holds files that are not a domainfit run", path=out,
                          key="output.dir", fix="choose an empty or new output.dir.")
    return out


def has_checkpoint(out: Path) -> bool:
    """Whether the run folder holds a complete resumable checkpoint (a step folder with its state.json)."""
    return any((p / "state.json").is_file() for p in (out / "checkpoints").glob("step-*"))


def resume_or_restart(out: Path, resume: bool, cfg: Any) -> bool:
    """``resume``, unless the interrupted run died before its first checkpoint: then its partial folders are
    cleared and it starts again from step 0 (returns False), so ``--resume`` after any crash just works.
    A run that does resume must do so under the settings it started with (:func:`check_resume_config`)."""
    if not resume:
        return False
    if has_checkpoint(out):
        check_resume_config(out, cfg)
        return True
    log.warning("%s: the run stopped before its first checkpoint; starting it again from step 0", out)
    for sub in ("checkpoints", "tensorboard"):
        shutil.rmtree(out / sub, ignore_errors=True)
    return False


# Settings that may change between a run and its resumption: where it writes, how fast or how often it reports,
# and how long it goes on (more epochs continue a finished-early run; its lr schedule is stretched to the new end).
RESUME_FREE_KEYS = ("output.", "train.num_threads", "train.log_every", "train.save_every", "train.eval_batch_size",
                    "train.eval_batch_tokens", "train.release_memory_every", "train.mmap_threshold_mb", "train.epochs",
                    "train.early_stopping_patience")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resume_config(out: Path, cfg: Any) -> None:
    """Refuse to resume a run under settings other than those it started with.

    The saved ``config.yaml`` is the run's resolved config. A resumed run regenerates its batch order and
    schedule from the config, so a changed learning rate, batching or data setting (whether from the command
    line or from a newer domainfit's defaults) would silently make another run. Keys the saved config lacks
    (settings newer than the run) are logged and take their defaults.
    """
    try:
        saved = _flatten(yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError):
        return  # no readable record (a run from before config.yaml was written): nothing to compare
    now = _flatten(yaml.safe_load(dump_yaml(cfg)))
    free = lambda key: key.startswith(RESUME_FREE_KEYS)  # noqa: E731
    changed = [f"{k}: {saved[k]!r} then, {now[k]!r} now" for k in now if k in saved and saved[k] != now[k] and not free(k)]
    if changed:
        raise ConfigError("the run started with other settings than these, so resuming would mix two runs: "
                          + "; ".join(changed), path=out / "config.yaml",
                          fix=f"resume with the settings it started with: `domainfit train {out / 'config.yaml'} "
                              "--resume` (its saved, resolved config), or start afresh with output.overwrite=true.")
    new = [k for k in now if k not in saved and not free(k)]
    if new:
        log.warning("%s started under an older domainfit without %s; they take their current values", out,
                    ", ".join(f"{k}={now[k]!r}" for k in new))


def start_run(out: Path, cfg: RunConfig, *, resume: bool, extra: dict[str, Any]) -> None:
    """Create the folder and write config.yaml and run.json (status: running)."""
    if not resume and cfg.output.overwrite:
        for sub in ("checkpoints", "tensorboard"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", dump_yaml(cfg))
    info = read_status(out) if resume else None
    if info is None:
        info = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    info.update({"status": "running", "domainfit_version": __version__, "git": git_revision(),
                 "seed": cfg.train.seed, "python": platform.python_version(), **extra})
    write_text_atomic(out / "run.json", json.dumps(info, indent=1, ensure_ascii=False))


def finish_run(out: Path, **extra: Any) -> None:
    info = read_status(out) or {}
    info.update({"status": "finished", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra})
    write_text_atomic(out / "run.json", json.dumps(info, indent=1, ensure_ascii=False))
