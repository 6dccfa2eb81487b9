"""Tasks: what is learned (text classification, ...), each a registered :class:`Task`."""

from domainfit.tasks.base import TASKS, Features, Task, TaskData, create_task

# Import for registration side effects.
from domainfit.tasks import text_classification as _text_classification  # noqa: F401
from domainfit.tasks import multi_label_classification as _multi_label_classification  # noqa: F401
from domainfit.tasks import generation as _generation  # noqa: F401
from domainfit.tasks import token_classification as _token_classification  # noqa: F401
from domainfit.tasks import image_classification as _image_classification  # noqa: F401

__all__ = ["TASKS", "Features", "Task", "TaskData", "create_task"]
