"""Several training processes: sharded batches, gathered evaluation, one writer, resume (docs/distributed.md).

The multi-process tests start 2 CPU processes joined by gloo (``torchrun --nproc_per_node 2`` and
``accelerate launch --config_file docs/examples/accelerate_cpu2.yaml``) on a tiny model and 96 PhraseBank
examples. They take a few minutes on a busy 2-core machine, so they are marked ``distributed`` and left out of the
default run:
``pytest -m distributed tests/test_distributed.py``. Sharing final work between processes
(``map_over_processes``) takes seconds, so its two-process test runs by default.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from domainfit.data.batching import EpochBatchSampler, shard_rows

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_the_global_batches_are_the_same_whatever_the_world_size_and_shards_cover_each_once():
    lengths = np.random.default_rng(0).integers(5, 60, size=203)
    for balance_tokens in (False, True):
        single = EpochBatchSampler(lengths, 16, seed=3, balance_tokens=balance_tokens)
        single.set_epoch(1)
        for world in (2, 3):
            shards = [
                EpochBatchSampler(lengths, 16, seed=3, balance_tokens=balance_tokens, num_shards=world, shard=rank)
                for rank in range(world)
            ]
            for sampler in shards:
                sampler.set_epoch(1)
                assert list(sampler) == list(single)  # the global order does not depend on the world size
            for batch in single:
                rows = [shards[rank].shard_of(batch)[0] for rank in range(world)]
                assert sorted(i for r in rows for i in r) == sorted(batch)  # every row once, on one process


def test_shard_weights_make_the_averaged_gradient_the_whole_batch_mean():
    values = np.random.default_rng(1).normal(size=50)
    for batch_rows in (1, 2, 7, 16):
        batch = list(range(batch_rows))
        for world in (2, 3, 4):
            # DDP averages the processes' weighted mean losses
            averaged = sum(w * values[rows].mean() for rows, w in (shard_rows(batch, world, r) for r in range(world)))
            assert averaged / world == pytest.approx(values[batch].mean())
    assert shard_rows([5], 2, 1) == ([5], 0.0)  # no row of its own: a weightless pass, so it joins the exchange


def test_resuming_mid_epoch_continues_each_shard_where_it_stopped():
    lengths = np.random.default_rng(2).integers(5, 60, size=100)
    full = EpochBatchSampler(lengths, 8, seed=1, num_shards=2, shard=1)
    full.set_epoch(2)
    resumed = EpochBatchSampler(lengths, 8, seed=1, num_shards=2, shard=1)
    resumed.set_epoch(2, start_batch=5)
    assert [resumed.shard_of(b) for b in resumed] == [full.shard_of(b) for b in list(full)[5:]]


def write_config(tmp_path: Path, model: Path, split: Path, out: Path, **train_kw) -> Path:
    # dropout 0 and fp32: the 1- and 2-process runs then differ only by float summation order
    train_cfg = {
        "epochs": 2,
        "batch_size": 16,
        "learning_rate": 1e-3,
        "seed": 7,
        "log_every": 2,
        "num_threads": 1,
        "best_metric": "loss",
        "precision": "fp32",
        **train_kw,
    }
    lines = [
        "task: text-classification",
        "model:",
        f"  name: {model}",
        "  max_length: 64",
        "  dropout: 0.0",
        "data:",
        f"  train: {split / 'train.csv'}",
        f"  validation: {split / 'val.csv'}",
        f"  test: {split / 'test.csv'}",
        "  max_train_samples: 96",
        "train:",
        *[f"  {k}: {json.dumps(v)}" for k, v in train_cfg.items()],
        "output:",
        f"  dir: {out}",
    ]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(launcher: str, *args: str) -> subprocess.Popen:
    """Two CPU processes of ``domainfit`` under ``launcher``."""
    port = str(_free_port())
    if launcher == "torchrun":
        command = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", port, "-m", "domainfit", *args]
    else:  # the documented config file (on CPUs, `accelerate launch --cpu` starts one process without MPI)
        command = [
            str(BIN / "accelerate"),
            "launch",
            "--config_file",
            str(REPO / "docs/examples/accelerate_cpu2.yaml"),
            "--main_process_port",
            port,
            "-m",
            "domainfit",
            *args,
        ]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    return err


_MAP_SCRIPT = """
import json, sys
from domainfit.training.distributed import end_processes, map_over_processes, process_state

state = process_state()
calls = []

def label(share):
    calls.append(list(share))
    return [[x, state.process_index] for x in share]

result = map_over_processes(label, list(range(11)), block=2)
with open(f"{sys.argv[1]}.{state.process_index}", "w") as f:
    json.dump({"result": result, "calls": calls}, f)
