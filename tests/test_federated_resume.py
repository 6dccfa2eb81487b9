"""domainfit federate --resume: a federation stopped after a round continues from the next one and ends as the
uninterrupted run does (the server optimiser's moments, DP accounting, site sampling and random generators
restored); a changed setting is refused; one stopped in its first round starts again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_federated import _federate_config, _write_sites

pytest.importorskip("flwr")

REPO = Path(__file__).resolve().parents[1]
COMPARED = ("global", "global_validation", "sites_train", "sites_eval", "traffic", "selection", "final")


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text(encoding="utf-8"))


def _stop_after_round(monkeypatch: pytest.MonkeyPatch, stop_round: int, *, before_saving: bool = False) -> None:
    """Make the federation stop (as by Ctrl-C) once round ``stop_round`` has ended (or before its checkpoint)."""
    from domainfit.federated.rounds import RoundCheckpoints

    save = RoundCheckpoints.save

    def stopping(self, server_round, arrays, **kwargs):
        if before_saving and server_round == stop_round:
            raise KeyboardInterrupt
        path = save(self, server_round, arrays, **kwargs)
        if server_round == stop_round:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(RoundCheckpoints, "save", stopping)


@pytest.mark.parametrize(
    "extra",
    [
        # FedAdam's moments live at the server across rounds
        "strategy: fedadam\nserver_learning_rate: 0.005\n",
        # two of three sites a round (Flower samples them with `random`); each site's epsilon adds up
        "strategy: fedavgm\nserver_momentum: 0.5\nfraction_fit: 0.6\nmin_fit_sites: 2\n"
        "dp:\n  enabled: true\n  noise_multiplier: 0.8\n",
    ],
    ids=["fedadam", "fedavgm-dp-sampled"],
)
def test_a_stopped_federation_resumes_and_ends_as_the_uninterrupted_one(
    tmp_path, tiny_bert, phrasebank_split, monkeypatch, extra
):
    if "dp:" in extra:
        pytest.importorskip("opacus")
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra=extra)
    fed.write_text(fed.read_text(encoding="utf-8").replace("rounds: 2\n", "rounds: 3\n"), encoding="utf-8")
    whole = tmp_path / "whole"
    assert main(["federate", str(fed), f"output_dir={whole}"]) == 0

    out = tmp_path / "fed"
    _stop_after_round(monkeypatch, 2)
    assert main(["federate", str(fed)]) == 130
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["status"] == "interrupted"
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["round-0002.safetensors"]  # the newest only
    assert not (out / "metrics.json").exists()
    monkeypatch.undo()

    assert main(["federate", str(fed), "--resume"]) == 0
    resumed, uninterrupted = _metrics(out), _metrics(whole)
    assert set(resumed["global"]) == {"0", "1", "2", "3"}
    for key in COMPARED:  # every round's scores, traffic and epsilon: the same run
        assert resumed[key] == uninterrupted[key], key
    if "dp:" in extra:
        trained = [name for r in ("1", "2", "3") for name in resumed["sites_train"][r]]
        assert len(trained) == 3 * 2  # two sites a round
        assert all(m["epsilon"] > 0 for r in ("1", "2", "3") for m in resumed["sites_train"][r].values())
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["status"] == "finished"
    assert not (out / "checkpoints").exists()  # a finished federation keeps no resumable state
    assert main(["federate", str(fed), "--resume"]) == 2  # finished: nothing to resume


def test_resuming_under_other_settings_or_with_nothing_to_resume_is_refused(
    tmp_path, tiny_bert, phrasebank_split, monkeypatch, capsys
):
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites)
    assert main(["federate", str(fed), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "fed").exists()  # a refused run leaves no folder behind
    assert main(["federate", str(fed), "--resume", "--deploy-app", str(tmp_path / "app")]) == 2
    assert "use one of them" in capsys.readouterr().err

    _stop_after_round(monkeypatch, 1)
    assert main(["federate", str(fed)]) == 130
    monkeypatch.undo()
    assert main(["federate", str(fed)]) == 2  # a stopped run is not overwritten by accident
    assert "add --resume to continue it" in capsys.readouterr().err
    assert main(["federate", str(fed), "--resume", "local_epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "local_epochs: 1 then, 2 now" in err and "--resume" in err and "overwrite: true" in err
    assert main(["federate", str(fed), "--resume", "run_overrides=[train.learning_rate=0.01]"]) == 2
    assert "train.learning_rate: 0.001 then, 0.01 now" in capsys.readouterr().err
    assert main(["federate", str(fed), "--resume"]) == 0  # as it started: round 2 runs
    assert set(_metrics(tmp_path / "fed")["global"]) == {"0", "1", "2"}


def test_a_federation_stopped_in_its_first_round_starts_again(tmp_path, tiny_bert, phrasebank_split, monkeypatch):
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites, extra="overwrite: false\n")
    fed.write_text(fed.read_text(encoding="utf-8").replace("rounds: 2\n", "rounds: 1\n"), encoding="utf-8")
    _stop_after_round(monkeypatch, 1, before_saving=True)
    assert main(["federate", str(fed)]) == 130
    out = tmp_path / "fed"
    assert not (out / "checkpoints").exists() and list((out / "tensorboard").iterdir())
    monkeypatch.undo()
    assert main(["federate", str(fed), "--resume"]) == 0
    metrics = _metrics(out)
    assert set(metrics["global"]) == {"0", "1"} and metrics["selection"]["kept_round"] == 1


def test_kill_9_mid_federation_then_resume_ends_as_the_uninterrupted_run(tmp_path, tiny_bert, phrasebank_split):
    from domainfit.cli import main

    sites = _write_sites(phrasebank_split, tmp_path, n_sites=2)
    fed = _federate_config(tmp_path, tiny_bert, sites)
    fed.write_text(fed.read_text(encoding="utf-8").replace("rounds: 2\n", "rounds: 4\n"), encoding="utf-8")
    whole = tmp_path / "whole"
    assert main(["federate", str(fed), f"output_dir={whole}"]) == 0

    out = tmp_path / "fed"
    with (tmp_path / "killed.log").open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "domainfit", "federate", str(fed)], stdout=log, stderr=log, cwd=REPO
        )
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not list(out.glob("checkpoints/round-*")):
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # a round of the tiny model takes seconds: rounds 2-4 are still to run
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text(encoding="utf-8")[-2000:]
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["status"] == "running"  # kill -9: no record
    assert not (out / "metrics.json").exists() and list(out.glob("checkpoints/round-*.safetensors"))
    torn = out / "checkpoints" / ".round-0002.safetensors.x1y2.tmp"
    torn.write_bytes(b"\0" * 64)  # as a kill during a checkpoint's write leaves it: never renamed into place

    assert main(["federate", str(fed), "--resume"]) == 0
    resumed, uninterrupted = _metrics(out), _metrics(whole)
    for key in COMPARED:
        assert resumed[key] == uninterrupted[key], key
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["status"] == "finished"


def test_a_foreign_damaged_or_outside_checkpoint_is_refused_with_a_clear_error(tmp_path):
    from domainfit.errors import DomainfitError
    from domainfit.federated.apps import RoundLog
    from domainfit.federated.rounds import RoundCheckpoints
    from domainfit.federated.selection import RoundSelection
    from domainfit.io.state_files import save_state

    checkpoints = RoundCheckpoints(tmp_path / "run")
    checkpoints.dir.mkdir(parents=True)
    parts = {"strategy": None, "round_log": RoundLog(), "selection": RoundSelection("f1_macro"), "sites": []}
    assert checkpoints.load(**parts) is None  # no round finished: start from round 1

    save_state(checkpoints.dir / "round-0001.safetensors", {"round": 1})  # another version's layout
    with pytest.raises(DomainfitError, match="lacks part of a federation's state"):
        checkpoints.load(**parts)
    (checkpoints.dir / "round-0002.safetensors").write_bytes(b"\0" * 32)  # the newest is taken: damaged
    with pytest.raises(DomainfitError, match="damaged"):
        checkpoints.load(**parts)
    outside = tmp_path / "elsewhere.safetensors"
    save_state(outside, {"round": 3})
    (checkpoints.dir / "round-0003.safetensors").symlink_to(outside)
    with pytest.raises(DomainfitError, match="leads outside the run folder"):
        checkpoints.load(**parts)
