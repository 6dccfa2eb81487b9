"""Record a stress test in the training run it came from: metrics.json's ``stress`` key, and what shows it.

    domainfit stress runs/x/model test.csv              # also fills runs/x/metrics.json "stress"
    domainfit stress runs/x/model test.csv --no-record  # leaves runs/x as it is

When the model folder is the ``model/`` folder of a training run (its parent holds ``metrics.json``,
``run.json`` and ``config.yaml``), the stress result (the same dict as ``stress.json``) replaces the
``stress`` key of the run's ``metrics.json``, and the model card (``model/README.md``), ``report.md`` and
``report.html`` are written again from ``metrics.json`` and ``config.yaml``, as the training run wrote them,
now with their robustness sections. Every file is written atomically (a kill leaves the old file or the new
one), and the run folder's lock is held from before the model is loaded to the last write, so a training run
or a second stress run cannot interleave with this one. A bare model folder is left alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domainfit.config.yaml_files import read_yaml_file
from domainfit.errors import ConfigError, DataError, DomainfitError
from domainfit.evaluation import report_for, run_report_arguments
from domainfit.io.atomic import write_text_atomic
from domainfit.io.disk import disk_full
from domainfit.io.run_folder import contained
from domainfit.training.run_dir import RunLock

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.json"
# a run folder is the model folder's parent holding all three (config.yaml: to rewrite the card and report)
RUN_FILES = (METRICS_NAME, "run.json", "config.yaml")
# the run's files that are written again (the images of report.md and report.html with it)
_REWRITTEN = (METRICS_NAME, "report.md", "report.html", "confusion_matrix.png", "reliability_diagram.png")
_CONFIG_KEYS = ("task", "model.name", "output.dir", "data.train", "train.best_metric")


@dataclass
class RunRecord:
    """A training run folder, locked, with the two files the record is made from.

    Attributes:
        folder: the run folder (``model_dir``'s parent).
        metrics: its ``metrics.json``.
        config: its ``config.yaml`` (the resolved config, as plain dicts).
    """

    folder: Path
    metrics: dict[str, Any]
    config: dict[str, Any]


def find_run_folder(model_dir: str | Path) -> Path | None:
    """The training run folder whose ``model/`` folder ``model_dir`` is, or ``None`` for a bare model folder.

    Raises:
        DomainfitError: one of the run's files is a link leading outside the run folder.
    """
    model = Path(model_dir).absolute()
    run = model.parent
    if model.name != "model" or not all((run / name).is_file() for name in RUN_FILES):
        return None
    for name in (*RUN_FILES, "model"):
        contained(run, name)  # a link out of the run folder is refused, never followed
    return run


@contextlib.contextmanager
def open_run_record(model_dir: str | Path, *, record: bool) -> Iterator[RunRecord | None]:
    """Lock and read the run folder around ``model_dir``, for the life of a stress command.

    Yields ``None`` (and logs why) with ``record=False`` or for a bare model folder: then nothing but the
    stress output is written. Run it before the model is loaded: a run folder in use or unreadable stops
    the command before the slow part.

    Args:
        model_dir: the model folder given to ``domainfit stress``.
        record: ``False`` for ``--no-record``.

    Raises:
        DomainfitError: another domainfit process holds the run folder, or it cannot be written.
        DataError: its ``metrics.json`` is not a JSON object.
        ConfigError: its ``config.yaml`` is not valid YAML.
    """
    if not record:
        log.info("--no-record: nothing is recorded in a run folder; only the stress output is written")
        yield None
        return
    run = find_run_folder(model_dir)
    if run is None:
        log.info(
            "%s is not the model/ folder of a training run (no %s beside it): nothing is recorded, "
            "only the stress output is written",
            model_dir,
            ", ".join(RUN_FILES),
        )
        yield None
        return
    lock = RunLock(run)
    try:
        lock.acquire()
    except ConfigError as e:  # its message speaks of training into the folder: say what stress needs
        raise DomainfitError(
            f"another domainfit process is writing to the run folder {run}; the stress "
            "results would be recorded into a run that is changing",
            path=run,
            fix="wait for it to finish, or add --no-record.",
        ) from e
    except OSError as e:
        raise DomainfitError(
            f"cannot lock the run folder to record the stress results: {e.strerror or e}",
            path=run,
            fix="make the run folder writable, or add --no-record.",
        ) from e
    try:
        yield RunRecord(run, _read_metrics(run), _read_config(run))
    finally:
        lock.release()


def record_stress(record: RunRecord, result: dict[str, Any], labels: list[str]) -> list[Path]:
    """Put ``result`` under ``stress`` in the run's metrics.json, and write the card and reports again.

    A previous ``stress`` entry is replaced, not merged: the record is the latest stress test.

    Args:
        record: the locked run (:func:`open_run_record`).
        result: the stress output (what ``stress.json`` holds).
        labels: the model's labels, in order (the model card lists them).

    Returns:
        The files written, metrics.json first.
    """
    try:
        return _record(record, result, labels)
    except OSError as e:  # a full disk or a read-only folder: one message, and each file is old or new
        full = disk_full(e, record.folder)
        raise DomainfitError(
            f"cannot record the stress results in the run: {full or e.strerror or e}; the "
            "stress output is written, and each file of the run is either as it was or "
            "rewritten whole",
            path=record.folder,
            fix="free some space or make the run folder writable, then stress again; or add --no-record.",
        ) from e


def _record(record: RunRecord, result: dict[str, Any], labels: list[str]) -> list[Path]:
    metrics = {**record.metrics, "stress": result}
    run, cfg = record.folder, record.config
    _remove_leftover_temp_files(run)
    written = [run / METRICS_NAME]
    write_text_atomic(contained(run, METRICS_NAME), json.dumps(metrics, indent=1, ensure_ascii=False))
    if not _is_training_run(metrics, cfg):  # a federated run's reports are its own: the numbers are recorded
        log.info(
            "%s is not a training run's metrics: the stress results are recorded there, the model card "
            "and reports are left as they are",
            run / METRICS_NAME,
        )
        return written
    presentation = report_for(cfg["task"])
    presentation.write_model_card(contained(run, "model"), cfg=cfg, results=metrics, labels=labels)
    final = metrics.get("test") or metrics["validation"]
    # the task argument is for reports that need the task object; text classification's does not
    presentation.write_report(None, run, final, **run_report_arguments(cfg, metrics))
    return [*written, run / "model" / "README.md", run / "report.md", run / "report.html"]


def _remove_leftover_temp_files(run: Path) -> None:
    """Remove the temp files of an atomic write that was killed (``kill -9``, a power cut) in this run folder.

    Only the files this command writes, and only under the run folder's lock: no other domainfit process
    can be writing one of them now, so each ``.<name>.<random>.tmp``
    (:func:`domainfit.io.atomic.write_atomic`) is a leftover. Temp folders (a killed ``model/`` write) are
    left to the training run's own recovery.
    """
    for folder, names in ((run, _REWRITTEN), (contained(run, "model"), ("README.md",))):
        for name in names:
            for path in folder.glob(f".{name}.*.tmp"):
                if path.is_file() and not path.is_symlink():
                    log.info("removing %s, left by a write that was killed", path)
                    path.unlink()


def _is_training_run(metrics: dict[str, Any], cfg: dict[str, Any]) -> bool:
    return (
        all(key in metrics for key in ("history", "warnings", "train"))
        and ("test" in metrics or "validation" in metrics)
        and isinstance(cfg.get("task"), str)
    )


def _read_metrics(run: Path) -> dict[str, Any]:
    path = contained(run, METRICS_NAME)
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        line = getattr(e, "lineno", None)
        raise DataError(
            f"the run's metrics.json is not valid JSON ({e})",
            path=run / METRICS_NAME,
            line=line,
            fix="restore it from a backup or train the run again; or add --no-record.",
        ) from e
    if not isinstance(metrics, dict):
        raise DataError(
            "the run's metrics.json is not a JSON object",
            path=run / METRICS_NAME,
            fix="restore it from a backup or train the run again; or add --no-record.",
        )
    return metrics


def _read_config(run: Path) -> dict[str, Any]:
    path = contained(run, "config.yaml")
    config = read_yaml_file(path)
    if not isinstance(config, dict):
        raise ConfigError(
            "the run's config.yaml is not a mapping of config keys",
            path=run / "config.yaml",
            fix="restore it from a backup or train the run again; or add --no-record.",
        )
    for dotted in _CONFIG_KEYS:  # what the card and the report are written from
        node: Any = config
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            raise ConfigError(
                "the run's config.yaml lacks a key the model card and report are written from",
                path=run / "config.yaml",
                key=dotted,
                fix="restore it from a backup or train the run again; or add --no-record.",
            )
    return config
