"""predict / evaluate: bad inputs and outputs are refused before the model runs (exit 2, one message, no
traceback), a full disk keeps the previous output, and temp files do not pile up."""

from __future__ import annotations

import csv
import errno
import os
import subprocess
from pathlib import Path

import pytest
from assets import TEXTS, build_classifier_dir

from domainfit.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_classifier_dir(tmp_path_factory.mktemp("files") / "model")


@pytest.fixture
def texts_csv(tmp_path) -> Path:
    path = tmp_path / "in.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([t, "neutral"] for t in TEXTS)
    return path


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the model is loaded: the checks must come before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input or output was refused")

    monkeypatch.setattr("domainfit.load", refuse)


def run(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ---- item 1: outputs checked before inference


def test_predict_output_that_is_a_folder(tmp_path, model_dir, texts_csv, capsys, no_model_load):
    (tmp_path / "preds").mkdir()
    err = run(capsys, "predict", str(model_dir), str(texts_csv), "--output", str(tmp_path / "preds"))
    assert "existing folder" in err and str(tmp_path / "preds") in err
    assert "predictions.csv" in err  # the fix gives a file name


def test_predict_output_in_a_read_only_folder_is_refused_by_the_probe(model_dir, texts_csv, capsys, no_model_load):
    # /proc passes os.access(W_OK) for root but takes no new files: only the probe write catches it
    err = run(capsys, "predict", str(model_dir), str(texts_csv), "--output", "/proc/domainfit-test/out.csv")
    assert "/proc/domainfit-test/out.csv" in err and "cannot be written" in err and "/proc" in err


def test_predict_output_in_a_folder_without_write_permission(
    tmp_path, model_dir, texts_csv, capsys, monkeypatch, no_model_load
):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    err = run(capsys, "predict", str(model_dir), str(texts_csv), "--output", str(locked / "out.csv"))
    assert str(locked / "out.csv") in err and "no permission" in err


def test_predict_output_below_a_file(tmp_path, model_dir, texts_csv, capsys, no_model_load):
    (tmp_path / "notes.txt").write_text("x")
    out = tmp_path / "notes.txt" / "o.csv"
    err = run(capsys, "predict", str(model_dir), str(texts_csv), "--output", str(out))
    assert "notes.txt is a file, not a folder" in err


def test_predict_output_in_a_missing_folder_creates_it(tmp_path, model_dir, texts_csv):
    out = tmp_path / "new" / "deeper" / "out.csv"
    assert main(["predict", str(model_dir), str(texts_csv), "--output", str(out)]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == len(TEXTS) + 1


def test_evaluate_output_that_is_a_file(tmp_path, model_dir, texts_csv, capsys, no_model_load):
    (tmp_path / "ev").write_text("not a folder")
    err = run(capsys, "evaluate", str(model_dir), str(texts_csv), "--output", str(tmp_path / "ev"))
    assert "is a file" in err and str(tmp_path / "ev") in err
    assert (tmp_path / "ev").read_text() == "not a folder"


def test_evaluate_refuses_to_overwrite_a_training_run_folder(tmp_path, model_dir, texts_csv, capsys, no_model_load):
    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "model" / "config.json").write_text("{}")
    (run_dir / "report.md").write_text("the training report")
    err = run(capsys, "evaluate", str(model_dir), str(texts_csv), "--output", str(run_dir))
    assert "training run's folder" in err
    assert (run_dir / "report.md").read_text() == "the training report"


def test_evaluate_read_only_output_is_refused_before_predicting(model_dir, texts_csv, capsys, no_model_load):
    err = run(capsys, "evaluate", str(model_dir), str(texts_csv), "--output", "/proc/domainfit-eval")
    assert "/proc/domainfit-eval" in err and "cannot be written" in err


def test_evaluate_into_an_existing_folder_replaces_its_files_as_predict_does(tmp_path, model_dir, texts_csv):
    out = tmp_path / "ev"
    out.mkdir()
    (out / "metrics.json").write_text("old")
    (out / "keep.txt").write_text("mine")
    assert main(["evaluate", str(model_dir), str(texts_csv), "--output", str(out)]) == 0
    assert '"accuracy"' in (out / "metrics.json").read_text()
    assert (out / "keep.txt").read_text() == "mine"


# ---- item 2: a full disk


def test_disk_full_keeps_the_previous_output_and_no_temp_file(tmp_path, model_dir, texts_csv, capsys, monkeypatch):
    out = tmp_path / "preds.csv"
    out.write_text("previous predictions\n", encoding="utf-8")
    real_writer = csv.writer

    class FullDisk:
        """Writes the header, then the disk is full."""

        def __init__(self, f):
            self.inner, self.rows = real_writer(f), 0

        def writerow(self, row):
            self.rows += 1
            if self.rows > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.inner.writerow(row)

    monkeypatch.setattr(csv, "writer", FullDisk)
    err = run(capsys, "predict", str(model_dir), str(texts_csv), "--output", str(out))
    assert str(out) in err and "the disk is full" in err and "free of" in err and str(tmp_path) in err
    assert "previous file is unchanged" in err
    assert out.read_text(encoding="utf-8") == "previous predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "preds.csv"]


# ---- item 3: temp files of killed runs


def test_successful_predict_removes_temp_files_of_dead_processes(tmp_path, model_dir, texts_csv):
    out = tmp_path / "p.csv"
    dead = tmp_path / f".p.csv.{dead_pid()}.tmp"
    legacy = tmp_path / ".p.csv.tmp"  # the name used before temp files carried a process id
    alive = tmp_path / f".p.csv.{os.getppid()}.tmp"  # another run writing the same output right now
    other = tmp_path / f".q.csv.{dead_pid()}.tmp"  # another output's: not ours to judge
    for path in (dead, legacy, alive, other):
        path.write_text("half")
    assert main(["predict", str(model_dir), str(texts_csv), "--output", str(out)]) == 0
    assert not dead.exists() and not legacy.exists()
    assert alive.exists() and other.exists()


# ---- item 5: inputs that are not readable files


def test_input_that_is_a_folder(tmp_path, model_dir, capsys, no_model_load):
    (tmp_path / "data").mkdir()
    err = run(capsys, "predict", str(model_dir), str(tmp_path / "data"), "--output", str(tmp_path / "o.csv"))
    assert "found a folder" in err and str(tmp_path / "data") in err


def test_input_that_is_a_fifo_is_refused_without_blocking(tmp_path, model_dir, capsys, no_model_load):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    err = run(capsys, "evaluate", str(model_dir), str(fifo), "--output", str(tmp_path / "ev"))
    assert "FIFO" in err and str(fifo) in err
    assert not (tmp_path / "ev").exists()


def test_unreadable_input(tmp_path, model_dir, texts_csv, capsys, monkeypatch, no_model_load):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == texts_csv else real_access(p, mode))
    err = run(capsys, "predict", str(model_dir), str(texts_csv), "--output", str(tmp_path / "o.csv"))
    assert "no permission to read" in err and str(texts_csv) in err
    assert not (tmp_path / "o.csv").exists()
