"""Invariance stress tests: each perturbation on real English and Chinese text, the stress run's counts and
the CLI."""

from __future__ import annotations

import csv
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from assets import LABELS, build_classifier_dir
from conftest import DATASETS, PHRASEBANK_SPLIT

from domainfit.cli import main
from domainfit.data.perturb import HOMOPHONES, PERTURBATIONS, perturb_texts, text_script

CHNSENTICORP_DEV = DATASETS / "chnsenticorp" / "dev.tsv"


def _phrasebank(n: int) -> list[tuple[str, str]]:
    if not (PHRASEBANK_SPLIT / "test.csv").is_file():
        pytest.skip(f"shared datasets not found at {DATASETS}")
    with open(PHRASEBANK_SPLIT / "test.csv", encoding="utf-8", newline="") as f:
        return [(row["text"], row["label"]) for row, _ in zip(csv.DictReader(f), range(n))]


def _chinese(n: int) -> list[str]:
    if not CHNSENTICORP_DEV.is_file():
        pytest.skip(f"ChnSentiCorp not found at {CHNSENTICORP_DEV}")
    with open(CHNSENTICORP_DEV, encoding="utf-8") as f:
        return [line.rsplit("\t", 1)[0] for line, _ in zip(f, range(n))]


@pytest.fixture(scope="module")
def english() -> list[str]:
    return [text for text, _ in _phrasebank(60)]


@pytest.fixture(scope="module")
def chinese() -> list[str]:
    return _chinese(60)


# --- the perturbations -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PERTURBATIONS.names())
def test_every_perturbation_is_seeded(name, english, chinese):
    if not PERTURBATIONS.get(name).available():
        pytest.skip(f"{name} needs the {PERTURBATIONS.get(name).extra} extra")
    texts = english + chinese
    first, again = perturb_texts(name, texts, seed=3), perturb_texts(name, texts, seed=3)
    assert first == again
    assert any(new != old for new, old in zip(first, texts)), f"{name} changed none of the texts"


def test_random_perturbations_differ_between_seeds(english, chinese):
    assert perturb_texts("typos", english, seed=1) != perturb_texts("typos", english, seed=2)
    assert perturb_texts("homophones", chinese, seed=1) != perturb_texts("homophones", chinese, seed=2)


def _one_typo(old: str, new: str) -> bool:
    """``new`` is ``old`` with two neighbouring letters swapped or one letter dropped."""
    if len(new) == len(old) - 1:
        return any(old[:i] + old[i + 1 :] == new for i in range(len(old)))
    swaps = [i for i in range(len(old)) if old[i] != new[i]]
    return (
        len(new) == len(old)
        and len(swaps) == 2
        and swaps[1] == swaps[0] + 1
        and old[swaps[0]] == new[swaps[1]]
        and old[swaps[1]] == new[swaps[0]]
    )


def test_typos_change_inner_letters_of_long_words_only(english):
    for old, new in zip(english, perturb_texts("typos", english, seed=0)):
        old_words, new_words = (
            re.findall(r"[A-Za-z]+|[^A-Za-z]+", old),
            re.findall(r"[A-Za-z]+|[^A-Za-z]+", new),
        )
        assert len(old_words) == len(new_words)
        changed = [(a, b) for a, b in zip(old_words, new_words) if a != b]
        assert changed, old  # every PhraseBank sentence has a word of 4+ letters
        for a, b in changed:
            assert _one_typo(a, b) and a[0] == b[0] and a[-1] == b[-1], (a, b)


def test_casing_punctuation_and_whitespace_keep_the_words(english):
    assert perturb_texts("lowercase", english) == [t.lower() for t in english]
    assert perturb_texts("uppercase", english) == [t.upper() for t in english]
    for old, new in zip(english, perturb_texts("punctuation", english)):
        assert not re.search(r"[!?;:\"()]|[.,](?!\d)", new), new
        # numbers stay whole: 13.1 and 12,500 keep their point and comma
        assert re.findall(r"\d+(?:[.,]\d+)*", old) == re.findall(r"\d+(?:[.,]\d+)*", new)
    for old, new in zip(english, perturb_texts("whitespace", english, seed=5)):
        assert new != old and new.split() == old.split()


