"""`domainfit pipeline`: pretrain -> fine-tune (variants x seeds) with an automatic baseline, lineage, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from assets import build_tiny_bert
from test_pretraining import _pretrain_config

from domainfit.errors import ConfigError
from domainfit.pipeline import load_pipeline_config, run_pipeline, summarise


def _finetune_config(tmp_path: Path, split: Path) -> Path:
    cfg = {
        "task": "text-classification",
        "model": {"max_length": 48},
        "data": {
            "train": str(split / "train.csv"),
            "validation": str(split / "val.csv"),
            "test": str(split / "test.csv"),
            "max_train_samples": 32,
        },
        "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 256, "precision": "fp32", "best_metric": "loss"},
        "output": {"dir": str(tmp_path / "unused")},
    }
    path = tmp_path / "finetune.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_pipeline_runs_stages_variants_and_baseline_records_lineage_and_resumes(
    tmp_path, phrasebank_split, monkeypatch
):
    base = build_tiny_bert(tmp_path / "tiny-mlm", head="mlm", max_position_embeddings=128)
    pre = _pretrain_config(
        tmp_path,
        base,
        phrasebank_split / "train.csv",
        tmp_path / "unused-pretrain",
        max_steps=2,
        eval_every=None,
        save_every=None,
    )
    pipeline = {
        "finetune": "finetune.yaml",
        "finetune_overrides": [f"model.name={base}"],
        "pretrain": {"tapt": {"config": pre.name, "overrides": ["train.max_steps=2"]}},
        "variants": {
            "tapt": {"pretrain": "tapt"},
            "joint": {"overrides": ["joint.enabled=true", "joint.batch_size=4"]},
        },
        "seeds": [1, 2],
        "output_dir": str(tmp_path / "out"),
    }
    _finetune_config(tmp_path, phrasebank_split)
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False), encoding="utf-8")
    cfg = load_pipeline_config(tmp_path / "pipeline.yaml")  # paths relative to the pipeline file
    assert list(cfg.variants) == ["baseline", "tapt", "joint"]

    result = run_pipeline(cfg)
    out = tmp_path / "out"
    assert {(r["variant"], r["seed"]) for r in result["runs"]} == {
        (v, s) for v in ("baseline", "tapt", "joint") for s in (1, 2)
    }
    tapt_runs = [r for r in result["runs"] if r["variant"] == "tapt"]
    assert all(r["model"] == str(out / "pretrain" / "tapt" / "model") for r in tapt_runs)
    assert all(r["model"] == str(base) for r in result["runs"] if r["variant"] != "tapt")
    lineage = result["stages"]["tapt"]["lineage"]
    assert lineage["base_model"] == str(base) and lineage["corpus"]
    assert result["summary"]["baseline"]["n"] == 2 and "f1_macro" in result["summary"]["tapt"]["mean"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| baseline | 2 |" in report and "macro-F1 vs baseline" in report and "Pretraining stages" in report
    assert json.loads((out / "pipeline.json").read_text(encoding="utf-8"))["summary"] == result["summary"]

    # a run that died before its first checkpoint (nothing to resume) is started again, not refused
    died = out / "baseline" / "seed2"
    status = json.loads((died / "run.json").read_text(encoding="utf-8"))
    (died / "run.json").write_text(json.dumps({**status, "status": "running"}), encoding="utf-8")
    shutil.rmtree(died / "checkpoints", ignore_errors=True)
    (died / "metrics.json").unlink()
    run_pipeline(cfg)
    assert json.loads((died / "run.json").read_text(encoding="utf-8"))["status"] == "finished"

    # a second run finds everything finished and trains nothing
    import domainfit.training.loop as loop
    import domainfit.training.pretrain as pretrain_module

    def fail(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(loop, "train", fail)
    monkeypatch.setattr(pretrain_module, "pretrain", fail)
    assert run_pipeline(cfg)["summary"] == result["summary"]


def test_pipeline_config_errors_name_the_key(tmp_path, phrasebank_split):
    _finetune_config(tmp_path, phrasebank_split)
    cases = [
        (
            {"finetune": "finetune.yaml", "output_dir": "o", "variants": {"x": {"pretrain": "nope"}}},
            "variants.x.pretrain",
        ),
        ({"finetune": "missing.yaml", "output_dir": "o"}, "finetune"),
        ({"finetune": "finetune.yaml", "output_dir": "o", "seeds": "42"}, "seeds"),
        ({"finetune": "finetune.yaml", "output_dir": "o", "finetune_overrides": ["train.epochz=2"]}, "train.epochz"),
        ({"finetune": "finetune.yaml", "output_dir": "o", "variantz": {}}, "variantz"),
    ]
    for raw, key in cases:
        (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
        with pytest.raises(ConfigError) as e:
            load_pipeline_config(tmp_path / "p.yaml")
        assert key in str(e.value), (key, str(e.value))


def test_summary_mean_and_std():
    runs = [
        {"variant": "a", "test": {"f1_macro": 0.5}},
        {"variant": "a", "test": {"f1_macro": 0.7}},
        {"variant": "b", "test": {"f1_macro": 0.9}},
    ]
    s = summarise(runs)
    assert s["a"]["mean"]["f1_macro"] == pytest.approx(0.6) and s["a"]["std"]["f1_macro"] == pytest.approx(
        0.1414, abs=1e-4
    )
    assert s["b"]["n"] == 1 and s["b"]["std"]["f1_macro"] == 0.0
