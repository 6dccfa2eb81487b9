"""Bad input gets one clear message (file, line, column or key; what was expected; how to fix), exit code 2,
no traceback, and nothing written to the output folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from domainfit.cli import main

GOOD_ROWS = [
    ("Profit rose sharply .", "positive"),
    ("Sales fell .", "negative"),
    ("The meeting is on Monday .", "neutral"),
]


def write_csv(path: Path, rows, header="text,label") -> Path:
    path.write_text(header + "\n" + "".join(f'"{t}",{l}\n' for t, l in rows), encoding="utf-8")
    return path


def many_rows(n_per_class=12):
    return [(f"{t} number {i}", l) for i in range(n_per_class) for t, l in GOOD_ROWS]


@pytest.fixture
def good_csv(tmp_path):
    return write_csv(tmp_path / "train.csv", many_rows())


def config(tmp_path: Path, model: Path, train: Path, extra: str = "", **data) -> Path:
    data_lines = "".join(f"  {k}: {v}\n" for k, v in data.items())
    text = (
        f"model:\n  name: {model}\ndata:\n  train: {train}\n{data_lines}"
        f"train:\n  epochs: 1\noutput:\n  dir: {tmp_path / 'out'}\n{extra}"
    )
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run_train(capsys, cfg: Path, *overrides: str) -> str:
    code = main(["train", str(cfg), *overrides])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert not (cfg.parent / "out").exists(), "nothing may be written for a run that failed on bad input"
    return err


def test_missing_train_file(tmp_path, tiny_bert, capsys):
    err = run_train(capsys, config(tmp_path, tiny_bert, tmp_path / "trian.csv"))
    assert "trian.csv" in err and "How to fix" in err


def test_missing_column_suggests_the_near_miss(tmp_path, tiny_bert, capsys):
    train = write_csv(tmp_path / "t.csv", many_rows(), header="sentence,label")
    err = run_train(capsys, config(tmp_path, tiny_bert, train))
    assert "'text'" in err and "sentence" in err


def test_empty_file(tmp_path, tiny_bert, capsys):
    (tmp_path / "empty.csv").write_text("")
    err = run_train(capsys, config(tmp_path, tiny_bert, tmp_path / "empty.csv"))
    assert "empty.csv" in err


def test_empty_text_names_the_line(tmp_path, tiny_bert, capsys):
    train = write_csv(tmp_path / "t.csv", many_rows() + [("   ", "positive")])
    err = run_train(capsys, config(tmp_path, tiny_bert, train))
    assert "line 38" in err


def test_ragged_row_names_the_line(tmp_path, tiny_bert, capsys):
    train = tmp_path / "t.csv"
    train.write_text("text,label\nfine,positive\nnot fine,neutral,extra\n", encoding="utf-8")
    err = run_train(capsys, config(tmp_path, tiny_bert, train))
    assert "line 3" in err


def test_undecodable_bytes_suggest_an_encoding(tmp_path, tiny_bert, capsys):
    train = tmp_path / "t.csv"
    train.write_bytes("text,label\nfine,positive\nAhlstr\u00f6m sales fell,negative\n".encode("latin-1"))
    err = run_train(capsys, config(tmp_path, tiny_bert, train))
    assert "line 3" in err and "encoding" in err


def test_label_unseen_in_training(tmp_path, tiny_bert, good_csv, capsys):
    val = write_csv(tmp_path / "val.csv", GOOD_ROWS + [("Shares were flat .", "mixed")])
    err = run_train(capsys, config(tmp_path, tiny_bert, good_csv, validation=val))
    assert "'mixed'" in err and "val.csv" in err and "line 5" in err


def test_class_too_small_to_stratify(tmp_path, tiny_bert, capsys):
    train = write_csv(tmp_path / "t.csv", many_rows() + [("A rare event .", "rare")])
    err = run_train(capsys, config(tmp_path, tiny_bert, train))
    assert "'rare'" in err and "stratify" in err


def test_unknown_config_key_suggests_the_near_miss(tmp_path, tiny_bert, good_csv, capsys):
    err = run_train(capsys, config(tmp_path, tiny_bert, good_csv), "train.learnig_rate=1e-4")
    assert "train.learnig_rate" in err and "learning_rate" in err


def test_unknown_section(tmp_path, tiny_bert, good_csv, capsys):
    err = run_train(capsys, config(tmp_path, tiny_bert, good_csv, extra="trian:\n  epochs: 2\n"))
    assert "'trian'" in err and "train" in err


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.learning_rate=-1e-5", "train.learning_rate"),
        ("train.epochs=0", "train.epochs"),
        ("train.epochs=three", "train.epochs"),
        ("train.batch_size=2.5", "train.batch_size"),
        ("train.precision=fp8", "train.precision"),
        ("train.best_metric=f1_makro", "f1_macro"),
        ("task=text-clasification", "text-classification"),
        ("data.format=xlsx", "data.format"),
        ("model.max_length=0", "model.max_length"),
        ("train", "dotted.key=value"),
    ],
)
def test_nonsense_values_name_the_key(tmp_path, tiny_bert, good_csv, capsys, override, expected):
    err = run_train(capsys, config(tmp_path, tiny_bert, good_csv), override)
    assert expected in err


def test_invalid_yaml_names_line_and_column(tmp_path, capsys):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("model:\n  name: x\n data: [\n")
    err = run_train(capsys, cfg)
    assert "config.yaml" in err and "line" in err


def test_missing_config_file(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_missing_model_folder(tmp_path, good_csv, capsys):
    err = run_train(capsys, config(tmp_path, tmp_path / "no-such-model", good_csv))
    assert "no-such-model" in err and "model.name" in err


def test_folder_that_is_not_a_model(tmp_path, good_csv, capsys):
    (tmp_path / "notmodel").mkdir()
    err = run_train(capsys, config(tmp_path, tmp_path / "notmodel", good_csv))
    assert "config.json" in err


def test_unreachable_hub_model_offline(tmp_path, good_csv, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = run_train(capsys, config(tmp_path, "nobody-org/no-such-bert", good_csv))
    assert "no-such-bert" in err and "HF_HUB_OFFLINE" in err


def test_jsonl_with_broken_line(tmp_path, tiny_bert, capsys):
    train = tmp_path / "t.jsonl"
    train.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": \n', encoding="utf-8")
    err = run_train(capsys, config(tmp_path, tiny_bert, train))
    assert "line 2" in err


def test_binary_file_given_as_csv(tmp_path, tiny_bert, capsys):
    train = tmp_path / "t.csv"
    train.write_bytes(b"PK\x03\x04\x00\x00binary\x00stuff")
    err = run_train(capsys, config(tmp_path, tiny_bert, train))
    assert "t.csv" in err


def test_predict_on_missing_model_folder(tmp_path, good_csv, capsys):
    code = main(["predict", str(tmp_path / "nomodel"), str(good_csv), "--output", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "nomodel" in err and "Traceback" not in err
    assert not (tmp_path / "p.csv").exists()


def test_evaluate_with_label_the_model_does_not_know(tmp_path, tiny_bert, capsys):
    data = write_csv(tmp_path / "eval.csv", [("A bright day .", "joy")])
    code = main(["evaluate", str(tiny_bert), str(data), "--output", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert code == 2 and "'joy'" in err and "line 2" in err


def test_evaluate_on_a_task_it_does_not_score_says_what_to_do(tmp_path, tiny_bert, capsys):
    import shutil

    model = tmp_path / "ner-model"
    shutil.copytree(tiny_bert, model)
    (model / "domainfit.json").write_text(json.dumps({"task": "token-classification"}))
    data = write_csv(tmp_path / "eval.csv", [("A bright day .", "joy")])
    code = main(["evaluate", str(model), str(data), "--output", str(tmp_path / "ev")])
    err = capsys.readouterr().err
    assert code == 2 and "token-classification" in err and "data.test" in err and "Traceback" not in err
    assert not (tmp_path / "ev").exists()


def test_a_real_process_exits_2_without_traceback(tmp_path, tiny_bert, good_csv):
    """The same contract seen from outside: exit status and stderr of the installed command."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "domainfit",
            "train",
            str(config(tmp_path, tiny_bert, good_csv)),
            "train.learning_rate=-1",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "train.learning_rate" in proc.stderr


