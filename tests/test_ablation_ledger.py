"""The ablation benchmark's ledger (benchmarks/ablation_robust.py): a finished run is recorded once, reused
without its work folder, and a torn last line (a killed write) neither hides the other runs nor the next one."""

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "ablation_robust", Path(__file__).resolve().parents[1] / "benchmarks" / "ablation_robust.py"
)
ablation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ablation)


def _finished_run(folder: Path, f1: float) -> None:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": "finished", "finished": "2026-12-02T06:00:00"}))
    (folder / "metrics.json").write_text(json.dumps({
        "test": {"f1_macro": f1, "accuracy": 0.9},
        "train": {"train_runtime_s": 12.0},
        "data": {"parameters": {"trainable_percent": 100.0}},
        "history": [{"train_loss": 0.5}],
    }))


def _args(tmp_path: Path, ledger: Path) -> argparse.Namespace:
    args = argparse.Namespace(work_dir=tmp_path / "work", set=["train.num_threads=1"], full_set=[], epochs=None,
                              lowres_epochs=20, report_only=False, keep_checkpoints=False, ledger=ledger)
    args.ledger_rows = ablation.read_ledger(ledger)
    return args


def test_finished_run_is_recorded_and_reused_without_its_folder(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    args = _args(tmp_path, ledger)
    _finished_run(args.work_dir / "full" / "plain" / "seed42", f1=0.81)
    row = ablation.run_one(Path("cfg.yaml"), "full", "plain", 42, args)
    assert row["f1"] == 0.81 and row["evidence"] == {"final train loss": 0.5}
    entry = json.loads(ledger.read_text().splitlines()[0])
    assert entry["overrides"] == ["train.seed=42", "train.num_threads=1"] and entry["remedy"] == "plain"

    shutil.rmtree(args.work_dir)  # a fresh machine: only the ledger is left
    args = _args(tmp_path, ledger)
    assert ablation.run_one(Path("cfg.yaml"), "full", "plain", 42, args)["f1"] == 0.81
    args.report_only = True  # other overrides are another run: not taken from the ledger
    args.set = ["train.num_threads=2"]
    assert ablation.run_one(Path("cfg.yaml"), "full", "plain", 42, args) is None


def test_torn_last_line_is_skipped_and_not_glued_to_the_next_run(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    args = _args(tmp_path, ledger)
    _finished_run(args.work_dir / "full" / "plain" / "seed42", f1=0.81)
    ablation.run_one(Path("cfg.yaml"), "full", "plain", 42, args)
    with open(ledger, "a") as f:
        f.write('{"setting": "full", "remedy": "lora", "se')  # killed mid-write
    args = _args(tmp_path, ledger)
    assert len(args.ledger_rows) == 1
    _finished_run(args.work_dir / "full" / "plain" / "seed43", f1=0.79)
    ablation.run_one(Path("cfg.yaml"), "full", "plain", 43, args)
    rows = ablation.read_ledger(ledger)
    assert sorted(r["f1"] for r in rows.values()) == [0.79, 0.81]


def test_sweep_row_is_its_remedy_with_another_epsilon_and_not_a_default(tmp_path):
    assert ablation.OPT_IN["fgm-eps0.3"] == ["regularization.adversarial=fgm", "regularization.adv_epsilon=0.3"]
    assert "fgm-eps0.3" not in ablation.REMEDIES  # opt-in: the default ablation keeps its 14 rows
    args = _args(tmp_path, tmp_path / "ledger.jsonl")
    out = args.work_dir / "full" / "fgm-eps0.3" / "seed42"
    _finished_run(out, f1=0.7)
    assert ablation.run_one(Path("cfg.yaml"), "full", "fgm-eps0.3", 42, args)["f1"] == 0.7
    entry = json.loads((tmp_path / "ledger.jsonl").read_text().splitlines()[0])
    assert "regularization.adv_epsilon=0.3" in entry["overrides"]
