"""``domainfit serve --workers N``: N server processes answering on one listening socket (pre-fork, as gunicorn).

    domainfit serve runs/phrasebank/model --workers 2

Why: one server process parses every request's HTTP and JSON on its one event-loop thread while the model runs
on the others, and the two contend for the same cores; N processes, each with its own model, batcher and
``cores // N`` model threads (unless ``--threads`` says otherwise), keep every core busy. The parent binds the
port once (a busy port fails at once, as with one worker) and starts the workers (``spawn``: fresh
interpreters, nothing of the parent's threads or PyTorch state is copied), each of which loads the model and
listens on its own socket bound to that port with SO_REUSEPORT: the kernel spreads new connections evenly over
the workers. (One shared listening socket would not: the first worker to wake accepts every connection waiting,
so the clients that connect together all land on one worker, for the life of their keep-alive connections.)
Where SO_REUSEPORT is missing, the workers share the parent's socket.

The parent logs one ``listening`` line when every worker has loaded its model; ``/ready`` is 200 only when
every worker is warmed up. SIGTERM or Ctrl-C to the parent stops every worker gracefully (in-flight requests
finish) and the parent exits 0; a worker that fails to load its model stops them all with that worker's one
error message (exit 2), and one that dies while serving stops them all too. A worker whose parent is gone (killed
with SIGKILL) stops by itself within a second, so no worker is left behind. ``/metrics`` is per worker: each
process counts the requests it answered, and a scrape reaches whichever worker accepts it.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from domainfit.errors import DomainfitError
from domainfit.serving.generator import read_generation_settings
from domainfit.serving.model_folder import check_model_dir
from domainfit.serving.server import (
    ServerSettings,
    access_log,
    configure_access_log,
    create_app,
    listen_socket,
    listening_event,
    run_app,
    task_of,
)

LOAD_TIMEOUT_S = 600.0  # a worker that has not loaded its model by then is taken for stuck


def default_threads(workers: int) -> int:
    """Model threads per worker when ``--threads`` is not given: this process's cores shared out."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // workers)


