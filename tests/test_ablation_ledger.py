"""The ablation benchmark's ledger (benchmarks/ablation_robust.py): a finished run is recorded once, reused
without its work folder, and a torn last line (a killed write) neither hides the other runs nor the next one.

The script is research, not part of the package, so it is run as its users run it (a subprocess with
``--report-only``: it records finished run folders and trains nothing) and judged by its table and ledger."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "ablation_robust.py"


def _finished_run(folder: Path, f1: float) -> None:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": "finished", "finished": "2026-12-02T06:00:00"}))
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "test": {"f1_macro": f1, "accuracy": 0.9},
                "train": {"train_runtime_s": 12.0},
                "data": {"parameters": {"trainable_percent": 100.0}},
                "history": [{"train_loss": 0.5}],
            }
        )
    )


def _report(tmp_path: Path, *args: str) -> str:
    """Run the ablation on the all-data setting, training nothing; returns the printed report."""
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--config",
            str(tmp_path / "cfg.yaml"),
            "--work-dir",
            str(tmp_path / "work"),
            "--ledger",
            str(tmp_path / "ledger.jsonl"),
            "--report-only",
            "--shots",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _row(report: str, remedy: str) -> list[str]:
    """The table cells of one remedy: remedy, macro-F1, accuracy, paired, trainable, s/run, RSS, seeds, evidence."""
    (line,) = [line for line in report.splitlines() if line.startswith(f"| {remedy} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def _ledger(tmp_path: Path) -> list[str]:
    return (tmp_path / "ledger.jsonl").read_text().splitlines()


def test_finished_run_is_recorded_and_reused_without_its_folder(tmp_path):
    _finished_run(tmp_path / "work" / "full" / "plain" / "seed42", f1=0.81)
    row = _row(_report(tmp_path, "--remedies", "plain", "--seeds", "42", "--set", "train.num_threads=1"), "plain")
    assert row[1] == "0.8100 ± 0.0000" and row[7] == "1/1" and row[8] == "final train loss 0.5"
    entry = json.loads(_ledger(tmp_path)[0])
    assert entry["overrides"] == ["train.seed=42", "train.num_threads=1"] and entry["remedy"] == "plain"

    shutil.rmtree(tmp_path / "work")  # a fresh machine: only the ledger is left
    row = _row(_report(tmp_path, "--remedies", "plain", "--seeds", "42", "--set", "train.num_threads=1"), "plain")
    assert row[1] == "0.8100 ± 0.0000" and row[7] == "1/1"
    # other overrides are another run: not taken from the ledger
    row = _row(_report(tmp_path, "--remedies", "plain", "--seeds", "42", "--set", "train.num_threads=2"), "plain")
    assert row[1] == "-" and row[7] == "0/1"
    assert len(_ledger(tmp_path)) == 1


def test_torn_last_line_is_skipped_and_not_glued_to_the_next_run(tmp_path):
    args = ("--remedies", "plain", "--set", "train.num_threads=1")
    _finished_run(tmp_path / "work" / "full" / "plain" / "seed42", f1=0.81)
    _report(tmp_path, *args, "--seeds", "42")
    torn = '{"setting": "full", "remedy": "lora", "se'
    with open(tmp_path / "ledger.jsonl", "a") as f:
        f.write(torn)  # killed mid-write
    _finished_run(tmp_path / "work" / "full" / "plain" / "seed43", f1=0.79)
    row = _row(_report(tmp_path, *args, "--seeds", "42", "43"), "plain")
    assert row[1] == "0.8000 ± 0.0141" and row[7] == "2/2"
    lines = _ledger(tmp_path)
    assert len(lines) == 3 and lines[1] == torn and json.loads(lines[2])["seed"] == 43

    shutil.rmtree(tmp_path / "work")  # both runs come back from the ledger alone, past the torn line
    row = _row(_report(tmp_path, *args, "--seeds", "42", "43"), "plain")
    assert row[1] == "0.8000 ± 0.0141" and row[7] == "2/2"


def test_sweep_row_is_its_remedy_with_another_epsilon_and_not_a_default(tmp_path):
    _finished_run(tmp_path / "work" / "full" / "fgm-eps0.3" / "seed42", f1=0.7)
    report = _report(tmp_path, "--remedies", "fgm-eps0.3", "--seeds", "42", "--set", "train.num_threads=1")
    assert _row(report, "fgm-eps0.3")[1] == "0.7000 ± 0.0000"
    entry = json.loads(_ledger(tmp_path)[0])
    assert entry["overrides"] == [
        "train.seed=42",
        "regularization.adversarial=fgm",
        "regularization.adv_epsilon=0.3",
        "train.num_threads=1",
    ]

    # opt-in: the default ablation keeps its 14 rows
    table = _report(tmp_path, "--seeds", "42").splitlines()
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| remedy |")]
    assert len(rows) == 14 and not any(line.startswith("| fgm-eps") for line in rows)
