"""The output folder of a run: one writer at a time, refuse to clobber a finished run, record config/version/seed,
mark status (running -> finished, or failed / interrupted).

    <output>/
      config.yaml   resolved config          run.json    version, git hash, seed, precision, status, lineage
      checkpoints/  resumable state + best   tensorboard/
      model/        shippable HF folder      metrics.json, report.md, confusion_matrix.png
      .lock         held (flock) by the process writing the folder, for the run's whole life

:func:`open_run_folder` wraps a run: it takes the lock (a second run into the same folder is refused at once;
a lock left by a dead process is released by the OS, so it never blocks), checks the folder, and records
``failed`` or ``interrupted`` in run.json when the run ends by an exception, Ctrl-C or SIGTERM. A kill -9
cannot be recorded; the next command sees ``running`` with no lock holder and reports an interrupted run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from domainfit.config import RunConfig, dump_yaml
from domainfit.errors import ConfigError, DomainfitError
from domainfit.io.atomic import recover_dir, write_text_atomic
from domainfit.io.run_folder import contained
from domainfit.training.distributed import on_main_process
from domainfit.version import __version__

log = logging.getLogger(__name__)


def git_revision() -> str | None:
    """The git hash of the domainfit checkout, if running from one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


LOCK_NAME = ".lock"