end_processes()
"""


def test_map_over_processes_gives_every_process_the_whole_result_in_order(tmp_path):
    """Two gloo processes (seconds, so in the default run): blocks of 2 dealt round-robin, each computed once."""
    from domainfit.training.distributed import map_over_processes

    assert map_over_processes(lambda share: [x * 2 for x in share], [1, 2, 3], block=2) == [2, 4, 6]  # 1 process
    script = tmp_path / "map.py"
    script.write_text(_MAP_SCRIPT)
    port = str(_free_port())
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    command = [
        str(BIN / "torchrun"),
        "--nproc_per_node",
        "2",
        "--master_port",
        port,
        str(script),
        str(tmp_path / "out"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # items 0-1 -> process 0, 2-3 -> 1, 4-5 -> 0, 6-7 -> 1, 8-9 -> 0, 10 -> 1
    owner = [(x // 2) % 2 for x in range(11)]
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"out.{rank}").read_text())
        assert seen["result"] == [[x, owner[x]] for x in range(11)]
        assert seen["calls"] == [[x for x in range(11) if owner[x] == rank]]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_bert, phrasebank_split):
    """The same config trained in one process (in this one) and in two (torchrun)."""
    from domainfit.tasks import load_run_config
    from domainfit.training import train

    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "one").mkdir()
    (tmp / "two").mkdir()
    two = _launch("torchrun", "train", str(write_config(tmp / "two", tiny_bert, phrasebank_split, tmp / "out-two")))
    one = train(load_run_config(write_config(tmp / "one", tiny_bert, phrasebank_split, tmp / "out-one")))
    _finish(two)
    return one, json.loads((tmp / "out-two" / "metrics.json").read_text()), tmp / "out-two"


@pytest.mark.distributed
def test_two_processes_share_the_batches_and_match_one_process(two_runs):
    one, two, _ = two_runs
    processes = two["train"]["processes"]
    assert [p["process"] for p in processes] == [0, 1]
    # each process trained on its half of every global batch (rows r::2): together once over the data
    assert processes[0]["rows"] + processes[1]["rows"] == two["train"]["samples_seen"] == one["train"]["samples_seen"]
    assert processes[0]["batches"] == processes[1]["batches"] == two["train"]["steps"] == one["train"]["steps"]
    assert abs(processes[0]["rows"] - processes[1]["rows"]) <= processes[0]["batches"]  # odd rows: one more on 0
    # the token counts are summed over the processes, not the main one's alone
    assert two["train"]["real_tokens"] == one["train"]["real_tokens"]
    # Same batches, same steps and schedule: the runs differ only by the order floats are summed in (the
    # gradient exchange, two half-batch means). Measured: 2e-6 apart in test loss; 1e-3 leaves room for other
    # CPUs' kernels while a wrong shard, weight or schedule moves it by 1e-2 or more.
    assert two["best"]["step"] == one["best"]["step"]
    assert two["test"]["loss"] == pytest.approx(one["test"]["loss"], abs=1e-3)
    assert two["test"]["confusion_matrix"] == one["test"]["confusion_matrix"]
    for a, b in zip(one["history"], two["history"]):  # every evaluation saw the whole validation split
        assert a["validation"]["loss"] == pytest.approx(b["validation"]["loss"], abs=1e-3)


@pytest.mark.distributed
def test_two_processes_write_one_run_folder_once(two_runs):
    _, _, out = two_runs
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock",
        "checkpoints",
        "config.yaml",
        "confusion_matrix.png",
        "metrics.json",
        "model",
        "reliability_diagram.png",
        "report.html",
        "report.md",
        "run.json",
        "tensorboard",
    ]
    assert len(list((out / "tensorboard").iterdir())) == 1  # one event file: the main process's
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "best.json",
        "best.safetensors",
        "latest",
        "step-0000012",
    ]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished"


@pytest.mark.distributed
def test_kill_9_of_two_processes_then_resume_with_accelerate_launch(two_runs, tmp_path, tiny_bert, phrasebank_split):
    _, straight, _ = two_runs
    out = tmp_path / "out"
    config = write_config(tmp_path, tiny_bert, phrasebank_split, out, save_every=1)
    proc = _launch("torchrun", "train", str(config))
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and int(latest.read_text().strip().split("-")[1]) >= 8:  # mid epoch 2 (6 steps each)
            break
        time.sleep(0.05)
    # the launcher and both workers (torchrun starts each in a session of its own), as a crashed machine would
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) >= 2, workers
    for process in [psutil.Process(proc.pid), *workers]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(workers, timeout=30)
    state = json.loads((out / "checkpoints" / latest.read_text().strip() / "state.json").read_text())
    assert state["epoch"] == 1 and 0 < state["batch_in_epoch"] < 6, state
    assert not (out / "metrics.json").exists()

    _finish(_launch("accelerate", "train", str(config), "--resume"))
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["train"]["samples_seen"] == straight["train"]["samples_seen"]
    assert resumed["best"]["step"] == straight["best"]["step"]
    assert resumed["test"]["loss"] == pytest.approx(straight["test"]["loss"], abs=1e-3)
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_fsdp_or_deepspeed_launch_is_refused_before_anything_is_written(tmp_path, tiny_bert, phrasebank_split):
    out = tmp_path / "out"
    config = write_config(tmp_path, tiny_bert, phrasebank_split, out)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "ACCELERATE_USE_FSDP": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "domainfit", "train", str(config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "FSDP" in proc.stderr and "ACCELERATE_USE_FSDP" in proc.stderr and "docs/distributed.md" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
