"""The model in a worker process (domainfit.serving.model_process): frames, the same probabilities as in
process, a killed worker reported and replaced, a worker that cannot load, and the server stopping it."""

from __future__ import annotations

import io
import os
import signal
import time

import numpy as np
import pytest
from assets import TEXTS, build_classifier_dir

import domainfit
from domainfit.errors import DomainfitError, ModelError
from domainfit.serving.model_process import ProcessRunner, read_frame, runner_for, write_frame


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_classifier_dir(tmp_path_factory.mktemp("model-process"))


def _gone(pid: int) -> bool:
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_frames_carry_a_header_and_arrays_exactly():
    stream = io.BytesIO()
    ids = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]  # not contiguous: written as its values
    logits = np.array([[0.5, -1.25]], dtype=np.float32)
    write_frame(stream, {"note": "é"}, {"input_ids": ids, "logits": logits})
    write_frame(stream, {"error": "boom"})
    stream.seek(0)
    header, arrays = read_frame(stream)
    assert header == {"note": "é"} and list(arrays) == ["input_ids", "logits"]
    assert np.array_equal(arrays["input_ids"], ids) and arrays["input_ids"].dtype == np.int64
    assert np.array_equal(arrays["logits"], logits) and arrays["logits"].flags.writeable
    assert read_frame(stream) == ({"error": "boom"}, {})
    with pytest.raises(EOFError):
        read_frame(stream)
    truncated = io.BytesIO()
    write_frame(truncated, {}, {"input_ids": ids})
    with pytest.raises(EOFError, match="ended after"):
        read_frame(io.BytesIO(truncated.getvalue()[:-3]))
    with pytest.raises(TypeError, match="frames carry"):
        write_frame(io.BytesIO(), {}, {"x": np.zeros(2, dtype=np.float16)})


def test_the_worker_gives_the_in_process_probabilities_and_is_replaced_when_killed(model_dir):
    here = domainfit.load(model_dir, backend="torch")
    apart = domainfit.load(model_dir, backend="torch", model_process="auto")  # eager torch: a worker
    runner = apart._runner
    assert isinstance(runner, ProcessRunner) and runner.pid != os.getpid()
    assert apart.model_process_pid == runner.pid and here.model_process_pid is None
    # the same model; another process may sum in another order (its own thread count): float noise only
    np.testing.assert_allclose(apart.predict_proba(TEXTS), here.predict_proba(TEXTS), atol=1e-5)

    first = runner.pid
    os.kill(first, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    with pytest.raises(ModelError, match=r"exited while running a batch \(exit code -9\)") as e:
        apart.predict(TEXTS[:2])
    assert "next request starts a new model process" in str(e.value)
    np.testing.assert_allclose(apart.predict_proba(TEXTS[:2]), here.predict_proba(TEXTS[:2]), atol=1e-5)  # a new worker
    second = runner.pid
    assert second not in (None, first) and _gone(first)  # the dead one was reaped

    apart.close()
    assert runner.pid is None and _gone(second)
    here.close()  # in process: nothing to stop


def test_a_worker_that_cannot_build_its_runner_says_why(model_dir):
    # no onnx/ folder: the worker's own error comes back as the caller's ModelError
    with pytest.raises(ModelError, match="model process failed while starting: ModelError: backend 'onnx' needs"):
        ProcessRunner(model_dir, "onnx", None)


def test_auto_keeps_onnx_in_process_and_bad_values_are_refused(model_dir):
    with pytest.raises(DomainfitError, match="model_process must be one of auto, on, off"):
        runner_for(model_dir, "torch", None, "yes")
    with pytest.raises(ModelError, match="backend 'onnx' needs"):  # raised here, in process: no worker started
        runner_for(model_dir, "onnx", None, "auto")
