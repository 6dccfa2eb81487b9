"""A run folder or model folder from an untrusted copy can neither run code nor reach outside itself.

Each attack is played through the real CLI where a user would meet it: exit 2, one message, no traceback,
and the planted payload never runs.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from domainfit.errors import DomainfitError
from domainfit.training.checkpoint import CheckpointManager, TrainState

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "domainfit", *args], capture_output=True, text=True, cwd=REPO, timeout=timeout
    )


def _config(tmp: Path, model: Path, split: Path, out: Path, **train) -> Path:
    settings = {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "seed": 7, "log_every": 2, **train}
    lines = [
        "task: text-classification",
        "model:",
        f"  name: {model}",
        "  max_length: 64",
        "data:",
        f"  train: {split / 'train.csv'}",
        f"  validation: {split / 'val.csv'}",
        f"  test: {split / 'test.csv'}",
        "  max_train_samples: 96",
        "train:",
        *[f"  {k}: {json.dumps(v)}" for k, v in settings.items()],
        "output:",
        f"  dir: {out}",
    ]
    path = tmp / f"config-{out.name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _tiny_parts(tiny_bert: Path):
    from transformers import AutoModelForSequenceClassification

    from domainfit.config import TrainConfig
    from domainfit.training.optim import create_optimizer, create_scheduler

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    optimizer = create_optimizer(model, TrainConfig())
    return model, optimizer, create_scheduler(optimizer, TrainConfig(), 10)


@pytest.fixture
def interrupted_run(tmp_path, tiny_bert, phrasebank_split):
    """A run folder as a killed run leaves it: run.json says running, one complete checkpoint."""
    out = tmp_path / "run"
    config = _config(tmp_path, tiny_bert, phrasebank_split, out)
    model, optimizer, scheduler = _tiny_parts(tiny_bert)
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"status": "running"}))
    CheckpointManager(out).save(TrainState(step=1), model, optimizer, scheduler)
    return out, config


def test_checkpoints_hold_no_pickle(tmp_path, tiny_bert):
    model, optimizer, scheduler = _tiny_parts(tiny_bert)
    model(input_ids=torch.tensor([[101, 2000, 102]]), labels=torch.tensor([1])).loss.backward()
    optimizer.step()
    scheduler.step()
    step = CheckpointManager(tmp_path).save(TrainState(step=1), model, optimizer, scheduler)
    assert sorted(p.name for p in step.iterdir()) == [
        "model.safetensors",
        "optimizer.safetensors",
        "rng.safetensors",
        "scheduler.safetensors",
        "state.json",
    ]
    # the restored optimizer is the saved one: same moments, same step count, same schedule position
    fresh_model, fresh_optimizer, fresh_scheduler = _tiny_parts(tiny_bert)
    CheckpointManager(tmp_path).load(fresh_model, fresh_optimizer, fresh_scheduler)
    saved, restored = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert saved["param_groups"] == restored["param_groups"]
    for index, moments in saved["state"].items():
        for name, value in moments.items():
            assert torch.equal(value, restored["state"][index][name]), (index, name)
    assert fresh_scheduler.state_dict()["last_epoch"] == scheduler.state_dict()["last_epoch"] == 1


def test_a_planted_pickle_in_a_checkpoint_never_runs(interrupted_run, tmp_path):
    out, config = interrupted_run
    marker = tmp_path / "pwned"
    step = out / "checkpoints" / "step-0000001"
    # the attacker swaps the state files for pickles, under the old names and under the new ones
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt"):
        (step / name).write_bytes(pickle.dumps(_Payload(marker)))
    (step / "optimizer.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    proc = _run("train", str(config), "--resume")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "optimizer.safetensors" in proc.stderr and "damaged" in proc.stderr
    assert not marker.exists()

    (step / "optimizer.safetensors").unlink()  # only the legacy pickles are left: refused by name, not loaded
    proc = _run("train", str(config), "--resume")
    assert proc.returncode == 2 and "never loaded" in proc.stderr, proc.stderr
    assert not marker.exists()
    assert json.loads((out / "run.json").read_text())["status"] == "failed"


def test_a_latest_pointer_out_of_the_run_folder_is_refused(interrupted_run, tmp_path):
    out, config = interrupted_run
    elsewhere = tmp_path / "elsewhere" / "step-0000009"
    elsewhere.mkdir(parents=True)
    (elsewhere / "state.json").write_text(json.dumps({"step": 9}))
    (out / "checkpoints" / "latest").write_text("../../elsewhere/step-0000009")
    proc = _run("train", str(config), "--resume")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "checkpoints/latest" in proc.stderr

    # a step folder that is a link to another place is refused the same way
    (out / "checkpoints" / "latest").write_text("step-0000009")
    (out / "checkpoints" / "step-0000009").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(DomainfitError, match="leads outside the run folder"):
        CheckpointManager(out).latest()


def test_a_tampered_state_file_is_a_clear_error(tmp_path, tiny_bert):
    model, optimizer, scheduler = _tiny_parts(tiny_bert)
    step = CheckpointManager(tmp_path).save(TrainState(step=1), model, optimizer, scheduler)
    (step / "state.json").write_text(json.dumps({"step": -4}))
    with pytest.raises(DomainfitError, match="whole number"):
        CheckpointManager(tmp_path).load(model, optimizer, scheduler)
    (step / "state.json").write_text(json.dumps({"step": 1, "__class__": "os.system"}))
    with pytest.raises(DomainfitError, match="not domainfit's"):
        CheckpointManager(tmp_path).load(model, optimizer, scheduler)


def test_pipeline_names_cannot_leave_the_output_folder(tmp_path):
    from domainfit.errors import ConfigError
    from domainfit.pipeline import load_pipeline_config

    finetune = REPO / "src" / "domainfit" / "configs" / "phrasebank.yaml"
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"finetune: {finetune}\noutput_dir: {tmp_path / 'p'}\nvariants:\n  ../../escape: {{}}\n")
    with pytest.raises(ConfigError, match="folder name"):
        load_pipeline_config(path)


@pytest.mark.parametrize("planted", ["pickle-weights", "auto-map", "truncated", "no-tokenizer"])
def test_a_model_folder_that_would_run_code_or_is_broken_is_refused(planted, tmp_path, tiny_bert, phrasebank_split):
    import shutil

    model = shutil.copytree(tiny_bert, tmp_path / "model")
    marker = tmp_path / "pwned"
    if planted == "pickle-weights":
        (model / "model.safetensors").unlink()
        (model / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
        expected = "pickle"
    elif planted == "auto-map":
        config = json.loads((model / "config.json").read_text())
        config["auto_map"] = {"AutoModelForSequenceClassification": "evil.EvilModel"}
        (model / "config.json").write_text(json.dumps(config))
        expected = "own Python code"
    elif planted == "truncated":
        weights = (model / "model.safetensors").read_bytes()
        (model / "model.safetensors").write_bytes(weights[: len(weights) // 2])
        expected = "truncated"
    else:
        for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            (model / name).unlink(missing_ok=True)
        expected = "no tokenizer"
    # as the model to fine-tune ...
    config = _config(tmp_path, model, phrasebank_split, tmp_path / "out")
    proc = _run("train", str(config))
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written for a refused run
    # ... and as a trained model folder to predict with
    texts = tmp_path / "texts.csv"
    texts.write_text("text\nProfit rose.\n")
    proc = _run("predict", str(model), str(texts), "--output", str(tmp_path / "pred.csv"))
    assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not marker.exists()


# The first run, paused at its first evaluation (through the loop's listener hook) until the test lets it go:
# a tiny run otherwise finishes, and frees its folder, before a second interpreter has even started.
_HELD_RUN = """
import sys, time
from pathlib import Path
from domainfit.cli import main
from domainfit.training.events import evaluation_listener

