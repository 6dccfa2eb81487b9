"""Tasks: what is learned (text classification, ...), each a registered :class:`Task`."""

from domainfit.tasks import generation as _generation  # noqa: F401
from domainfit.tasks import image_classification as _image_classification  # noqa: F401
from domainfit.tasks import multi_label_classification as _multi_label_classification  # noqa: F401

# Import for registration side effects.
from domainfit.tasks import text_classification as _text_classification  # noqa: F401
from domainfit.tasks import token_classification as _token_classification  # noqa: F401
from domainfit.tasks.base import TASKS, Features, Task, TaskData, create_task

__all__ = ["TASKS", "Features", "Task", "TaskData", "create_task", "load_run_config"]


def load_run_config(path, overrides=None):
    """Load a run config (:func:`domainfit.config.load_config`) and check it against its task's contract:
    every option the task would ignore is refused, naming the key. What the CLI and pipelines call."""
    from pathlib import Path

    from domainfit.config import load_config

    cfg = load_config(path, overrides)
    create_task(cfg.task).check_config(cfg, Path(path) if path is not None else None)
    return cfg
