"""`domainfit tune`: an Optuna study over a run config, on a tiny model and real PhraseBank data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from domainfit.cli import main
from domainfit.errors import ConfigError
from domainfit.tune import load_tune_config, run_tune

optuna = pytest.importorskip("optuna")

REPO = Path(__file__).resolve().parents[1]


def _write(
    tmp_path: Path, model: Path, split: Path, *, space: dict, samples: int = 64, tune: dict | None = None, **train
) -> Path:
    """A run config (tiny model, real data) and a tune config over it; returns the tune config's path."""
    run = {
        "task": "text-classification",
        "model": {"name": str(model), "max_length": 48},
        "data": {
            "train": str(split / "train.csv"),
            "validation": str(split / "val.csv"),
            "test": str(split / "test.csv"),
            "max_train_samples": samples,
        },
        "train": {
            "epochs": 1,
            "batch_size": 16,
            "learning_rate": 1e-3,
            "seed": 7,
            "precision": "fp32",
            "num_threads": 1,
            "best_metric": "loss",
            **train,
        },
        "output": {"dir": str(tmp_path / "unused")},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run), encoding="utf-8")
    spec = {"config": "run.yaml", "output_dir": str(tmp_path / "out"), "trials": 3, "space": space, **(tune or {})}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


SPACE = {
    "train.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
    "train.batch_size": {"choices": [16, 32]},
    "regularization.label_smoothing": {"low": 0.0, "high": 0.2},
}


def _study(out: Path):
    return optuna.load_study(study_name="domainfit-tune", storage=f"sqlite:///{out / 'study.db'}")


