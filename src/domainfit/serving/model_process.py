"""A runner in its own process: the model's forward passes run beside the server's event loop, not under its GIL.

    runner = ProcessRunner(model_dir, "torch-bf16", num_threads=None)   # starts the worker, waits until ready
    logits = runner(pad_inputs(ids, type_ids, pad_id))                   # same call as any runner
    runner.close()

Why: eager PyTorch does Python-side work in every layer of every forward pass, and holds the GIL while it does;
inside ``domainfit serve`` that work competed with the event loop that parses requests and answers them, so on
bf16 PyTorch the server reached 0.49 of offline ``predict``'s texts/s with the cores partly idle
(BENCHMARKS.md, "Serving"). In a worker process the model's Python runs under its own interpreter lock.

The worker is ``python -m domainfit.serving.model_process``, started with the model folder, the backend and the
thread count and the runner's kind; it builds the runner with that kind's factory in
``serving.registry.RUNNER_KINDS`` (the text classifiers' :func:`domainfit.serving.backends.create_runner`, token
or image classification's), after importing the module that registered it (named on its command line: this
module imports no predictor module).
Arrays go over its stdin and stdout as frames: a 4-byte length, a JSON header (names, dtypes, shapes, or an
error), then the raw bytes of each array; no pickle. The worker's own stdout is pointed at stderr so library
prints cannot corrupt a frame; it exits when its stdin closes (the server stopped, or was killed). A worker that
dies (killed for memory, say) fails the batch it was running with a clear error, and the next call starts a
fresh one.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from domainfit.errors import DomainfitError, ModelError
from domainfit.serving.backends import EAGER_TORCH_BACKENDS
from domainfit.serving.registry import RUNNER_KINDS
from domainfit.serving.runners import Runner

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("<I")
# dtypes a frame may carry: the runners' inputs (int64 ids, float32 pixels) and outputs (float32 logits)
_DTYPES = {"int64": np.int64, "int32": np.int32, "float32": np.float32}


def write_frame(stream: BinaryIO, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> None:
    """Write one frame: ``header`` (JSON) and ``arrays`` (each described in the header, then its bytes)."""
    arrays = {k: np.ascontiguousarray(v) for k, v in (arrays or {}).items()}
    for name, array in arrays.items():
        if array.dtype.name not in _DTYPES:
            raise TypeError(f"array {name!r} is {array.dtype.name}; frames carry {', '.join(_DTYPES)}")
    header = {**header, "arrays": [[k, v.dtype.name, list(v.shape)] for k, v in arrays.items()]}
    encoded = json.dumps(header).encode("utf-8")
    stream.write(_LENGTH.pack(len(encoded)) + encoded)
    for array in arrays.values():
        stream.write(memoryview(array).cast("B"))
    stream.flush()


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError(f"the stream ended after {0 if not data else len(data)} of {n} bytes")
    return data


def _read_into(stream: BinaryIO, array: np.ndarray) -> None:
    view, done = memoryview(array).cast("B"), 0
    while done < len(view):
        n = stream.readinto(view[done:])  # type: ignore[attr-defined]
        if not n:
            raise EOFError(f"the stream ended after {done} of {len(view)} bytes")
        done += n


def read_frame(stream: BinaryIO) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read one frame written by :func:`write_frame` (arrays are new, writable). Raises EOFError if the stream
    ends."""
    (size,) = _LENGTH.unpack(_read_exactly(stream, _LENGTH.size))
    header = json.loads(_read_exactly(stream, size).decode("utf-8"))
    arrays = {}
    for name, dtype, shape in header.pop("arrays", []):
        if dtype not in _DTYPES:
            raise ValueError(f"frame array {name!r} has dtype {dtype!r}")
        arrays[name] = np.empty(shape, dtype=_DTYPES[dtype])
        _read_into(stream, arrays[name])
    return header, arrays