def serve_workers(
    model_dir: str | Path,
    settings: ServerSettings,
    *,
    workers: int,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: str = "auto",
    num_threads: int | None = None,
    min_confidence: float | None = None,
) -> None:
    """Serve ``model_dir`` from ``workers`` processes on one socket until SIGTERM or Ctrl-C.

    Args:
        model_dir: a model folder written by ``domainfit train`` (any task).
        settings: limits and batching, for each worker.
        workers: server processes (2 or more; one is :func:`domainfit.serving.server.serve`).
        host: address to listen on.
        port: TCP port; 0 picks a free one (logged).
        backend: as in :func:`domainfit.load`.
        num_threads: CPU threads for each worker's model (default: :func:`default_threads`).
        min_confidence: as for :func:`domainfit.serving.server.serve`.
    """
    settings.check()
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise DomainfitError(f"--workers must be a positive integer, got {workers!r}")
    if read_generation_settings(model_dir) is None:
        check_model_dir(model_dir)  # a wrong path fails now, not after N processes have started
    threads = num_threads or default_threads(workers)
    reuse_port = hasattr(socket, "SO_REUSEPORT")
    sock = listen_socket(host, port, reuse_port=reuse_port)  # holds the port; with reuse_port it never listens
    address = (host, sock.getsockname()[1]) if reuse_port else None
    shared = None if reuse_port else sock
    context = multiprocessing.get_context("spawn")
    ready_flags = context.Array("b", workers)  # one per worker: warmed up and not shutting down
    reports = context.Queue()
    processes = [
        context.Process(
            target=_worker,
            args=(i, address, shared, str(model_dir), settings, backend, threads, min_confidence, ready_flags, reports),
            name=f"domainfit-serve-worker-{i}",
        )
        for i in range(workers)
    ]
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopping.set()
        _signal_all(processes, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for process in processes:
            process.start()
        configure_access_log()
        loaded = _wait_until_loaded(processes, reports, stopping)
        if loaded is not None:
            task, used_backend = loaded
            pids = [process.pid for process in processes]
            line = listening_event(
                sock, model_dir, task, used_backend, settings, workers=workers, threads=threads, pids=pids
            )
            access_log.info(json.dumps(line))
            _supervise(processes, stopping)
    finally:
        stopping.set()
        _signal_all(processes, signal.SIGTERM)
        _join_all(processes, settings.graceful_timeout_s + 30)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()


def _wait_until_loaded(processes: list[Any], reports: Any, stopping: threading.Event) -> tuple[str, str] | None:
    """(task, backend) once every worker has loaded the model; None if stopped first; a DomainfitError (the
    worker's own message) if one could not load it."""
    loaded: dict[int, tuple[str, str]] = {}
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while len(loaded) < len(processes):
        if stopping.is_set():
            return None
        ended = [i for i, process in enumerate(processes) if i not in loaded and process.exitcode is not None]
        try:
            # a worker that ended has sent why before it did (its queue is flushed at exit): wait for that
            kind, index, *detail = reports.get(timeout=1.0 if ended else 0.2)
        except queue.Empty:
            if ended:
                raise DomainfitError(
                    f"server worker {ended[0]} ended with exit code {processes[ended[0]].exitcode} while loading "
                    "the model",
                    fix="see the messages above; try once without --workers to see the error alone.",
                ) from None
            if time.monotonic() > deadline:
                raise DomainfitError(f"the server workers did not load the model in {LOAD_TIMEOUT_S:.0f} s") from None
            continue
        if kind == "error":
            raise DomainfitError(detail[0])  # the worker's message, already formatted (what, where, how to fix)
        loaded[index] = (detail[0], detail[1])
    return loaded[0]


def _supervise(processes: list[Any], stopping: threading.Event) -> None:
    """Wait until SIGTERM/Ctrl-C (then until the workers have finished), or until a worker dies by itself."""
    sentinels = {process.sentinel: i for i, process in enumerate(processes)}
    while not stopping.is_set():
        ended = multiprocessing.connection.wait(list(sentinels), timeout=0.5)
        if ended and not stopping.is_set():
            i = sentinels[ended[0]]
            raise DomainfitError(
                f"server worker {i} ended with exit code {processes[i].exitcode}; the other workers were stopped",
                fix="see the messages above (a worker killed for memory: fewer --workers or a smaller model).",
            )


def _signal_all(processes: list[Any], sig: int) -> None:
    for process in processes:
        if process.pid is not None and process.exitcode is None:
            try:
                os.kill(process.pid, sig)
            except ProcessLookupError:
                pass  # it ended between the check and the signal


def _join_all(processes: list[Any], timeout: float) -> None:
    """Wait for every started worker; one still running after ``timeout`` is killed (never left behind)."""
    deadline = time.monotonic() + timeout
    for process in processes:
        if process.pid is None:
            continue
        process.join(max(0.0, deadline - time.monotonic()))
        if process.exitcode is None:
            process.kill()
            process.join()


# ----------------------------------------------------------------------------------------------------------
# One worker (runs in its own spawned process)


def _worker(
    index: int,
    address: tuple[str, int] | None,
    shared: socket.socket | None,
    model_dir: str,
    settings: ServerSettings,
    backend: str,
    num_threads: int,
    min_confidence: float | None,
    ready_flags: Any,
    reports: Any,
) -> None:
    from domainfit.serving.loader import load

    parent = os.getppid()
    try:
        sock = shared if address is None else listen_socket(*address, reuse_port=True)
        predictor = load(model_dir, backend=backend, num_threads=num_threads, min_confidence=min_confidence)

        def peers_ready() -> str | None:
            flags = ready_flags[:]  # one lock, one snapshot
            waiting = [str(i) for i, flag in enumerate(flags) if not flag]
            return f"server worker(s) {', '.join(waiting)} of {len(flags)} not ready" if waiting else None

        app = create_app(predictor, settings, model_dir=model_dir, peers_ready=peers_ready)
    except DomainfitError as e:
        reports.put(("error", index, str(e)))
        return
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the terminal's group; the parent says it
        return
    configure_access_log()
    reports.put(("loaded", index, task_of(predictor), predictor.backend))

    def follow_readiness() -> None:
        app.state.ready.wait()
        ready_flags[index] = 1

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)  # the parent is gone: stop gracefully rather than serve alone

    def on_exit() -> None:
        ready_flags[index] = 0
        app.state.stop_being_ready()

    threading.Thread(target=follow_readiness, name="domainfit-ready-flag", daemon=True).start()
    threading.Thread(target=watch_parent, name="domainfit-parent-watch", daemon=True).start()
    run_app(app, settings, sock, on_exit)