held, go = Path(sys.argv[2]), Path(sys.argv[3])

def hold(history, last):
    held.touch()
    while not go.exists():
        time.sleep(0.05)

with evaluation_listener(hold):
    sys.exit(main(["train", sys.argv[1]]))
"""


def test_a_second_run_into_the_same_folder_is_refused_and_the_first_is_intact(tmp_path, tiny_bert, phrasebank_split):
    out = tmp_path / "run"
    first = _config(tmp_path, tiny_bert, phrasebank_split, out, epochs=2, seed=42)
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    second = _config(second_dir, tiny_bert, phrasebank_split, out, epochs=2, seed=7)
    held, go = tmp_path / "held", tmp_path / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", _HELD_RUN, str(first), str(held), str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        deadline = time.time() + 300
        while not held.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert held.exists(), "the first run never reached its first evaluation"
        refused = _run("train", str(second), "output.overwrite=true")
    finally:
        go.touch()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert refused.returncode == 2, refused.stderr
    assert "another domainfit run is writing to this folder" in refused.stderr and "Traceback" not in refused.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["seed"] == 42
    assert json.loads((out / "model" / "domainfit.json").read_text()).get("seed", 42) == 42


def test_a_lock_left_by_a_dead_process_does_not_block(tmp_path):
    from domainfit.training.run_dir import RunLock

    (tmp_path / ".lock").write_text("pid 999999 on gone-host, since yesterday\n")  # its process is gone
    lock = RunLock(tmp_path)
    lock.acquire()
    try:
        with pytest.raises(DomainfitError, match="another domainfit run"):
            RunLock(tmp_path).acquire()
    finally:
        lock.release()
    RunLock(tmp_path).acquire()


def test_a_failing_or_interrupted_run_says_so_in_run_json(tmp_path, tiny_bert, phrasebank_split, monkeypatch):
    from domainfit.tasks import load_run_config as load_config
    from domainfit.training import loop, train

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(loop, "_finalize", boom)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        train(load_config(_config(tmp_path, tiny_bert, phrasebank_split, out)))
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "failed" and "disk on fire" in run["error"]

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_finalize", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(_config(tmp_path, tiny_bert, phrasebank_split, out)), resume=True)
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert not (out / f".write-test-{os.getpid()}").exists()


def test_an_unusable_output_folder_is_refused_before_any_work(tmp_path, tiny_bert, phrasebank_split):
    proc = _run("train", str(_config(tmp_path, tiny_bert, phrasebank_split, Path("/proc/domainfit-run"))))
    assert proc.returncode == 2 and "output.dir" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_full_disk_during_a_checkpoint_names_the_disk_and_keeps_the_previous_one(tmp_path, tiny_bert, monkeypatch):
    import errno

    from domainfit.training import checkpoint

    model, optimizer, scheduler = _tiny_parts(tiny_bert)
    manager = CheckpointManager(tmp_path)
    manager.save(TrainState(step=1), model, optimizer, scheduler)

    def full(path, tree):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_state", full)
    with pytest.raises(DomainfitError, match="disk is full.*step-0000002; the previous checkpoint step-0000001 is"):
        manager.save(TrainState(step=2), model, optimizer, scheduler)
    monkeypatch.undo()
    assert manager.load(model, optimizer, scheduler).step == 1
    assert not list((tmp_path / "checkpoints").glob(".step-*"))  # no half-written folder left


def test_the_same_seed_twice_gives_identical_weights(tmp_path, tiny_bert, phrasebank_split):
    from safetensors.torch import load_file

    from domainfit.tasks import load_run_config
    from domainfit.training import train

    weights = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        config = _config(tmp_path / name, tiny_bert, phrasebank_split, tmp_path / name / "out")
        train(load_run_config(config))
        weights.append(load_file(str(tmp_path / name / "out" / "model" / "model.safetensors")))
        assert json.loads((tmp_path / name / "out" / "run.json").read_text())["mixed_precision"] in ("no", "bf16")
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