class ProcessRunner:
    """The runner of ``backend`` for ``model_dir``, run in a worker process (see the module docstring).

    Args:
        model_dir: the model folder.
        backend: a concrete backend (one ``resolve_backend`` returned).
        num_threads: the worker's CPU threads (None: the backend's default).
        kind: which runner the worker builds (a name in ``serving.registry.RUNNER_KINDS``).

    Raises:
        ModelError: the worker could not build the runner (its error, as the worker saw it) or exited.
    """

    def __init__(self, model_dir: Path, backend: str, num_threads: int | None, kind: str = "sequence") -> None:
        RUNNER_KINDS.get(kind)  # an unknown kind fails here, listing the kinds, not in the worker
        self.model_dir, self.backend, self.num_threads, self.kind = Path(model_dir), backend, num_threads, kind
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self.input_names: tuple[str, ...] = ()
        self._start()

    @property
    def pid(self) -> int | None:
        """The worker's process id (None while none runs)."""
        return self._process.pid if self._process is not None else None

    def _start(self) -> None:
        command = [sys.executable, "-m", __name__, str(self.model_dir), self.backend, str(self.num_threads or 0)]
        # and the module that registered the kind: the worker imports it, so the kind is there
        command += [self.kind, RUNNER_KINDS.get(self.kind).__module__]
        # stderr is the server's: the worker's warnings and tracebacks land in the same log
        # no progress bars: a restart mid-serving would break the server's one-JSON-object-per-line log
        env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        header, _ = self._receive("starting")
        self.input_names = tuple(header["input_names"])
        log.info("model process %d serves %s on %s", self._process.pid, self.model_dir, self.backend)

    def _receive(self, doing: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        assert self._process is not None and self._process.stdout is not None
        try:
            header, arrays = read_frame(self._process.stdout)
        except (EOFError, OSError, ValueError) as e:
            try:  # a worker that crashed is exiting: its own exit code says more than our kill's
                code = self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                code = self._process.wait()
            self._process = None
            raise ModelError(
                f"the model process exited while {doing} (exit code {code}): {e}",
                path=self.model_dir,
                fix="read its error in the log above (a negative code is the signal that killed it, -9 often "
                "out of memory); the next request starts a new model process.",
            ) from e
        if "error" in header:
            raise ModelError(
                f"the model process failed while {doing}: {header['error']}", path=self.model_dir, fix=header.get("fix")
            )
        return header, arrays

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:
            if self._process is None:
                log.warning("restarting the model process of %s", self.model_dir)
                self._start()
            assert self._process is not None and self._process.stdin is not None
            try:
                write_frame(self._process.stdin, {}, {name: inputs[name] for name in self.input_names})
            except OSError:
                pass  # the worker is gone: _receive says how it ended
            _, arrays = self._receive("running a batch")
            return arrays["logits"]

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker: close its stdin (it exits), wait ``timeout`` seconds, then kill it."""
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __del__(self) -> None:
        if getattr(self, "_process", None) is not None:
            self.close(timeout=1.0)


MODEL_PROCESS = ("auto", "on", "off")


def runner_for(
    model_dir: Path, backend: str, num_threads: int | None, model_process: str = "off", kind: str = "sequence"
) -> Runner:
    """The ``kind`` runner of ``backend``, in a worker process (:class:`ProcessRunner`) when ``model_process`` is
    "on", or "auto" and the backend runs eager PyTorch (the ONNX Runtime backends release the GIL in their C++
    calls, so they stay in the caller's process), else in this process."""
    if model_process not in MODEL_PROCESS:
        raise DomainfitError(f"model_process must be one of {', '.join(MODEL_PROCESS)}, got {model_process!r}")
    if model_process == "on" or (model_process == "auto" and backend in EAGER_TORCH_BACKENDS):
        return ProcessRunner(model_dir, backend, num_threads, kind)
    return RUNNER_KINDS.get(kind)(model_dir, backend, num_threads)


def _error(e: Exception) -> dict[str, Any]:
    """An error frame's header: what went wrong (and the fix, for domainfit's own errors)."""
    if isinstance(e, DomainfitError):
        return {"error": f"{type(e).__name__}: {e.what}", "fix": e.fix}
    return {"error": f"{type(e).__name__}: {e}"}


def _worker(model_dir: str, backend: str, num_threads: int, kind: str, module: str) -> None:
    # the frames own the real stdout; anything printed goes to stderr
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    source = sys.stdin.buffer
    try:
        importlib.import_module(module)  # registers the kind (the predictor module that asked for it)
        runner = RUNNER_KINDS.get(kind)(Path(model_dir), backend, num_threads or None)
        ready = {"input_names": list(runner.input_names)}
    except Exception as e:  # noqa: BLE001 - sent to the server, which raises it as a ModelError
        write_frame(out, _error(e))
        return
    write_frame(out, ready)
    while True:
        try:
            _, inputs = read_frame(source)
        except EOFError:
            return  # the server closed our stdin: done
        try:
            logits = np.asarray(runner(inputs), dtype=np.float32)
        except Exception as e:  # noqa: BLE001 - this batch's error, sent back; the worker keeps serving
            write_frame(out, _error(e))
            continue
        write_frame(out, {}, {"logits": logits})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 5 or not args[2].isdigit():
        raise DomainfitError(
            "usage: python -m domainfit.serving.model_process MODEL_DIR BACKEND NUM_THREADS KIND MODULE "
            "(started by ProcessRunner; KIND is registered in serving.registry.RUNNER_KINDS by MODULE)"
        )
    _worker(args[0], args[1], int(args[2]), args[3], args[4])
    return 0


if __name__ == "__main__":
    sys.exit(main())