def test_numbers_switch_between_common_formats():
    texts = [
        "Sales were EUR 1,000 mn , up 5.0 % from 12500 units in 2007 .",
        "Margin 7.50% on 3,250,000 shares",
    ]
    assert perturb_texts("numbers", texts) == [
        "Sales were EUR 1000 mn , up 5% from 12,500 units in 2007 .",
        "Margin 7.5 % on 3250000 shares",
    ]


def test_numbers_keep_the_value_on_real_text(english):
    def values(text):
        return [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]

    changed = 0
    for old, new in zip(english, perturb_texts("numbers", english)):
        assert values(old) == values(new), (old, new)
        changed += old != new
    assert changed > 0


def test_homophones_replace_characters_from_the_table(chinese):
    for old, new in zip(chinese, perturb_texts("homophones", chinese, seed=0)):
        assert len(new) == len(old)
        swaps = [(a, b) for a, b in zip(old, new) if a != b]
        if any(char in HOMOPHONES for char in old):
            assert swaps, old
        assert all(HOMOPHONES[a] == b for a, b in swaps), swaps


def test_width_perturbations_on_chinese(chinese):
    full = perturb_texts("full-width", chinese)
    assert all(not re.search(r"[!-~]", text) for text in full)  # no ASCII letter, digit or mark left
    assert perturb_texts("half-width", full) == [t.replace("\u3000", " ") for t in perturb_texts("half-width", chinese)]
    # ChnSentiCorp's full-width commas and exclamation marks become ASCII
    half = perturb_texts("half-width", ["房间很大，早餐不错！"])
    assert half == ["房间很大,早餐不错!"]


def test_whitespace_inserts_spaces_into_chinese(chinese):
    for old, new in zip(chinese, perturb_texts("whitespace", chinese, seed=1)):
        assert new != old and new.replace(" ", "") == old.replace(" ", "")


def test_simplified_and_traditional_chinese(chinese):
    pytest.importorskip("opencc", reason="the trust extra (opencc) is not installed")
    assert perturb_texts("zh-traditional", ["这间酒店环境和服务态度"]) == ["這間酒店環境和服務態度"]
    assert perturb_texts("zh-simplified", ["這間酒店環境和服務態度"]) == ["这间酒店环境和服务态度"]
    # ChnSentiCorp mixes both scripts: each conversion changes some of its texts
    assert sum(a != b for a, b in zip(chinese, perturb_texts("zh-traditional", chinese))) > len(chinese) // 2


def test_text_script(english, chinese):
    assert text_script(english) == "latin" and text_script(chinese) == "cjk"


# --- the stress run --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_classifier_dir(tmp_path_factory.mktemp("stress-model") / "model")


