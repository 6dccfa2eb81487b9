"""Listeners told of each evaluation the loop records: the one place a capability reacts to validation.

A module above the training layer (``tune/`` prunes hopeless trials with it) registers a listener for the
length of a run instead of editing the loop::

    with evaluation_listener(on_eval):
        train(cfg)

The loop calls every listener after an evaluation's checkpoint is saved, in its own thread, so what a listener
decides applies before the next batch: no polling, no race with a fast run. A listener stops the run by
raising :class:`StopTraining`, which the run folder records as ``interrupted`` (as Ctrl-C), so ``--resume``
continues from that checkpoint. With several processes every process calls its listeners; a listener that
stops the run must decide the same on each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

Listener = Callable[[list[dict[str, Any]], bool], None]
"""Called with the run's validation history so far (entries of epoch, step, train_loss, validation; the one just
recorded last, a resumed run's earlier ones before it) and whether that was the run's last evaluation."""

_listeners: list[Listener] = []


class StopTraining(KeyboardInterrupt):
    """Raised by a listener to stop the run as Ctrl-C would: the folder says ``interrupted``, resumable."""


@contextlib.contextmanager
def evaluation_listener(listener: Listener) -> Iterator[None]:
    """Call ``listener`` after each evaluation of the runs trained inside the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def announce_evaluation(history: list[dict[str, Any]], *, last: bool) -> None:
    """Tell the listeners (the loop's call, after the evaluation's checkpoint is written)."""
    for listener in list(_listeners):
        listener(history, last)
