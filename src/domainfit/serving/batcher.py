"""Dynamic micro-batching: requests that arrive together are run together, on one worker thread.

The HTTP server (:mod:`domainfit.serving.server`) hands each request's items to :meth:`MicroBatcher.submit`
and waits on the returned future. The worker takes the oldest request, waits at most ``max_wait_ms`` (counted
from that request's arrival) for more, and runs up to ``max_batch_size`` items in one ``predict`` call, so
the model sees batches, which are several times faster per text than single texts on CPU
(``benchmarks/bench_inference.py``). Each request gets its own slice of the results back, in order.

One worker thread, not a pool: the model's own kernels already use every core, and a second concurrent
forward pass would only make both slower.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The queue already holds ``max_queue`` requests; the caller should answer 429 and retry later."""


class BatcherClosedError(Exception):
    """The batcher is shutting down and takes no new requests."""


@dataclass
class BatchResult:
    """What one request gets back: its own results, in the order of its items, and the batch it ran in."""

    results: list[Any]
    batch_size: int  # items in the whole batch this request was part of


@dataclass
class _Job:
    items: list[Any]
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Queues requests and runs them in batches on one worker thread.

    Args:
        predict: the model call; takes a list of items and returns one result per item, in order.
        max_batch_size: most items in one ``predict`` call. A single request with more items runs alone.
        max_wait_ms: how long the oldest waiting request may wait for others to join its batch.
        max_queue: most requests waiting (not yet running); :meth:`submit` raises QueueFullError beyond it.
        on_batch: called after each batch with its number of items (for metrics).
    """

    def __init__(
        self,
        predict: Callable[[list[Any]], Sequence[Any]],
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue: int = 256,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._pending: collections.deque[_Job] = collections.deque()
        self._pending_items = 0
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="domainfit-batcher", daemon=True)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the worker (the batch being run is not counted)."""
        return len(self._pending)

    def start(self) -> None:
        """Start the worker thread (requests submitted before wait for it)."""
        self._thread.start()

    def submit(self, items: Sequence[Any]) -> Future:
        """Queue one request's items; the future resolves to a :class:`BatchResult` (or the model's error).

        Raises:
            QueueFullError: ``max_queue`` requests are already waiting.
            BatcherClosedError: :meth:`close` has been called.
        """
        job = _Job(list(items))
        with self._cond:
            if self._closed:
                raise BatcherClosedError("the server is shutting down")
            if len(self._pending) >= self.max_queue:
                raise QueueFullError(f"{len(self._pending)} requests are already waiting (the limit)")
            self._pending.append(job)
            self._pending_items += len(job.items)
            self._cond.notify()
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Take no new requests, run those already queued, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _next_batch(self) -> list[_Job] | None:
        """Block until there is work; then the jobs of the next batch (None once closed and drained)."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            # wait for company only while the batch is not full; the deadline counts from the oldest
            # request's arrival, so a request that already waited behind a busy worker is not held again
            deadline = self._pending[0].arrived + self.max_wait_s
            while self._pending_items < self.max_batch_size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            jobs = [self._pending.popleft()]
            size = len(jobs[0].items)
            while self._pending and size + len(self._pending[0].items) <= self.max_batch_size:
                size += len(self._pending[0].items)
                jobs.append(self._pending.popleft())
            self._pending_items -= size
            return jobs

    def _work(self) -> None:
        while (jobs := self._next_batch()) is not None:
            # a request whose client went away (its future cancelled) is not run
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if jobs:
                self._run(jobs)

    def _run(self, jobs: list[_Job]) -> None:
        items = [item for job in jobs for item in job.items]
        try:
            results = list(self._predict(items))
            if len(results) != len(items):
                raise RuntimeError(f"predict returned {len(results)} results for {len(items)} items")
        except Exception as e:  # noqa: BLE001 - handed to the waiting request(s), not swallowed
            if len(jobs) == 1:
                jobs[0].future.set_exception(e)
                return
            # one request's input broke the batch: rerun each alone, so only that request gets the error
            for job in jobs:
                self._run_alone(job)
            return
        if self._on_batch is not None:
            self._on_batch(len(items))
        start = 0
        for job in jobs:
            job.future.set_result(BatchResult(results[start : start + len(job.items)], len(items)))
            start += len(job.items)

    def _run_alone(self, job: _Job) -> None:
        try:
            results = list(self._predict(job.items))
        except Exception as e:  # noqa: BLE001 - handed to the waiting request
            job.future.set_exception(e)
            return
        if self._on_batch is not None:
            self._on_batch(len(job.items))
        job.future.set_result(BatchResult(results, len(job.items)))