def test_stress_counts_add_up_on_a_tiny_model(model_dir):
    import domainfit
    from domainfit.serving.stress import stress_test

    rows = _phrasebank(40)
    texts, labels = [t for t, _ in rows], [label for _, label in rows]
    predictor = domainfit.load(model_dir, backend="torch")
    result = stress_test(
        predictor, texts, labels, perturbations=["typos", "lowercase", "numbers", "punctuation"], seed=0
    )
    base = predictor.predict_proba(texts).argmax(1)
    gold = np.array([LABELS.index(label) for label in labels])
    assert result["n"] == 40 and result["accuracy"] == pytest.approx((base == gold).mean(), abs=1e-6)
    for name, s in result["perturbations"].items():
        assert s["flips"] == s["right_to_wrong"] + s["wrong_to_right"] + s["wrong_to_wrong"] <= s["changed"] <= 40
        assert s["correct_after"] == s["correct_before"] - s["right_to_wrong"] + s["wrong_to_right"]
        assert s["accuracy_after"] == pytest.approx(s["correct_after"] / 40, abs=1e-6)
        assert s["accuracy_drop"] == pytest.approx(s["accuracy_before"] - s["accuracy_after"], abs=1e-5)
        # the same numbers from scratch: predict every perturbed text and compare
        perturbed = perturb_texts(name, texts, seed=0)
        after = predictor.predict_proba(perturbed).argmax(1)
        assert s["changed"] == sum(a != b for a, b in zip(texts, perturbed))
        assert s["flips"] == int((after != base).sum()), name
        assert s["correct_after"] == int((after == gold).sum())
        assert len(s["examples"]) == min(s["flips"], 5)
        for e in s["examples"]:
            assert e["before"]["label"] != e["after"]["label"] and e["text"] == texts[e["index"]][:300]
    # the MiniLM tokenizer lower-cases: lower-case text must give the same answers
    assert result["perturbations"]["lowercase"]["changed"] == 40
    assert result["perturbations"]["lowercase"]["flips"] == 0
    assert result["perturbations"]["typos"]["flips"] > 0  # random weights: a typo changes some answers


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def test_stress_command_writes_json_and_markdown(model_dir, tmp_path, capsys):
    data = _write_csv(tmp_path / "small.csv", _phrasebank(12))
    out = tmp_path / "stress"

    assert main(["stress", str(model_dir), str(data), "--output", str(out), "--backend", "torch"]) == 0

    result = json.loads((out / "stress.json").read_text(encoding="utf-8"))
    assert result["n"] == 12 and result["data"] == str(data)
    # English data: the Latin-script perturbations run, the Chinese ones are named as left out
    assert {"typos", "lowercase", "punctuation", "numbers", "whitespace"} <= set(result["perturbations"])
    assert "homophones" in result["skipped"] and "homophones" not in result["perturbations"]
    report = (out / "stress.md").read_text(encoding="utf-8")
    assert "## Robustness" in report and "| typos | 12 |" in report
    assert "Report:" in capsys.readouterr().out


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "domainfit", "stress", *args], capture_output=True, text=True)


def test_stress_command_refuses_an_unknown_perturbation_in_one_message(model_dir, tmp_path):
    data = _write_csv(tmp_path / "small.csv", _phrasebank(3))
    proc = _cli(str(model_dir), str(data), "--perturbations", "typos,typo-s,numbers")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1
    assert "key '--perturbations'" in proc.stderr and "unknown perturbation 'typo-s'" in proc.stderr
    assert "Did you mean 'typos'?" in proc.stderr
    assert not (tmp_path / "stress-small").exists()


def test_stress_command_names_the_line_of_an_unknown_label(model_dir, tmp_path, capsys):
    rows = _phrasebank(4)
    rows[2] = (rows[2][0], "bullish")
    data = _write_csv(tmp_path / "bad.csv", rows)
    out = tmp_path / "out"
    assert main(["stress", str(model_dir), str(data), "--output", str(out), "--backend", "torch"]) == 2
    err = capsys.readouterr().err
    assert f"{data}, line 4, column 'label': label 'bullish' is not one the model knows" in err
    assert not (out / "stress.json").exists()