def read_status(out: Path) -> dict[str, Any] | None:
    """run.json of the run in ``out`` (None when there is none, or it is unreadable or not a JSON object)."""
    path = Path(out) / "run.json"
    if not path.is_file():
        return None
    try:
        status = json.loads(contained(out, "run.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return status if isinstance(status, dict) else None


class RunLock:
    """An exclusive ``flock`` on ``<out>/.lock`` for the life of a run; refused at once if another process holds it.

    The OS drops the lock when its process dies (even by kill -9), so a stale lock never blocks a later run.
    """

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / LOCK_NAME
        self._file = None

    def acquire(self) -> None:
        import fcntl  # POSIX; domainfit's training commands run on Linux and macOS

        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115  held open for the run's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            handle.seek(0)
            holder = handle.read().strip()[:200] or "another process"
            handle.close()
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise ConfigError(
                f"another domainfit run is writing to this folder ({holder}); two runs into one "
                "folder would overwrite each other's checkpoints and weights",
                path=self.path.parent,
                key="output.dir",
                fix="wait for it to finish, or give this run another output.dir.",
            ) from e
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {platform.node()}, since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock; the file stays (deleting it would race)
            self._file = None


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM during a run: unwound like Ctrl-C so run.json records ``interrupted``."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise RunInterrupted(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _create_folder(out: Path) -> bool:
    """Create ``out`` (and parents); returns whether it was new. An unusable place is a ConfigError."""
    existed = out.is_dir()
    if out.exists() and not existed:
        raise ConfigError(
            "output.dir is a file, not a folder", path=out, key="output.dir", fix="choose a folder path for output.dir."
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"cannot write to the output folder: {e.strerror or e}",
            path=out,
            key="output.dir",
            fix="choose a folder you can write to (not under /proc, /sys or a read-only mount), with free space.",
        ) from e
    return not existed


@contextlib.contextmanager
def open_run_folder(cfg: Any, *, resume: bool) -> Iterator[Path]:
    """Lock ``cfg.output.dir`` for this run, check it (:func:`prepare_run_dir`), and record how the run ended.

    Yields the folder. Nothing but the lock file is written here; if the run fails before :func:`start_run`
    in a folder this call created, the folder is removed again, so a bad config or data file leaves no trace.
    With several processes only the main one creates, locks and checks the folder; the others wait for it
    and stop with its error (``training/distributed.py``).
    """
    out = Path(cfg.output.dir)
    held: dict[str, Any] = {}  # what the main process took: the lock, and whether it made the folder / lock file
    try:
        on_main_process(_take_folder, cfg, out, held, resume=resume)
        with _sigterm_as_interrupt():
            yield out
    except BaseException as e:
        if held:
            _record_end(out, "interrupted" if isinstance(e, KeyboardInterrupt) else "failed", e)
        raise
    finally:
        lock = held.get("lock")
        if lock is not None:
            lock.release()
            if held["created"] and {p.name for p in out.iterdir()} <= {LOCK_NAME}:
                shutil.rmtree(out, ignore_errors=True)
            elif held["lock_created"] and not (out / "run.json").exists():
                lock.path.unlink(missing_ok=True)  # a refused run leaves a folder as it found it


def _take_folder(cfg: Any, out: Path, held: dict[str, Any], *, resume: bool) -> None:
    """Create (if new), lock and check the run folder, noting in ``held`` what to undo if the run fails."""
    held["created"] = _create_folder(out)
    lock = RunLock(out)
    held["lock_created"] = not lock.path.exists()
    held["lock"] = lock
    lock.acquire()
    prepare_run_dir(cfg, resume=resume)


def _record_end(out: Path, status: str, error: BaseException) -> None:
    """Mark a started run (run.json says running) as failed / interrupted; best effort, never masks ``error``."""
    info = read_status(out)
    if not info or info.get("status") != "running" or info.get("pid") != os.getpid():
        return
    reason = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    info.update(
        {
            "status": status,
            "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "error": reason
            if isinstance(error, DomainfitError) or status == "interrupted"
            else f"{type(error).__name__}: {reason}",
        }
    )
    with contextlib.suppress(OSError):
        write_text_atomic(out / "run.json", json.dumps(info, indent=1, ensure_ascii=False))


def prepare_run_dir(cfg: RunConfig, *, resume: bool) -> Path:
    """Check the output folder can be used for this run (call before any heavy work)."""
    out = Path(cfg.output.dir)
    recover_dir(out / "model")
    status = read_status(out)
    if resume:
        if status is None:
            raise ConfigError(
                "nothing to resume: no run has been started in this folder",
                path=out,
                key="output.dir",
                fix="run without --resume, or point output.dir at the interrupted run.",
            )
        if status.get("status") == "finished":
            raise ConfigError(
                "this run already finished; there is nothing to resume",
                path=out,
                key="output.dir",
                fix="set output.overwrite=true to train again here, or choose another output.dir.",
            )
        return out
    if status is not None and not cfg.output.overwrite:
        state = status.get("status")
        if state == "running":
            state = "interrupted (its process is gone)"  # the caller holds the lock, so nobody else runs it
        fix = (
            "add --resume to continue it, or " if state != "finished" else ""
        ) + "set output.overwrite=true to replace it, or choose another output.dir."
        raise ConfigError(f"this folder already holds a {state} run", path=out, key="output.dir", fix=fix)
    if out.exists() and status is None and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise ConfigError(
            "the output folder exists and holds files that are not a domainfit run",
            path=out,
            key="output.dir",
            fix="choose an empty or new output.dir.",
        )
    return out


def has_checkpoint(out: Path) -> bool:
    """Whether the run folder holds a complete resumable checkpoint (a step folder with its state.json)."""
    return any((p / "state.json").is_file() for p in (out / "checkpoints").glob("step-*"))


def resume_or_restart(out: Path, resume: bool, cfg: Any) -> bool:
    """``resume``, unless the interrupted run died before its first checkpoint: then its partial folders are
    cleared and it starts again from step 0 (returns False), so ``--resume`` after any crash just works.
    A run that does resume must do so under the settings it started with (:func:`check_resume_config`).
    Decided by the main process, for all."""
    return on_main_process(_resume_or_restart, out, resume, cfg)


def _resume_or_restart(out: Path, resume: bool, cfg: Any) -> bool:
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
RESUME_FREE_KEYS = (
    "output.",
    "train.num_threads",
    "train.log_every",
    "train.save_every",
    "train.eval_batch_size",
    "train.eval_batch_tokens",
    "train.release_memory_every",
    "train.mmap_threshold_mb",
    "train.epochs",
    "train.early_stopping_patience",
)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resume_config(out: Path, cfg: Any, *, command: str | None = None) -> None:
    """Refuse to resume a run under settings other than those it started with.

    The saved ``config.yaml`` is the run's resolved config. A resumed run regenerates its batch order and
    schedule from the config, so a changed learning rate, batching or data setting (whether from the command
    line or from a newer domainfit's defaults) would silently make another run. Keys the saved config lacks
    (settings newer than the run) are logged and take their defaults. ``command`` is the one the error suggests
    (default: ``domainfit train <out>/config.yaml --resume``).
    """
    if not (out / "config.yaml").is_file():
        return  # a run from before config.yaml was written: nothing to compare
    command = command or f"domainfit train {out / 'config.yaml'} --resume"
    changed = changed_settings(out / "config.yaml", yaml.safe_load(dump_yaml(cfg)), RESUME_FREE_KEYS)
    if changed:
        raise ConfigError(
            "the run started with other settings than these, so resuming would mix two runs: " + "; ".join(changed),
            path=out / "config.yaml",
            fix=f"resume with the settings it started with: `{command}` (its saved, resolved config), or start "
            "afresh with output.overwrite=true.",
        )


def changed_settings(saved_file: Path, now: dict[str, Any], free: tuple[str, ...]) -> list[str]:
    """What differs between the settings a run saved (``saved_file``, YAML) and ``now``, one line per dotted key:
    ``"key: <then> then, <now> now"``; keys starting with one of ``free`` may change. An unreadable file (a run
    from before it was written) compares as equal; keys it lacks (settings newer than the run) are logged and
    take their current values."""
    try:
        saved = _flatten(yaml.safe_load(saved_file.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError):
        return []  # no readable record: nothing to compare
    now = _flatten(now)
    compared = [k for k in now if not k.startswith(free)]
    new = [k for k in compared if k not in saved]
    if new:
        log.warning(
            "%s started under an older domainfit without %s; they take their current values",
            saved_file.parent,
            ", ".join(f"{k}={now[k]!r}" for k in new),
        )
    return [f"{k}: {saved[k]!r} then, {now[k]!r} now" for k in compared if k in saved and saved[k] != now[k]]


def start_run(out: Path, cfg: RunConfig, *, resume: bool, extra: dict[str, Any]) -> None:
    """Create the folder and write config.yaml and run.json (status: running); by the main process only."""
    on_main_process(_start_run, out, cfg, resume=resume, extra=extra)


def _start_run(out: Path, cfg: RunConfig, *, resume: bool, extra: dict[str, Any]) -> None:
    if not resume and cfg.output.overwrite:
        for sub in ("checkpoints", "tensorboard"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", dump_yaml(cfg))
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    info = read_status(out) if resume else None
    if info is None:
        info = {"started": now}
    else:  # how the previous part of the run ended, and what ran it: a run resumed under a newer domainfit says so
        previous = {"resumed": now, "after": info.get("status"), "ended": info.get("ended"), "error": info.get("error")}
        previous.update({key: info.get(key) for key in ("domainfit_version", "git")})
        info["resumptions"] = [*info.get("resumptions", []), previous]
    for key in ("ended", "error"):
        info.pop(key, None)
    info.update(
        {
            "status": "running",
            "pid": os.getpid(),
            "domainfit_version": __version__,
            "git": git_revision(),
            "seed": cfg.train.seed,
            "python": platform.python_version(),
            **extra,
        }
    )
    write_text_atomic(out / "run.json", json.dumps(info, indent=1, ensure_ascii=False))


def finish_run(out: Path, **extra: Any) -> None:
    info = read_status(out) or {}
    info.pop("pid", None)
    info.update({"status": "finished", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra})
    write_text_atomic(out / "run.json", json.dumps(info, indent=1, ensure_ascii=False))