# ----------------------------------------------------------------------------------------------
# Data readers: special files, mixed encodings, conflicting labels, column numbers
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no named pipes on this platform")
def test_named_pipe_as_training_file_exits_2_instead_of_hanging(tmp_path, tiny_bert):
    import os

    fifo = tmp_path / "train.csv"
    os.mkfifo(fifo)
    try:
        cfg = config(tmp_path, tiny_bert, fifo)
        proc = subprocess.run(
            [sys.executable, "-m", "domainfit", "train", str(cfg)], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # release a reader still waiting
        pytest.fail("domainfit waited for a writer on a named pipe")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "named pipe" in proc.stderr and str(fifo) in proc.stderr
    assert not (tmp_path / "out").exists()


def test_mixed_encodings_name_the_first_line_that_is_not_utf8(tmp_path, tiny_bert, capsys):
    train = tmp_path / "t.csv"
    rows = "".join(f'"Café sales rose {i} .",positive\n' for i in range(40)).encode("utf-8")
    train.write_bytes(b"text,label\n" + rows + "Ahlström sales fell,negative\n".encode("cp1252"))
    err = run_train(capsys, config(tmp_path, tiny_bert, train))
    assert "line 42" in err and "mixes encodings" in err and "`encoding:" not in err


def test_conflicting_labels_error_policy_names_both_lines(tmp_path, tiny_bert, capsys):
    train = write_csv(tmp_path / "t.csv", many_rows() + [("Sales fell . number 0", "positive")])
    err = run_train(capsys, config(tmp_path, tiny_bert, train), "data.conflicting_labels=error")
    assert "line 38" in err and "line 3" in err and "data.conflicting_labels" in err


def test_unknown_conflicting_labels_policy_suggests_the_near_miss(tmp_path, tiny_bert, good_csv, capsys):
    err = run_train(capsys, config(tmp_path, tiny_bert, good_csv), "data.conflicting_labels=majorty")
    assert "data.conflicting_labels" in err and "'majority'" in err


def test_column_number_out_of_range_from_an_override(tmp_path, tiny_bert, capsys):
    train = tmp_path / "t.csv"
    train.write_text("".join(f"{t},{l}\n" for t, l in many_rows()), encoding="utf-8")
    err = run_train(
        capsys, config(tmp_path, tiny_bert, train), "data.header=false", "data.text_column=0", "data.label_column=5"
    )
    assert "column 5" in err and "found 2" in err


def test_predict_selects_columns_by_number_without_header(tmp_path, tiny_bert, capsys):
    data = tmp_path / "in.csv"
    data.write_text("7,Profit rose sharply .\n8,Sales fell .\n", encoding="utf-8")
    out = tmp_path / "p.csv"
    code = main(["predict", str(tiny_bert), str(data), "--output", str(out), "--no-header", "--text-column", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    rows = out.read_text(encoding="utf-8").splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["Profit rose sharply .", "Sales fell ."]


def test_evaluate_column_number_out_of_range_exits_2(tmp_path, tiny_bert, capsys):
    data = tmp_path / "ev.csv"
    data.write_text("Profit rose sharply .,LABEL_0\n", encoding="utf-8")
    code = main(
        [
            "evaluate",
            str(tiny_bert),
            str(data),
            "--output",
            str(tmp_path / "ev"),
            "--no-header",
            "--text-column",
            "0",
            "--label-column",
            "3",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "column 3" in err and "Traceback" not in err
    assert not (tmp_path / "ev").exists()


def test_offline_fails_at_once_for_a_hub_model(tmp_path):
    """--offline never waits for the network: an uncached hub id is one message naming offline mode, exit 2."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model:\n  name: some-org/not-cached-model\ndata:\n  train: {tmp_path / 'x.csv'}\n")
    (tmp_path / "x.csv").write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(40)))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache
    proc = subprocess.run(
        [sys.executable, "-m", "domainfit", "--offline", "train", str(cfg), f"output.dir={tmp_path / 'out'}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2 and "offline" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "some-org/not-cached-model" in proc.stderr and "offline mode" in proc.stderr


def test_a_closed_pipe_ends_quietly():
    # `domainfit tasks | head -1`: the reader has gone before the command writes; no traceback, exit 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "domainfit", "tasks"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc.stdout.close()  # long before the interpreter has started and written anything
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