def test_stress_command_refuses_missing_data_and_other_tasks(model_dir, tmp_path, capsys):
    assert main(["stress", str(model_dir), str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err
    other = build_classifier_dir(tmp_path / "ml", settings={"task": "multi-label-classification", "max_length": 64})
    data = _write_csv(tmp_path / "small.csv", _phrasebank(3))
    assert main(["stress", str(other), str(data)]) == 2
    assert "tests single-label text classifiers" in capsys.readouterr().err


def test_missing_opencc_is_one_message_naming_the_extra(model_dir, tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "opencc" else real(name, *a))
    data = _write_csv(tmp_path / "small.csv", _phrasebank(3))
    assert main(["stress", str(model_dir), str(data), "--perturbations", "zh-traditional"]) == 2
    err = capsys.readouterr().err
    assert "needs opencc" in err and 'pip install "domainfit[trust]"' in err


# --- the record in the training run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_bert, phrasebank_split) -> Path:
    from test_training import write_config

    from domainfit.tasks import load_run_config
    from domainfit.training import train

    tmp = tmp_path_factory.mktemp("stress-run")
    config = write_config(tmp, tiny_bert, phrasebank_split, tmp / "out", epochs=1, eval_every=2, best_metric="loss")
    train(load_run_config(config, ["data.max_train_samples=48"]))
    return tmp / "out"


@pytest.fixture
def run(trained_run, tmp_path) -> Path:
    """A fresh copy of the trained run folder for each test (each one writes into it)."""
    return Path(shutil.copytree(trained_run, tmp_path / "run", symlinks=True))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp")]


def _stress(run: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["stress", str(run / "model"), str(data), "--output", str(out), "--backend", "torch", *extra])


def test_stress_records_its_results_in_the_training_run(run, tmp_path, capsys):
    import domainfit
    from domainfit.evaluation.robustness import robustness_rows, robustness_section

    rows = _phrasebank(12)
    data = _write_csv(tmp_path / "small.csv", rows)
    before = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    report_before = (run / "report.md").read_text(encoding="utf-8")
    assert "## Robustness" not in report_before

    assert _stress(run, data, tmp_path / "s1", "--perturbations", "typos,lowercase,numbers") == 0

    written = json.loads((tmp_path / "s1" / "stress.json").read_text(encoding="utf-8"))
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["stress"] == written  # the record is the stress output, whole
    assert {k: v for k, v in metrics.items() if k != "stress"} == before  # the training results untouched
    assert written["data"] == str(data)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", written["date"])
    assert set(written["perturbations"]) == {"typos", "lowercase", "numbers"}
    # the numbers are the model's: predict the perturbed texts from scratch
    texts, gold = [t for t, _ in rows], np.array([LABELS.index(label) for _, label in rows])
    predictor = domainfit.load(run / "model", backend="torch")
    base = predictor.predict_proba(texts).argmax(1)
    for name, scores in written["perturbations"].items():
        perturbed = perturb_texts(name, texts, seed=0)
        after = predictor.predict_proba(perturbed).argmax(1)
        changed = [i for i, (a, b) in enumerate(zip(texts, perturbed)) if a != b]
        assert scores["changed"] == len(changed) and written["n"] == 12
        assert scores["flips"] == int((after != base).sum())
        assert scores["flip_rate"] == pytest.approx(scores["flips"] / len(changed), abs=1e-6)
        drop = ((base == gold).sum() - (after == gold).sum()) / 12
        assert scores["accuracy_drop"] == pytest.approx(drop, abs=1e-6)
    # the model card, report.md and report.html show them
    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    table_rows = ["| " + " | ".join(row) + " |" for row in robustness_rows(written)]
    assert len(table_rows) == 3 and all(row in card for row in table_rows)
    section = robustness_section(written)
    report = (run / "report.md").read_text(encoding="utf-8")
    assert section in report and report.replace(section + "\n\n", "") == report_before  # the rest as trained
    page = (run / "report.html").read_text(encoding="utf-8")
    robustness = re.search(r"<section id='stress'>.*?</section>", page, re.S).group()
    assert "Not measured" not in robustness and "<td>typos</td>" in robustness
    assert not _temp_files(run)
    assert f"Recorded in the run: {run / 'metrics.json'}" in capsys.readouterr().out

    # a second stress test replaces the first, it does not add to it
    assert _stress(run, data, tmp_path / "s2", "--perturbations", "lowercase") == 0
    second = json.loads((tmp_path / "s2" / "stress.json").read_text(encoding="utf-8"))
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["stress"] == second and set(second["perturbations"]) == {"lowercase"}
    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    assert "| lowercase |" in card and "| typos |" not in card and card.count("## Robustness") == 1
    report = (run / "report.md").read_text(encoding="utf-8")
    assert report.count("## Robustness") == 1 and "| typos |" not in report


def test_no_record_leaves_the_run_folder_byte_identical(run, tmp_path, caplog):
    data = _write_csv(tmp_path / "small.csv", _phrasebank(6))
    before = _files(run)
    with caplog.at_level(logging.INFO, logger="domainfit.serving.stress_record"):
        assert _stress(run, data, tmp_path / "s", "--perturbations", "typos", "--no-record") == 0
    assert _files(run) == before
    assert (tmp_path / "s" / "stress.json").is_file()
    assert "--no-record: nothing is recorded" in caplog.text


def test_a_bare_model_folder_gets_only_the_stress_output(model_dir, tmp_path, caplog):
    data = _write_csv(tmp_path / "small.csv", _phrasebank(6))
    around = _files(model_dir.parent)
    with caplog.at_level(logging.INFO, logger="domainfit.serving.stress_record"):
        assert (
            main(
                [
                    "stress",
                    str(model_dir),
                    str(data),
                    "--output",
                    str(tmp_path / "s"),
                    "--backend",
                    "torch",
                    "--perturbations",
                    "typos",
                ]
            )
            == 0
        )
    assert _files(model_dir.parent) == around
    assert "is not the model/ folder of a training run" in caplog.text
    assert "nothing is recorded" in caplog.text


def test_a_failed_record_leaves_metrics_json_as_it_was(run, tmp_path, monkeypatch, capsys):
    import errno
    import os

    data = _write_csv(tmp_path / "small.csv", _phrasebank(6))
    before = (run / "metrics.json").read_bytes()
    real = os.replace

    def full_disk(src, dst):
        if Path(dst).name == "metrics.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", full_disk)
    assert _stress(run, data, tmp_path / "s", "--perturbations", "typos") == 2
    err = capsys.readouterr().err
    assert "cannot record the stress results in the run" in err and "the disk is full" in err
    assert "Traceback" not in err and str(run) in err
    assert (run / "metrics.json").read_bytes() == before and not _temp_files(run)


_KILLED_WRITER = """
import os, signal, sys
real = os.replace
def replace(src, dst):  # kill -9 between writing metrics.json's temp file and moving it into place
    if os.path.basename(dst) == "metrics.json":
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
os.replace = replace
from domainfit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_killed_record_keeps_the_old_metrics_and_the_next_one_cleans_up(run, tmp_path):
    data = _write_csv(tmp_path / "small.csv", _phrasebank(6))
    before = (run / "metrics.json").read_bytes()
    args = [
        "stress",
        str(run / "model"),
        str(data),
        "--output",
        str(tmp_path / "s"),
        "--backend",
        "torch",
        "--perturbations",
        "typos",
    ]
    proc = subprocess.run([sys.executable, "-c", _KILLED_WRITER, *args], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert (run / "metrics.json").read_bytes() == before  # the old file, whole
    assert [p.name.startswith(".metrics.json.") for p in _temp_files(run)] == [True]  # what the kill left

    assert main(args) == 0  # the next record removes it
    assert not _temp_files(run)
    assert json.loads((run / "metrics.json").read_text(encoding="utf-8"))["stress"]["n"] == 6


def test_a_run_folder_in_use_is_refused_before_the_model_loads(run, tmp_path, capsys):
    from domainfit.training.run_dir import RunLock

    data = _write_csv(tmp_path / "small.csv", _phrasebank(6))
    before = _files(run)
    holder = RunLock(run)
    holder.acquire()
    try:
        lock_text = (run / ".lock").read_bytes()
        assert _stress(run, data, tmp_path / "s", "--perturbations", "typos") == 2
    finally:
        holder.release()
    err = capsys.readouterr().err
    assert "another domainfit process is writing to the run folder" in err and "--no-record" in err
    assert not (tmp_path / "s").exists()
    assert _files(run) == {**before, ".lock": lock_text}