def test_three_trial_study_writes_study_best_config_retrained_run_and_report(
    tmp_path, tiny_bert, phrasebank_split, monkeypatch
):
    out = tmp_path / "out"
    summary = run_tune(load_tune_config(_write(tmp_path, tiny_bert, phrasebank_split, space=SPACE)))

    study = _study(out)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    default = study.trials[0]  # trial 0 is the run config's own values
    assert default.params == {
        "train.learning_rate": 1e-3,
        "train.batch_size": 16,
        "regularization.label_smoothing": 0.0,
    }
    # each trial is a run folder, scored by the validation loss of the checkpoint it selects
    for trial in study.trials:
        metrics = json.loads((out / "trials" / f"{trial.number:03d}" / "metrics.json").read_text())
        assert trial.value == metrics["validation"]["loss"]
        assert len(trial.intermediate_values) == 1
    assert len({tuple(t.params.values()) for t in study.trials}) == 3

    best = study.best_trial
    assert best.value == min(t.value for t in study.trials)
    from domainfit.tasks import load_run_config

    best_cfg = load_run_config(out / "best.yaml")
    assert best_cfg.train.learning_rate == best.params["train.learning_rate"]
    assert best_cfg.train.batch_size == best.params["train.batch_size"]
    assert best_cfg.regularization.label_smoothing == best.params["regularization.label_smoothing"]
    assert best_cfg.output.dir == str(out / "best")
    retrained = json.loads((out / "best" / "metrics.json").read_text())
    assert retrained["validation"]["loss"] == pytest.approx(best.value, abs=1e-4)  # same config, same seed
    assert summary["retrained"]["test"]["f1_macro"] == retrained["test"]["f1_macro"]

    report = (out / "report.md").read_text()
    assert "3 complete, 0 pruned" in report and f"Trial {best.number}:" in report
    verdict = "No trial beat the default" if best.number == 0 else f"The best trial (#{best.number}) beat the default"
    assert verdict in report
    assert (out / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # run again: the study is complete and the best retrained, so nothing trains
    import domainfit.training

    def fail(*args, **kwargs):
        raise AssertionError("a finished trial or retraining ran again")

    monkeypatch.setattr(domainfit.training, "train", fail)
    again = run_tune(load_tune_config(tmp_path / "tune.yaml"))
    assert again["best"] == summary["best"] and len(_study(out).trials) == 3


def test_sigkill_mid_study_then_rerun_continues_the_same_study(tmp_path, tiny_bert, phrasebank_split):
    out = tmp_path / "out"
    space = {"train.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}
    path = _write(tmp_path, tiny_bert, phrasebank_split, space=space, tune={"trials": 2})
    proc = subprocess.Popen(
        [sys.executable, "-m", "domainfit", "tune", str(path), "--no-retrain"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = out / "trials" / "001" / "run.json"
    deadline = time.time() + 300
    while time.time() < deadline and not started.is_file() and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    assert started.is_file(), err
    before = _study(out).trials
    assert [t.state.name for t in before[:2]] == ["COMPLETE", "RUNNING"]
    first_run = (out / "trials" / "000" / "metrics.json").stat().st_mtime_ns

    assert main(["tune", str(path), "--no-retrain"]) == 0
    after = _study(out).trials
    assert [t.number for t in after] == [0, 1] and all(t.state.name == "COMPLETE" for t in after)
    assert after[0].value == before[0].value
    assert after[1].params == before[1].params  # trial 1 resumed, not drawn again
    assert (out / "trials" / "000" / "metrics.json").stat().st_mtime_ns == first_run  # not trained again
    assert json.loads((out / "trials" / "001" / "run.json").read_text())["status"] == "finished"
    assert not (out / "best").exists()  # --no-retrain


@pytest.mark.parametrize("sigint", ["handled", "ignored"])
def test_a_hopeless_trial_is_pruned_after_its_first_evaluation(tmp_path, tiny_bert, phrasebank_split, sigint):
    # "ignored": SIGINT as a background job of a non-interactive shell has it (`nohup domainfit tune ... &`),
    # where an interrupt from a watcher thread used to do nothing; pruning must not depend on SIGINT at all
    previous = signal.getsignal(signal.SIGINT)
    # set either way: pytest itself may have started as a background job, with SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    out = tmp_path / "out"
    space = {"train.learning_rate": {"low": 1e-9, "high": 1e-2, "log": True}}
    tune = {
        "trials": 2,
        "pruner": {"name": "median", "startup_trials": 1},
        "enqueue": [{"train.learning_rate": 1e-9}],
    }  # trial 1: a learning rate that cannot learn
    path = _write(tmp_path, tiny_bert, phrasebank_split, space=space, samples=160, tune=tune, epochs=3)
    try:
        run_tune(load_tune_config(path), retrain=False)
        assert signal.getsignal(signal.SIGINT) == (
            signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler
        )
    finally:
        signal.signal(signal.SIGINT, previous)

    default, hopeless = _study(out).trials
    assert default.state.name == "COMPLETE" and sorted(default.intermediate_values) == [1, 2, 3]
    assert hopeless.params == {"train.learning_rate": 1e-9}
    assert hopeless.state.name == "PRUNED" and len(hopeless.intermediate_values) < 3
    assert hopeless.intermediate_values[1] > default.intermediate_values[1]  # worse validation loss
    run_dir = out / "trials" / "001"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert not (run_dir / "metrics.json").exists()
    assert "1 complete, 1 pruned" in (out / "report.md").read_text()


def test_cli_refuses_an_unknown_search_space_key_naming_it(tmp_path, tiny_bert, phrasebank_split, capsys):
    space = {"train.learnin_rate": {"low": 1e-5, "high": 1e-3, "log": True}}
    path = _write(tmp_path, tiny_bert, phrasebank_split, space=space)
    assert main(["tune", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "key 'space.train.learnin_rate'" in err and "train.learning_rate" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "space, tune, key, words",
    [
        ({"train.learning_rate": {"low": 1e-3, "high": 1e-5}}, {}, "space.train.learning_rate", "below high"),
        ({"train.learning_rate": {"low": 1e-2, "high": 2.0}}, {}, "space.train.learning_rate", "2.0"),
        ({"train.learning_rate": {"low": 0.01, "high": 0.1}}, {}, "space.train.learning_rate", "own value 0.001"),
        ({"train.batch_size": {"low": 8.0, "high": 64.0}}, {}, "space.train.batch_size", "whole numbers"),
        ({"train.batch_size": {"choices": [8, 32]}}, {}, "space.train.batch_size", "own value 16"),
        ({"train.precision": {"low": 0, "high": 1}}, {}, "space.train.precision", "use one of: auto"),
        ({"output.dir": {"choices": ["a"]}}, {}, "space.output.dir", "not a hyperparameter"),
        (SPACE, {"sampler": {"name": "random", "startup_trials": 3}}, "sampler.startup_trials", "does not use"),
        (SPACE, {"metric": "f1_mcro"}, "metric", "f1_macro"),
        (SPACE, {"enqueue": [{"train.learning_rate": 5.0}]}, "enqueue[0]", "not a point"),
        (SPACE, {"trails": 3}, "trails", "unknown key"),
    ],
)
def test_tune_config_errors_name_the_key(tmp_path, tiny_bert, phrasebank_split, space, tune, key, words):
    path = _write(tmp_path, tiny_bert, phrasebank_split, space=space, tune=tune)
    with pytest.raises(ConfigError) as e:
        load_tune_config(path)
    assert e.value.key == key and e.value.path == str(path) and words in str(e.value)


def test_rerun_under_another_search_space_is_refused(tmp_path, tiny_bert, phrasebank_split):
    space = {"train.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}
    path = _write(tmp_path, tiny_bert, phrasebank_split, space=space, tune={"trials": 1})
    run_tune(load_tune_config(path), retrain=False)
    wider = _write(
        tmp_path,
        tiny_bert,
        phrasebank_split,
        tune={"trials": 1},
        space={"train.learning_rate": {"low": 1e-5, "high": 1e-2, "log": True}},
    )
    with pytest.raises(ConfigError, match="other settings .*space") as e:
        run_tune(load_tune_config(wider), retrain=False)
    assert e.value.key == "output_dir"


def test_without_optuna_the_message_names_the_extra(tmp_path, tiny_bert, phrasebank_split, monkeypatch, capsys):
    path = _write(tmp_path, tiny_bert, phrasebank_split, space=SPACE)
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    assert main(["tune", str(path)]) == 2
    err = capsys.readouterr().err
    assert 'pip install "domainfit[tune]"' in err and "Traceback" not in err
